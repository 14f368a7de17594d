//! The shared test kit: the device from `TCAT_TEST_DEVICE` (the CPU when unset) and
//! comparisons on the host. The loop references read their inputs back to the host themselves.

#![allow(unused_imports)]

pub use tcat_testkit::device;
