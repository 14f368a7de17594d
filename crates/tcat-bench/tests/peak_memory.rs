//! The peak-memory numbers come from a working allocator count: dense attention at 512 tokens
//! must show at least one materialised f32 score matrix.
//!
//! One test per binary (this file) so that no other test allocates during the measurement.

use candle_core::{DType, Device};
use tcat_bench::memory::{self, CountingAllocator};
use tcat_bench::{Inputs, Shape, Variant, measure};

#[global_allocator]
static GLOBAL: CountingAllocator<std::alloc::System> = CountingAllocator::new(std::alloc::System);

#[test]
fn peak_memory_counts_what_attention_allocates() {
    assert!(memory::is_counting());

    // The counter itself: a known allocation shows up exactly, and is gone after.
    let before = memory::current_bytes();
    let (_, peak) = memory::track_peak(|| std::hint::black_box(vec![1u8; 3 << 20]).len());
    let peak = peak.unwrap();
    assert!((3 << 20..(3 << 20) + (64 << 10)).contains(&peak), "peak {peak}");
    assert!(memory::current_bytes() <= before + (64 << 10));

    // Dense attention at 512 tokens materialises [b, h, s, s] f32 scores (several copies).
    let shape = Shape { batch: 1, heads: 4, seq: 512, head_dim: 32 };
    let inputs = Inputs::random(shape, DType::F32, &Device::Cpu).unwrap();
    let dense = measure(Variant::Dense, &inputs, 2).unwrap();
    let scores = shape.score_bytes(DType::F32);
    let peak = dense.peak_bytes.expect("peak measured on the CPU with the counting allocator");
    assert!(peak >= scores, "dense peak {peak} B is below one score matrix of {scores} B");
    // ... and not the inputs (already allocated) plus unrelated noise: well under 16 copies.
    assert!(peak < 16 * scores, "dense peak {peak} B for a {scores} B score matrix");
}
