//! The module's attention kernel is a choice that does not change its output: with
//! `AttentionKernel::Fused` a `MultiHeadAttention` gives what the default `Materialized` gives
//! (≤ 1e-5) on random shapes around the fused kernel's 64-row tiles, grouped-query and
//! multi-query heads, key padding, causal, sliding-window and bidirectional masks, ALiBi,
//! rotary and additive biases; and the default stays the materialised kernel.

mod common;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{AttentionKernel, AttentionMask, KvCache, MultiHeadAttention, QkvProjection};
use tcat_core::Linear;
use tcat_position::{Alibi, RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout};
use tcat_testkit::max_diff;

fn layer(hidden: usize, heads: usize, kv_heads: usize, head_dim: usize, dev: &Device) -> MultiHeadAttention {
    let lin = |o: usize, i: usize| {
        Linear::new(
            Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap(),
            Some(Tensor::randn(0f32, 0.2, o, dev).unwrap()),
        )
    };
    let qkv = QkvProjection::Separate {
        q: lin(heads * head_dim, hidden),
        k: lin(kv_heads * head_dim, hidden),
        v: lin(kv_heads * head_dim, hidden),
    };
    MultiHeadAttention::new(qkv, lin(hidden, heads * head_dim), heads, kv_heads, head_dim).unwrap()
}

/// Right padding of random lengths (at least one real token), sometimes scattered.
fn random_keep(rng: &mut StdRng, batch: usize, len: usize, dev: &Device) -> Tensor {
    let mut keep = Vec::new();
    for _ in 0..batch {
        let real = rng.random_range(1..=len);
        let scattered = rng.random_bool(0.25);
        keep.extend((0..len).map(|j| u32::from(if scattered { j == 0 || rng.random_bool(0.7) } else { j < real })));
    }
    Tensor::from_vec(keep, (batch, len), dev).unwrap()
}

#[test]
fn default_kernel_is_fused() {
    let attn = layer(8, 2, 1, 4, &common::device());
    assert_eq!(attn.kernel(), AttentionKernel::Fused);
    assert_eq!(attn.with_kernel(AttentionKernel::Materialized).kernel(), AttentionKernel::Materialized);
}

#[test]
fn fused_module_equals_materialized_module_on_random_inputs() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(21);
    for case in 0..40 {
        let kv_heads = [1, 2, 3][rng.random_range(0..3)];
        let heads = kv_heads * [1, 2, 4][rng.random_range(0..3)];
        let head_dim = [2, 4, 8][rng.random_range(0..3)];
        let hidden = [8, 12][rng.random_range(0..2)];
        let batch = rng.random_range(1..=3);
        let seq = [1, 5, 63, 64, 65, 130][rng.random_range(0..6)];
        let mut attn = layer(hidden, heads, kv_heads, head_dim, &dev);
        if rng.random_bool(0.3) {
            attn = attn.with_alibi(Alibi::new(heads, DType::F32, &dev).unwrap());
        } else if rng.random_bool(0.4) {
            let cfg = RotaryConfig {
                rotary_dim: head_dim,
                base: 10_000.0,
                layout: RotaryLayout::HalfSplit,
                scaling: RopeScaling::None,
            };
            attn = attn.with_rotary(RotaryEmbedding::new(cfg, 256, DType::F32, &dev).unwrap());
        }
        let mut mask = match rng.random_range(0..4) {
            0 => AttentionMask::none(),
            1 | 2 => AttentionMask::causal(),
            _ => AttentionMask::causal().with_sliding_window(rng.random_range(1..=seq.max(2))),
        };
        if rng.random_bool(0.6) {
            mask = mask.with_key_padding(random_keep(&mut rng, batch, seq, &dev));
        }
        if rng.random_bool(0.3) {
            mask = mask.with_bias(Tensor::randn(0f32, 1., (1, heads, seq, seq), &dev).unwrap());
        }
        let x = Tensor::randn(0f32, 1., (batch, seq, hidden), &dev).unwrap();
        let plain = attn.forward(&x, &mask, None, None).unwrap();
        let fused = attn.clone().with_kernel(AttentionKernel::Fused).forward(&x, &mask, None, None).unwrap();
        let d = max_diff(&plain, &fused);
        assert!(d <= 1e-5, "case {case}: b{batch} h{heads}/{kv_heads} d{head_dim} seq {seq} {mask:?}: {d}");
    }
}

#[test]
fn fused_module_decodes_like_the_materialized_full_pass() {
    // A 70-token prompt (two query tiles) then single tokens, GQA and a left-padded row.
    let dev = common::device();
    let (hidden, heads, kv_heads, head_dim) = (16, 4, 2, 4);
    let attn = layer(hidden, heads, kv_heads, head_dim, &dev);
    let fused = attn.clone().with_kernel(AttentionKernel::Fused);
    let total = 76;
    let x = Tensor::randn(0f32, 1., (2, total, hidden), &dev).unwrap();
    let keep: Vec<u32> = (0..2 * total).map(|i| u32::from(!(total..total + 5).contains(&i))).collect();
    let keep = Tensor::from_vec(keep, (2, total), &dev).unwrap();
    let mask = |len: usize| AttentionMask::causal().with_key_padding(keep.narrow(1, 0, len).unwrap());
    let full = attn.forward(&x, &mask(total), None, None).unwrap();
    let mut cache = KvCache::new(total);
    let mut at = 0;
    for n in [70, 1, 1, 1, 1, 1, 1] {
        let got = fused.forward(&x.narrow(1, at, n).unwrap(), &mask(at + n), None, Some(&mut cache)).unwrap();
        // Row 1's first five queries are padding and see nothing: compare the real rows.
        let want = full.narrow(1, at, n).unwrap();
        let d0 = max_diff(&got.get(0).unwrap(), &want.get(0).unwrap());
        let skip = 5usize.saturating_sub(at).min(n);
        let d1 = max_diff(
            &got.get(1).unwrap().narrow(0, skip, n - skip).unwrap(),
            &want.get(1).unwrap().narrow(0, skip, n - skip).unwrap(),
        );
        assert!(d0 <= 1e-5 && d1 <= 1e-5, "step at {at}: {d0} / {d1}");
        at += n;
    }
}
