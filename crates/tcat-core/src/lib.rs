//! Shared foundations of tcat: the typed [`Error`], the [`Linear`] projection every block uses
//! (with the checkpoint's [`WeightLayout`]) and its CPU kernels ([`gemv`] for dense weights and
//! few input rows, [`quantized`] for GGUF blocks), and parsing of
//! `--device` / `--dtype` strings.
//!
//! Nothing here implements a paper; these are the pieces the block crates would otherwise each
//! write again.

#![deny(missing_docs)]

mod device;
mod error;
pub mod gemv;
mod linear;
pub mod math;
mod ops;
mod pool;
pub mod quantized;
mod shared;

pub use device::{device_from_env, parse_device, parse_dtype, pin_cpu_thread_count, take_device_arg};
pub use error::{Error, Result};
pub use linear::{Linear, WeightLayout};
pub use ops::prefix_sum;
