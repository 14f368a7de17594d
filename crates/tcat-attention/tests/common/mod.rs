//! The device the attention tests run on: `TCAT_TEST_DEVICE` (`cpu`, `cuda:0`, `metal`), the CPU
//! when unset. The loop references read their inputs back to the host themselves.

use candle_core::Device;

pub fn device() -> Device {
    tcat_core::device_from_env("TCAT_TEST_DEVICE").unwrap_or_else(|e| panic!("TCAT_TEST_DEVICE: {e}"))
}
