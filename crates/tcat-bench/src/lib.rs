//! The attention variants of tcat, as a benchmark.
//!
//! Every attention in the catalog computes `softmax(Q Kᵀ / √d) V` (Vaswani et al. 2017,
//! "Attention Is All You Need", eq. 1); the variants differ in which keys each query sees and in
//! how much time and memory that costs as the sequence grows. This crate names the variants
//! ([`Variant`], parsed from `dense`, `sliding:256`, ...), runs them on random inputs
//! ([`Inputs`], [`measure`]: warm-up, device-synchronised median of N runs, peak heap memory
//! through [`memory::CountingAllocator`]), and reports the results as a table or JSON rows
//! ([`report`]) and as an SVG plot of time against sequence length ([`svg`]).
//!
//! Variants are compositions of a mask, a kernel and a head layout ([`Composition`]); the
//! familiar names (`dense`, `fused-sliding:256`, `gqa:2`, ...) are shorthands, and any other
//! triple is spelled `MASK@KERNEL[/gqa:G]`. Before a run, [`memory::fits`] compares the
//! variant's memory estimate with what the machine has left, so a materialised score matrix
//! that cannot fit is skipped instead of meeting the OOM killer.
//!
//! [`measure_decoding`] times single-token decoding with multi-head latent attention beside
//! standard attention of the same width and reports the cache bytes per token of each
//! (`tcat bench attention --decode`).
//!
//! [`roofline`] measures the machine's two yardsticks in the same process: a large f32 matrix
//! product's GFLOP/s, which long attention is compared with, and a streaming read's GB/s, the
//! roof of decoding.
//!
//! It is shared by `tcat bench attention` and by the criterion bench `benches/attention.rs`.
//!
//! ```
//! use candle_core::{DType, Device};
//! use tcat_bench::{Inputs, Shape, Variant, measure, report};
//! let mut rows = Vec::new();
//! for seq in [16, 32] {
//!     let inputs = Inputs::random(Shape { batch: 1, heads: 2, seq, head_dim: 8 }, DType::F32, &Device::Cpu).unwrap();
//!     for v in Variant::parse_list("dense,sliding:8").unwrap() {
//!         rows.push(measure(v, &inputs, 2).unwrap());
//!     }
//! }
//! println!("{}", report::table(&rows, None));
//! let plot = tcat_bench::svg::plot(&rows, "attention");
//! assert_eq!(plot.matches("<polyline").count(), 2);
//! ```

mod decoding;
pub mod huge_pages;
mod measure;
pub mod memory;
pub mod report;
pub mod roofline;
pub mod svg;
mod variant;

pub use decoding::{DecodeLayer, DecodeMeasurement, decode_table, latent_dims, measure_decoding};
pub use measure::{Inputs, Measurement, Shape, measure, median};
pub use variant::{
    Composition, DALLE_CONV_KERNEL, DalleAxis, HeadLayout, KernelChoice, MaskChoice, Variant, parse_lengths,
};
