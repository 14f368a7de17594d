//! The attention variants against each other as the sequence grows: every variant of
//! `tcat_bench::Variant::benchmarked()` at 128, 512, 2048 and 8192 tokens, plus 16384 for the
//! variants marked memory-efficient (those that never build the `seq × seq` scores), on random
//! f32 `q`, `k`, `v` of batch 1, 4 heads, head_dim 64, on the CPU (`tcat bench attention`
//! defaults to 8 heads; 4 keep the 8192-token runs near 5 s each on two cores), and 1 head at
//! 16384 tokens, where the memory-efficient variants print their peak memory beside the 1 GiB
//! that one materialised f32 score matrix needs. `gqa:2` runs with 2 key/value heads for the 4
//! query heads, and is skipped at 16384 tokens, where one head has no groups to share.
//! The DALL-E masks lay each length on its squarest image grid (`Variant::dalle_grid`: 16 × 8
//! at 128 tokens up to 128 × 64 at 8192 and 128 × 128 at 16384), with no text tokens.
//!
//! A variant whose memory estimate (`Variant::estimated_bytes`) exceeds the memory available is
//! skipped with a line saying how much it needed. Before each criterion group, one untimed run prints the variant's peak heap memory above its
//! inputs (counted by `tcat_bench::memory::CountingAllocator` around mimalloc, the allocator the
//! `tcat` binary uses). Sample sizes are small (10 at 2048 tokens and above) so the whole bench
//! takes a few minutes on two cores.
//!
//! ```text
//! cargo bench --bench attention
//! ```
//!
//! Under `cargo test --benches` (criterion's test mode) each benchmark runs once, and only the
//! lengths up to 512, so the long sequences never run in a test.

use std::time::Duration;

use candle_core::{DType, Device};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group};
use tcat_bench::memory::{CountingAllocator, skip_reason};
use tcat_bench::report::{format_bytes, format_duration};
use tcat_bench::{Inputs, Shape, Variant, measure};

#[global_allocator]
static GLOBAL: CountingAllocator<mimalloc::MiMalloc> = CountingAllocator::new(mimalloc::MiMalloc);

const SEQS: [usize; 4] = [128, 512, 2048, 8192];
/// The extra length for memory-efficient variants.
const LONG_SEQ: usize = 16384;
/// The longest length run in criterion's test mode.
const TEST_MODE_MAX_SEQ: usize = 512;

/// Whether criterion will time (`cargo bench`) rather than run each benchmark once
/// (`cargo test --benches`, `cargo bench -- --test`), by the same rule criterion applies.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn bench_attention(c: &mut Criterion) {
    let device = Device::Cpu;
    let max_seq = if benchmarking() { usize::MAX } else { TEST_MODE_MAX_SEQ };
    let variants = Variant::benchmarked();
    let mut seqs: Vec<usize> = SEQS.to_vec();
    if variants.iter().any(Variant::memory_efficient) {
        seqs.push(LONG_SEQ);
    }
    for seq in seqs.into_iter().filter(|&s| s <= max_seq) {
        // At 16384 tokens one head, as the memory claim is stated: a materialised f32 score
        // matrix would need 1 GiB for it alone.
        let heads = if seq == LONG_SEQ { 1 } else { 4 };
        let shape = Shape { batch: 1, heads, seq, head_dim: 64 };
        let inputs = Inputs::random(shape, DType::F32, &device).expect("random inputs");
        for &variant in variants.iter().filter(|v| seq != LONG_SEQ || v.memory_efficient()) {
            // gqa:G needs G to divide the heads: at one head, only gqa:1 (plain attention) would.
            let inputs = match inputs.for_variant(variant) {
                Ok(inputs) => inputs,
                Err(why) => {
                    eprintln!("{variant} seq {seq}: skipped ({why})");
                    continue;
                }
            };
            if let Some(why) = skip_reason(variant, shape, &device) {
                eprintln!("{why}");
                continue;
            }
            let once = measure(variant, &inputs, 1).expect("attention runs");
            let scores = if seq == LONG_SEQ {
                format!("; a materialised f32 score matrix would need {}", format_bytes(shape.score_bytes(DType::F32)))
            } else {
                String::new()
            };
            eprintln!(
                "{variant} seq {seq}: peak memory {} above the inputs{scores} (one run {})",
                once.peak_bytes.map_or("n/a".into(), format_bytes),
                format_duration(once.median)
            );
            let mut group = c.benchmark_group(format!("attention/{variant}"));
            if seq >= 2048 {
                group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1));
            } else {
                group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
            }
            group.bench_with_input(BenchmarkId::from_parameter(seq), &inputs, |b, inputs| {
                b.iter(|| {
                    let out = variant.run(&inputs.q, &inputs.k, &inputs.v).unwrap();
                    device.synchronize().unwrap();
                    out
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench_attention);
fn main() {
    // SAFETY: first thing in `main`, before any thread exists. Both sides of every comparison
    // run with it.
    unsafe { tcat::core::pin_cpu_thread_count() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
