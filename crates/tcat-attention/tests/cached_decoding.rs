//! Cached decoding equals one full causal forward for every causal variant of the module that
//! the dense-rotary and sliding-window tests do not cover: ALiBi (with and without left
//! padding), T5's causal relative bias, the causal sparse patterns (Sparse Transformer strided
//! and fixed, DALL-E row / column / convolutional) and block-diagonal segments of packed
//! sequences (with a full and with a sliding cache). Each case decodes token by token and in
//! uneven chunks and compares every step's output with the matching rows of the full pass, with
//! either attention kernel.

mod common;

use candle_core::{D, DType, Device, Tensor};
use tcat_attention::{
    AttentionKernel, AttentionMask, GridAxis, KvCache, MultiHeadAttention, QkvProjection, SparsePattern,
};
use tcat_core::Linear;
use tcat_position::{
    Alibi, BucketDirection, RelativePositionBias, RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout,
};

const HIDDEN: usize = 24;
const KERNELS: [AttentionKernel; 2] = [AttentionKernel::Materialized, AttentionKernel::Fused];

fn layer(heads: usize, kv_heads: usize, dev: &Device) -> MultiHeadAttention {
    let head_dim = HIDDEN / heads;
    let lin = |o: usize, i: usize| {
        Linear::new(
            Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap(),
            Some(Tensor::randn(0f32, 0.2, o, dev).unwrap()),
        )
    };
    let qkv = QkvProjection::Separate {
        q: lin(heads * head_dim, HIDDEN),
        k: lin(kv_heads * head_dim, HIDDEN),
        v: lin(kv_heads * head_dim, HIDDEN),
    };
    MultiHeadAttention::new(qkv, lin(HIDDEN, heads * head_dim), heads, kv_heads, head_dim).unwrap()
}

/// Largest |a − b| over the rows of `[batch, seq, hidden]` outputs where `real` (`[batch, seq]`,
/// 0/1) is 1: padded query positions attend to nothing and are unspecified.
fn max_diff(a: &Tensor, b: &Tensor, real: Option<&Tensor>) -> f32 {
    let d = (a - b).unwrap().abs().unwrap();
    let d = match real {
        None => d,
        Some(r) => d.broadcast_mul(&r.to_dtype(DType::F32).unwrap().unsqueeze(D::Minus1).unwrap()).unwrap(),
    };
    d.flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// Feeds `x` (`[batch, total, hidden]`) to `attn` chunk by chunk through a copy of `cache`, the
/// step over keys `0..at + n` masked by `mask(at, n)` and placed by `positions` (sliced per
/// step), and checks each step against the same rows of `full` (the materialised full pass),
/// once per attention kernel.
#[allow(clippy::too_many_arguments)]
fn decode_and_compare(
    what: &str,
    attn: &MultiHeadAttention,
    x: &Tensor,
    full: &Tensor,
    chunks: &[usize],
    cache: KvCache,
    mask: impl Fn(usize, usize) -> AttentionMask,
    positions: Option<&Tensor>,
    real: Option<&Tensor>,
) {
    let total: usize = chunks.iter().sum();
    assert_eq!(total, x.dim(1).unwrap(), "{what}: chunks must cover the sequence");
    for kernel in KERNELS {
        let attn = attn.clone().with_kernel(kernel);
        let mut cache = cache.clone();
        let mut at = 0;
        for &n in chunks {
            let p = positions.map(|p| p.narrow(1, at, n).unwrap());
            let got = attn.forward(&x.narrow(1, at, n).unwrap(), &mask(at, n), p.as_ref(), Some(&mut cache)).unwrap();
            let real = real.map(|r| r.narrow(1, at, n).unwrap());
            let d = max_diff(&got, &full.narrow(1, at, n).unwrap(), real.as_ref());
            assert!(d <= 1e-5, "{what}, {kernel:?}, chunks {chunks:?}: the step at {at} (+{n}) differs by {d}");
            at += n;
        }
        assert_eq!(cache.len(), total);
    }
}

const TOTAL: usize = 15;
const SCHEDULES: [&[usize]; 3] = [&[1; TOTAL], &[4, 1, 1, 5, 2, 2], &[7, 8]];

#[test]
fn alibi_decoding_equals_the_full_pass() {
    let dev = common::device();
    for (heads, kv_heads) in [(4, 4), (6, 2), (3, 1)] {
        let attn = layer(heads, kv_heads, &dev).with_alibi(Alibi::new(heads, DType::F32, &dev).unwrap());
        let x = Tensor::randn(0f32, 1., (2, TOTAL, HIDDEN), &dev).unwrap();
        let full = attn.forward(&x, &AttentionMask::causal(), None, None).unwrap();
        for chunks in SCHEDULES {
            let what = format!("ALiBi, {heads} heads / {kv_heads} kv heads");
            let mask = |_, _| AttentionMask::causal();
            decode_and_compare(&what, &attn, &x, &full, chunks, KvCache::new(TOTAL), mask, None, None);
        }
    }
}

#[test]
fn alibi_decoding_of_a_left_padded_batch_equals_the_full_pass() {
    // Row 1 starts with three padding tokens: ALiBi counts key positions among real tokens,
    // and the padding mask grows with the sequence.
    let dev = common::device();
    let heads = 4;
    let attn = layer(heads, 2, &dev).with_alibi(Alibi::new(heads, DType::F32, &dev).unwrap());
    let x = Tensor::randn(0f32, 1., (2, TOTAL, HIDDEN), &dev).unwrap();
    let keep: Vec<u32> = (0..2 * TOTAL).map(|i| u32::from(!(TOTAL..TOTAL + 3).contains(&i))).collect();
    let keep = Tensor::from_vec(keep, (2, TOTAL), &dev).unwrap();
    let full = attn.forward(&x, &AttentionMask::causal().with_key_padding(keep.clone()), None, None).unwrap();
    for chunks in SCHEDULES {
        let mask = |at: usize, n: usize| AttentionMask::causal().with_key_padding(keep.narrow(1, 0, at + n).unwrap());
        let cache = KvCache::new(TOTAL);
        decode_and_compare("left-padded ALiBi", &attn, &x, &full, chunks, cache, mask, None, Some(&keep));
    }
}

#[test]
fn t5_causal_bias_decoding_equals_the_full_pass() {
    // T5's decoder: scores unscaled, a causal bucketed bias over `key − query`, given per step
    // for the new queries at the end of the cached keys. 8 buckets up to distance 12, so the
    // 15 tokens reach the logarithmic buckets and the shared last one.
    let dev = common::device();
    for (heads, kv_heads) in [(4, 4), (6, 3)] {
        let attn = layer(heads, kv_heads, &dev).with_scale(1.0);
        let table = Tensor::randn(0f32, 1., (8, heads), &dev).unwrap();
        let t5 = RelativePositionBias::new(table, BucketDirection::Causal, 12).unwrap();
        let x = Tensor::randn(0f32, 1., (2, TOTAL, HIDDEN), &dev).unwrap();
        let full_mask = AttentionMask::causal().with_bias(t5.bias(TOTAL, TOTAL).unwrap());
        let full = attn.forward(&x, &full_mask, None, None).unwrap();
        for chunks in SCHEDULES {
            let mask = |at: usize, n: usize| AttentionMask::causal().with_bias(t5.bias(n, at + n).unwrap());
            let what = format!("T5 causal bias, {heads} heads / {kv_heads} kv heads");
            decode_and_compare(&what, &attn, &x, &full, chunks, KvCache::new(TOTAL), mask, None, None);
        }
    }
}

#[test]
fn causal_sparse_pattern_decoding_equals_the_full_pass() {
    // 3 text tokens then a 3 × 4 image: 15 positions.
    let dalle = |axis| SparsePattern::Dalle { text: 3, rows: 3, cols: 4, axis };
    let patterns = [
        SparsePattern::Strided { stride: 3 },
        SparsePattern::Fixed { block: 4, summary: 2 },
        SparsePattern::Fixed { block: 5, summary: 1 },
        dalle(GridAxis::Row),
        dalle(GridAxis::Column),
        dalle(GridAxis::Convolutional { kernel: 3 }),
    ];
    let dev = common::device();
    for pattern in patterns {
        let attn = layer(4, 2, &dev);
        let x = Tensor::randn(0f32, 1., (2, TOTAL, HIDDEN), &dev).unwrap();
        let full = attn.forward(&x, &AttentionMask::causal().with_pattern(pattern), None, None).unwrap();
        // The pattern must actually hide keys from the full pass, or the test proves nothing.
        let dense = attn.forward(&x, &AttentionMask::causal(), None, None).unwrap();
        assert!(max_diff(&full, &dense, None) > 1e-3, "{pattern:?} hides nothing in {TOTAL} tokens");
        for chunks in SCHEDULES {
            let mask = |_, _| AttentionMask::causal().with_pattern(pattern);
            let what = format!("{pattern:?}");
            decode_and_compare(&what, &attn, &x, &full, chunks, KvCache::new(TOTAL), mask, None, None);
        }
    }
}

/// Packed sequences, two rows with different cuts; positions restart in every segment.
fn packed(dev: &Device) -> (Tensor, Tensor) {
    let cuts = [[4, 9], [6, 7]];
    let ids: Vec<u32> =
        cuts.iter().flat_map(|c| (0..TOTAL).map(move |j| c.iter().filter(|&&cut| j >= cut).count() as u32)).collect();
    let positions: Vec<u32> = cuts
        .iter()
        .flat_map(|c| {
            (0..TOTAL).map(move |j| (j - c.iter().copied().filter(|&cut| j >= cut).max().unwrap_or(0)) as u32)
        })
        .collect();
    (Tensor::from_vec(ids, (2, TOTAL), dev).unwrap(), Tensor::from_vec(positions, (2, TOTAL), dev).unwrap())
}

fn rotary(head_dim: usize, dev: &Device) -> RotaryEmbedding {
    let cfg = RotaryConfig {
        rotary_dim: head_dim,
        base: 10_000.0,
        layout: RotaryLayout::HalfSplit,
        scaling: RopeScaling::None,
    };
    RotaryEmbedding::new(cfg, 64, DType::F32, dev).unwrap()
}

#[test]
fn block_diagonal_segment_decoding_equals_the_full_pass() {
    let dev = common::device();
    let (segments, positions) = packed(&dev);
    for (heads, kv_heads) in [(4, 4), (6, 2)] {
        let attn = layer(heads, kv_heads, &dev).with_rotary(rotary(HIDDEN / heads, &dev));
        let x = Tensor::randn(0f32, 1., (2, TOTAL, HIDDEN), &dev).unwrap();
        let full_mask = AttentionMask::causal().with_segments(segments.clone());
        let full = attn.forward(&x, &full_mask, Some(&positions), None).unwrap();
        // Each segment alone, from its own start, gives the same rows as the packed pass.
        let alone = attn.forward(&x.narrow(1, 4, 5).unwrap(), &AttentionMask::causal(), None, None).unwrap();
        let packed_rows = full.narrow(0, 0, 1).unwrap().narrow(1, 4, 5).unwrap();
        assert!(max_diff(&alone.narrow(0, 0, 1).unwrap(), &packed_rows, None) <= 1e-5);
        for chunks in SCHEDULES {
            let mask =
                |at: usize, n: usize| AttentionMask::causal().with_segments(segments.narrow(1, 0, at + n).unwrap());
            let what = format!("segments, {heads} heads / {kv_heads} kv heads");
            let cache = KvCache::new(TOTAL);
            decode_and_compare(&what, &attn, &x, &full, chunks, cache, mask, Some(&positions), None);
        }
    }
}

#[test]
fn segments_with_a_sliding_cache_are_aligned_with_the_held_keys() {
    // A sliding-window layer keeps only the last `window − 1` keys; the caller passes the ids of
    // every position so far and the layer narrows them to the keys it holds, as it does the
    // padding.
    let dev = common::device();
    let (segments, positions) = packed(&dev);
    let window = 4;
    let attn = layer(4, 2, &dev).with_rotary(rotary(6, &dev)).with_sliding_window(window);
    let x = Tensor::randn(0f32, 1., (2, TOTAL, HIDDEN), &dev).unwrap();
    let full = attn.forward(&x, &AttentionMask::causal().with_segments(segments.clone()), Some(&positions), None);
    let full = full.unwrap();
    for chunks in SCHEDULES {
        let mask = |at: usize, n: usize| AttentionMask::causal().with_segments(segments.narrow(1, 0, at + n).unwrap());
        let cache = KvCache::sliding(window);
        decode_and_compare("segments, sliding cache", &attn, &x, &full, chunks, cache, mask, Some(&positions), None);
    }
}
