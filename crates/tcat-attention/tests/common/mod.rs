//! The device the attention tests run on: `TCAT_TEST_DEVICE` (`cpu`, `cuda:0`, `metal`), the CPU
//! when unset. The loop references read their inputs back to the host themselves.

use candle_core::Device;

pub fn device() -> Device {
    let name = std::env::var("TCAT_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    tcat_core::parse_device(&name).unwrap_or_else(|e| panic!("TCAT_TEST_DEVICE={name}: {e}"))
}
