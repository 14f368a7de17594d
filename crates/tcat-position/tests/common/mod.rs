//! The device the position tests run on: `TCAT_TEST_DEVICE` (`cpu`, `cuda:0`, `metal`, as
//! `--device` takes them), the CPU when unset. Results are compared on the host.

#![allow(dead_code)]

use candle_core::{Device, Tensor};

pub fn device() -> Device {
    tcat_core::device_from_env("TCAT_TEST_DEVICE").unwrap_or_else(|e| panic!("TCAT_TEST_DEVICE: {e}"))
}

/// `t` on the host, for comparisons with the reference values.
pub fn host(t: &Tensor) -> Tensor {
    t.to_device(&Device::Cpu).unwrap()
}

/// Largest |a - b|, computed on the host in f32.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let f32 = |t: &Tensor| host(t).to_dtype(candle_core::DType::F32).unwrap();
    (f32(a) - f32(b)).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}
