//! The machine's two roofs, measured where the benchmarks run: how fast it multiplies and how
//! fast it reads memory.
//!
//! The roofline model (Williams, Waterman and Patterson 2009, "Roofline: an insightful visual
//! performance model for multicore architectures") bounds a kernel by the smaller of the
//! machine's arithmetic rate and its memory bandwidth times the kernel's arithmetic intensity.
//! Two kernels of tcat sit against one roof each: attention over long sequences does
//! `O(n² d)` work on `O(n d)` data and is bound by arithmetic, so its GFLOP/s are compared with
//! a large f32 matrix product's ([`matmul_gflops`]); decoding one token reads every weight once
//! and is bound by memory, so its bytes per second are compared with a streaming read of a
//! buffer far larger than the caches ([`read_bandwidth`]). Both are measured, not taken from
//! a data sheet: what the same process reaches with the same threads is the fair yardstick.
//!
//! ```
//! use tcat_bench::roofline::attention_flops;
//! use tcat_bench::{Shape, Variant};
//! let shape = Shape { batch: 1, heads: 8, seq: 4096, head_dim: 64 };
//! // Causal: n (n + 1) / 2 visible pairs, 4 d flops each (q·k and p·v), per head.
//! let causal = attention_flops(Variant::Fused, shape).unwrap();
//! assert_eq!(causal, 8.0 * 4.0 * 64.0 * (4096.0 * 4097.0 / 2.0));
//! let full = attention_flops(Variant::DenseBidirectional, shape).unwrap();
//! assert!(full > 1.99 * causal && full < 2.0 * causal);
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use crate::{MaskChoice, Shape, Variant, median};

/// Side of the square matrices [`matmul_gflops`] multiplies by default: large enough that the
/// product is bound by arithmetic (2 · 2048³ flops on 3 × 16 MiB of f32).
pub const MATMUL_SIDE: usize = 2048;

/// Bytes [`read_bandwidth`] streams by default: far above any last-level cache.
pub const READ_BYTES: usize = 512 << 20;

/// The floating-point operations of one attention run of `variant` on `shape`, counting only
/// the visible query-key pairs: `4 · d` per pair and head (the `q·k` dot product and the
/// `p·v` accumulation, a multiply and an add each). `None` where the pair count has no closed
/// form here (sparse patterns) or the variant computes another function (linear attention).
pub fn attention_flops(variant: Variant, shape: Shape) -> Option<f64> {
    let composition = variant.composition();
    if composition.kernel == crate::KernelChoice::Linear {
        return None;
    }
    let n = shape.seq as f64;
    let pairs = match composition.mask {
        MaskChoice::Bidirectional => n * n,
        MaskChoice::Causal => n * (n + 1.0) / 2.0,
        MaskChoice::Sliding { window } => {
            // Row i sees min(i + 1, w) keys.
            let w = window.min(shape.seq) as f64;
            w * (w + 1.0) / 2.0 + (n - w) * w
        }
        _ => return None,
    };
    Some(shape.batch as f64 * shape.heads as f64 * 4.0 * shape.head_dim as f64 * pairs)
}

/// GFLOP/s of candle's matrix product of two random `side × side` matrices of `dtype` on
/// `device` (the product every dense layer of tcat runs): one warm-up, then the median of
/// `repeats` device-synchronised products, `2 · side³` flops each.
///
/// ```
/// let g = tcat_bench::roofline::matmul_gflops(&candle_core::Device::Cpu, candle_core::DType::F32, 64, 3).unwrap();
/// assert!(g > 0.0);
/// ```
pub fn matmul_gflops(device: &Device, dtype: DType, side: usize, repeats: usize) -> Result<f64> {
    let a = Tensor::randn(0f32, 1., (side, side), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1., (side, side), device)?.to_dtype(dtype)?;
    let mut times = Vec::with_capacity(repeats);
    for i in 0..=repeats.max(1) {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        device.synchronize()?;
        let elapsed = start.elapsed();
        drop(c);
        if i > 0 {
            times.push(elapsed);
        }
    }
    let seconds = median(&times).as_secs_f64();
    Ok(2.0 * (side as f64).powi(3) / seconds / 1e9)
}

/// GB/s (10⁹ bytes) of a streaming read of `bytes` of host memory by the current rayon pool's
/// threads (each sums its share with wrapping integer adds, which vectorise): one warm-up pass
/// (it also faults the pages in), then the median of `repeats` passes. The decoding roof: a
/// kernel that reads its weights once per token cannot beat it.
///
/// ```
/// let gbs = tcat_bench::roofline::read_bandwidth(1 << 20, 3);
/// assert!(gbs > 0.0);
/// ```
pub fn read_bandwidth(bytes: usize, repeats: usize) -> f64 {
    let words = (bytes / 8).max(1);
    let buffer: Vec<u64> = (0..words as u64).collect();
    let threads = rayon::current_num_threads().max(1);
    // Contiguous shares, several per thread so that a slow thread's share is taken over.
    let chunk = words.div_ceil(threads * 4).max(1);
    let mut times = Vec::with_capacity(repeats);
    for i in 0..=repeats.max(1) {
        let start = Instant::now();
        let sum = streamed_sum(&buffer, chunk);
        let elapsed = start.elapsed();
        std::hint::black_box(sum);
        if i > 0 {
            times.push(elapsed);
        }
    }
    let seconds = median(&times).as_secs_f64().max(f64::MIN_POSITIVE);
    (words * 8) as f64 / seconds / 1e9
}

/// The wrapping sum of `buffer`, read in parallel in shares of `chunk` words.
fn streamed_sum(buffer: &[u64], chunk: usize) -> u64 {
    buffer
        .par_chunks(chunk.max(1))
        .map(|part| {
            // Eight independent lanes: the adds vectorise and do not wait on each other.
            let mut lanes = [0u64; 8];
            let mut blocks = part.chunks_exact(8);
            for block in &mut blocks {
                for (lane, &x) in lanes.iter_mut().zip(block) {
                    *lane = lane.wrapping_add(x);
                }
            }
            let tail = blocks.remainder().iter().fold(0u64, |s, &x| s.wrapping_add(x));
            lanes.iter().fold(tail, |s, &x| s.wrapping_add(x))
        })
        .reduce(|| 0, u64::wrapping_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_pairs_match_the_masks_counted_one_by_one() {
        for (variant, seq) in [
            (Variant::Dense, 37),
            (Variant::DenseBidirectional, 37),
            (Variant::Sliding { window: 5 }, 37),
            (Variant::FusedSliding { window: 64 }, 37),
            (Variant::Gqa { groups: 2 }, 20),
        ] {
            let shape = Shape { batch: 2, heads: 4, seq, head_dim: 8 };
            // The mask materialised by the attention crate, its ones counted.
            let mask = variant.composition().attention_mask(seq);
            let pairs = match mask.allowed(1, seq, seq, &candle_core::Device::Cpu).unwrap() {
                None => seq * seq,
                Some(allowed) => {
                    allowed.flatten_all().unwrap().to_vec1::<u8>().unwrap().iter().filter(|&&a| a != 0).count()
                }
            };
            let want = (2 * 4 * 4 * 8 * pairs) as f64;
            assert_eq!(attention_flops(variant, shape), Some(want), "{variant}");
        }
        let shape = Shape { batch: 1, heads: 1, seq: 16, head_dim: 4 };
        assert_eq!(attention_flops(Variant::Linear, shape), None);
        assert_eq!(attention_flops(Variant::Strided { stride: 4 }, shape), None);
    }

    #[test]
    fn the_read_covers_every_word_once() {
        // Shares and lanes with tails: the sum of 0..n is n (n - 1) / 2 only if every word is
        // read exactly once.
        for (words, chunk) in [(1u64, 1), (13, 5), (1000, 7), (4099, 64), (4099, 5000)] {
            let buffer: Vec<u64> = (0..words).collect();
            assert_eq!(streamed_sum(&buffer, chunk), words * (words - 1) / 2, "{words} words in {chunk}");
        }
        let gbs = read_bandwidth(3 << 20, 1);
        assert!(gbs.is_finite() && gbs > 0.0, "{gbs}");
    }
}
