//! The helpers every tcat test crate shares, written once: the device the device-generic tests
//! run on (`TCAT_TEST_DEVICE`), the committed reference fixtures and their expected outputs,
//! and tensor comparisons taken on the host. A dev-dependency only; it panics with a message
//! naming the file or variable, as tests should.

#![deny(missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// The device the device-generic tests run on: `TCAT_TEST_DEVICE` (`cpu`, `cuda:0`, `metal`, as
/// `--device` takes them), the CPU when unset.
///
/// ```
/// assert!(tcat_testkit::device().is_cpu() || std::env::var("TCAT_TEST_DEVICE").is_ok());
/// ```
pub fn device() -> Device {
    tcat_core::device_from_env("TCAT_TEST_DEVICE").unwrap_or_else(|e| panic!("TCAT_TEST_DEVICE: {e}"))
}

/// `t` on the host, for comparisons with reference values.
pub fn host(t: &Tensor) -> Tensor {
    t.to_device(&Device::Cpu).unwrap()
}

/// The committed reference fixtures, `tests/fixtures` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    // `cargo test` sets CARGO_MANIFEST_DIR to the tested crate's folder (every crate sits in
    // crates/NAME) when it runs the test: that follows the checkout the test was built from,
    // where this crate's compile-time folder may be another worktree's sharing the target dir.
    let crate_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("../../tests/fixtures")
}

/// A real-weights file fetched by a script in `scripts/` into tcat's cache: the path in the
/// environment variable `var` when set, else `relative` under `$TCAT_CACHE` (default
/// `~/.cache/tcat`). A missing file fails the test, naming `script`: real-weight tests are
/// never skipped.
///
/// ```no_run
/// let gguf = tcat_testkit::cached_file("TCAT_SMOLLM2", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "fetch_smollm2.sh");
/// ```
pub fn cached_file(var: &str, relative: &str, script: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("TCAT_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tcat"))
            .join(relative)
    });
    assert!(path.is_file(), "{} not found: run scripts/{script} first (or set {var})", path.display());
    path
}

/// The fixture folder (or file) `name` under [`fixtures_dir`].
pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The expected outputs of fixture `name` (`expected.safetensors`), on the host.
pub fn expected(name: &str) -> HashMap<String, Tensor> {
    let path = fixture(name).join("expected.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Largest `|a − b|` over all elements (any shape, any dtype, any device), computed in f32 on
/// the host.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
/// let b = Tensor::new(&[1f32, 2.5, 3.], &Device::Cpu).unwrap();
/// assert_eq!(tcat_testkit::max_diff(&a, &b), 0.5);
/// ```
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let d = (host(a).to_dtype(DType::F32).unwrap() - host(b).to_dtype(DType::F32).unwrap()).unwrap().abs().unwrap();
    d.flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// Largest `|a − b|` over positions where `mask` `[batch, seq]` is non-zero; `a`, `b` are
/// `[batch, seq, ..]`.
pub fn masked_max_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let diff = (host(a).to_dtype(DType::F32).unwrap() - host(b).to_dtype(DType::F32).unwrap()).unwrap().abs().unwrap();
    let diff = diff.flatten_from(2).unwrap().max(2).unwrap();
    let keep = host(mask).to_dtype(DType::F32).unwrap();
    let v: Vec<Vec<f32>> = (diff * keep).unwrap().to_vec2().unwrap();
    v.into_iter().flatten().fold(0.0, f32::max)
}

/// The unpadded rows of a `[batch, seq]` id tensor under its mask (both i64, as transformers
/// saves them).
pub fn rows(ids: &Tensor, mask: &Tensor) -> Vec<Vec<u32>> {
    let ids: Vec<Vec<i64>> = host(ids).to_vec2().unwrap();
    let mask: Vec<Vec<i64>> = host(mask).to_vec2().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| r.iter().zip(m).filter(|(_, m)| **m != 0).map(|(i, _)| *i as u32).collect())
        .collect()
}
