//! Helpers shared by the model tests: fixture paths and tensor comparisons.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// The device the device-generic tests run on: `TCAT_TEST_DEVICE` (`cpu`, `cuda:0`, `metal`, as
/// `--device` takes them), the CPU when unset. The reference values stay on the host; results
/// are compared there.
pub fn device() -> Device {
    tcat_core::device_from_env("TCAT_TEST_DEVICE").unwrap_or_else(|e| panic!("TCAT_TEST_DEVICE: {e}"))
}

/// `t` on the host, for comparisons with the reference values.
pub fn host(t: &Tensor) -> Tensor {
    t.to_device(&Device::Cpu).unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

pub fn expected(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu).unwrap()
}

/// The unpadded rows of a `[batch, seq]` id tensor under its mask.
pub fn rows(ids: &Tensor, mask: &Tensor) -> Vec<Vec<u32>> {
    let ids: Vec<Vec<i64>> = ids.to_vec2().unwrap();
    let mask: Vec<Vec<i64>> = mask.to_vec2().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| r.iter().zip(m).filter(|(_, m)| **m != 0).map(|(i, _)| *i as u32).collect())
        .collect()
}

/// Largest |a - b| over positions where `mask` `[batch, seq]` is non-zero; `a`, `b` are
/// `[batch, seq, ..]`.
pub fn masked_max_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let diff = (host(a).to_dtype(DType::F32).unwrap() - host(b).to_dtype(DType::F32).unwrap()).unwrap().abs().unwrap();
    let diff = diff.flatten_from(2).unwrap().max(2).unwrap();
    let keep = host(mask).to_dtype(DType::F32).unwrap();
    let v: Vec<Vec<f32>> = (diff * keep).unwrap().to_vec2().unwrap();
    v.into_iter().flatten().fold(0.0, f32::max)
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let d = (host(a).to_dtype(DType::F32).unwrap() - host(b).to_dtype(DType::F32).unwrap()).unwrap().abs().unwrap();
    d.flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}
