//! Parsing of the `--device` and `--dtype` strings every tcat command accepts.

use candle_core::{DType, Device};

use crate::{Error, Result};

/// Opens the device named `cpu`, `cuda`, `cuda:N` or `metal` (`metal:N`).
///
/// A backend that was not compiled in, or that has no device here, is an [`Error::Device`]
/// saying which feature to build with.
///
/// ```
/// let cpu = tcat_core::parse_device("cpu").unwrap();
/// assert!(cpu.is_cpu());
/// assert!(tcat_core::parse_device("tpu").is_err());
/// ```
pub fn parse_device(name: &str) -> Result<Device> {
    let device_error = |message: String| Error::Device { name: name.to_string(), message };
    let (kind, ordinal) = match name.split_once(':') {
        Some((kind, n)) => {
            let ordinal = n
                .parse::<usize>()
                .map_err(|_| device_error(format!("`{n}` is not a device number (expected e.g. cuda:0)")))?;
            (kind, ordinal)
        }
        None => (name, 0),
    };
    match kind {
        "cpu" if ordinal == 0 => Ok(Device::Cpu),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                return Err(device_error(
                    "this build of tcat has no CUDA support; rebuild with `--features cuda`".into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| device_error(format!("cannot open: {e}")))
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(device_error(
                    "this build of tcat has no Metal support; rebuild with `--features metal`".into(),
                ));
            }
            Device::new_metal(ordinal).map_err(|e| device_error(format!("cannot open: {e}")))
        }
        _ => Err(device_error("expected cpu, cuda, cuda:N or metal".into())),
    }
}

/// The device named by the environment variable `var` (as [`parse_device`] reads names), the
/// CPU when it is unset: how tests (`TCAT_TEST_DEVICE`) and examples (`TCAT_DEVICE`) choose.
///
/// ```
/// assert!(tcat_core::device_from_env("TCAT_DOCTEST_UNSET_DEVICE").unwrap().is_cpu());
/// ```
pub fn device_from_env(var: &str) -> Result<Device> {
    match std::env::var(var) {
        Ok(name) => parse_device(&name),
        Err(_) => Ok(Device::Cpu),
    }
}

/// A program's device: `--device NAME` taken out of `args` when present, else the
/// `TCAT_DEVICE` environment variable, else the CPU.
///
/// ```
/// let mut args = vec!["model".to_string(), "--device".into(), "cpu".into(), "text".into()];
/// assert!(tcat_core::take_device_arg(&mut args).unwrap().is_cpu());
/// assert_eq!(args, ["model", "text"]);
/// assert!(tcat_core::take_device_arg(&mut vec!["--device".into()]).is_err());
/// ```
pub fn take_device_arg(args: &mut Vec<String>) -> Result<Device> {
    match args.iter().position(|a| a == "--device") {
        Some(i) if i + 1 < args.len() => {
            let name = args.remove(i + 1);
            args.remove(i);
            parse_device(&name)
        }
        Some(_) => {
            Err(Error::Device { name: String::new(), message: "--device needs a name: cpu, cuda:N or metal".into() })
        }
        None => device_from_env("TCAT_DEVICE"),
    }
}

/// Fixes candle's CPU thread count for the rest of the process: sets `RAYON_NUM_THREADS` to the
/// count candle would choose, unless the variable is set already.
///
/// candle 0.11 looks its thread count up on every CPU matmul, and without `RAYON_NUM_THREADS`
/// that lookup parses `/proc/cpuinfo` (`num_cpus::get_physical`) each time: on the 2-core test
/// machine it took a fifth of a SmolLM2 decoding step. Programs call this first thing in `main`.
///
/// # Safety
/// As [`std::env::set_var`]: no other thread may exist yet (call it before anything spawns
/// one, candle's pools included).
pub unsafe fn pin_cpu_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: the caller guarantees the process is still single-threaded.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

/// Parses `f32`, `f16` or `bf16`.
///
/// ```
/// assert_eq!(tcat_core::parse_dtype("bf16").unwrap(), candle_core::DType::BF16);
/// assert!(tcat_core::parse_dtype("f8").is_err());
/// ```
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(Error::InvalidInput(format!("unknown dtype `{other}`; expected f32, f16 or bf16"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("cpu:1").is_err());
        assert!(parse_device("cuda:x").unwrap_err().to_string().contains("device number"));
        if !candle_core::utils::cuda_is_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        if !candle_core::utils::metal_is_available() {
            assert!(parse_device("metal").unwrap_err().to_string().contains("metal"));
        }
    }
}
