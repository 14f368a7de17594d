//! The shared test kit: the device from `TCAT_TEST_DEVICE` (the CPU when unset) and
//! comparisons on the host.

#![allow(unused_imports)]

pub use tcat_testkit::{device, host, max_diff};
