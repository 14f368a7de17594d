//! The shared test kit (device from `TCAT_TEST_DEVICE`, fixtures, comparisons).

#![allow(unused_imports)]

pub use tcat_testkit::*;
