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
//!
//! `latent_decode/{context}`: one decoding step of multi-head latent attention (DeepSeek-V2-Lite's
//! widths: hidden 2048, 16 heads, 128 + 64 query/key features, values of 128, latent of 512)
//! against standard multi-head attention of the same hidden width and heads (16 × 128), each
//! over a cache of 1024 and 4096 tokens; the bytes each cache holds per token and layer are
//! printed beside them.

use std::time::Duration;

use candle_core::{DType, Device};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group};
use tcat_bench::memory::{CountingAllocator, skip_reason};
use tcat_bench::report::{format_bytes, format_duration};
use tcat_bench::{Inputs, Shape, Variant, measure};

#[global_allocator]
static GLOBAL: CountingAllocator<tcat_bench::huge_pages::HugePages<mimalloc::MiMalloc>> =
    CountingAllocator::new(tcat_bench::huge_pages::HugePages::new(mimalloc::MiMalloc));

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

/// One decoding step of latent attention against standard attention over the same context.
fn bench_latent_decode(c: &mut Criterion) {
    use candle_core::Tensor;
    use tcat::attention::{
        AttentionMask, KvCache, LatentAttention, LatentDims, LatentQuery, MultiHeadAttention, QkvProjection,
    };
    use tcat::core::Linear;
    use tcat::position::{RotaryConfig, RotaryEmbedding};

    const HIDDEN: usize = 2048;
    let dev = Device::Cpu;
    let dims = LatentDims { heads: 16, nope_dim: 128, rope_dim: 64, value_dim: 128, rank: 512 };
    let lin =
        |o: usize, i: usize| Linear::new(Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), &dev).unwrap(), None);
    let contexts: &[usize] = if benchmarking() { &[1024, 4096] } else { &[64] };
    let max = contexts.iter().max().copied().unwrap_or(0) + 1;
    let mla = LatentAttention::new(
        LatentQuery::Direct(lin(dims.heads * dims.qk_dim(), HIDDEN)),
        lin(dims.rank + dims.rope_dim, HIDDEN),
        Tensor::ones(dims.rank, DType::F32, &dev).unwrap(),
        lin(dims.heads * (dims.nope_dim + dims.value_dim), dims.rank),
        lin(HIDDEN, dims.heads * dims.value_dim),
        dims,
        1e-6,
    )
    .unwrap()
    .with_rotary(RotaryEmbedding::new(RotaryConfig::new(dims.rope_dim), max, DType::F32, &dev).unwrap());
    let head_dim = HIDDEN / dims.heads;
    let mha = MultiHeadAttention::new(
        QkvProjection::stacked(lin(HIDDEN, HIDDEN), lin(HIDDEN, HIDDEN), lin(HIDDEN, HIDDEN)),
        lin(HIDDEN, HIDDEN),
        dims.heads,
        dims.heads,
        head_dim,
    )
    .unwrap()
    .with_rotary(RotaryEmbedding::new(RotaryConfig::new(head_dim), max, DType::F32, &dev).unwrap());
    let f32_bytes = DType::F32.size_in_bytes();
    eprintln!(
        "latent_decode: cache per token and layer: latent attention {} (rank {} + rotary key {}), standard {} \
         (keys and values, 2 × {} heads × {head_dim}): {:.1}× smaller",
        format_bytes(dims.cached_per_token() * f32_bytes),
        dims.rank,
        dims.rope_dim,
        format_bytes(2 * HIDDEN * f32_bytes),
        dims.heads,
        (2 * HIDDEN) as f64 / dims.cached_per_token() as f64
    );
    let mut group = c.benchmark_group("latent_decode");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(6));
    let causal = AttentionMask::causal();
    for &context in contexts {
        let prompt = Tensor::randn(0f32, 1., (1, context, HIDDEN), &dev).unwrap();
        let step = Tensor::randn(0f32, 1., (1, 1, HIDDEN), &dev).unwrap();
        let (mut latent, mut kv) = (mla.new_cache(context + 1), KvCache::new(context + 1));
        for start in (0..context).step_by(256) {
            let chunk = prompt.narrow(1, start, 256.min(context - start)).unwrap();
            mla.forward(&chunk, &causal, None, Some(&mut latent)).unwrap();
            mha.forward(&chunk, &causal, None, Some(&mut kv)).unwrap();
        }
        // Each run appends the same token at `context` to a copy of the filled cache.
        group.bench_with_input(BenchmarkId::new("latent", context), &step, |b, x| {
            b.iter(|| mla.forward(x, &causal, None, Some(&mut latent.clone())).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("standard", context), &step, |b, x| {
            b.iter(|| mha.forward(x, &causal, None, Some(&mut kv.clone())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_attention, bench_latent_decode);
fn main() {
    // SAFETY: first thing in `main`, before any thread exists. Both sides of every comparison
    // run with it.
    unsafe { tcat::core::pin_cpu_thread_count() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
