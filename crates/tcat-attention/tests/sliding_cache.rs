//! A sliding-window layer decoded with a sliding KV cache equals the same layer run over the
//! whole sequence at once, at every step and far past the window.

mod common;

use candle_core::{DType, Device, Tensor};
use tcat_attention::{AttentionMask, KvCache, MultiHeadAttention, QkvProjection, Retention};
use tcat_core::Linear;
use tcat_position::{RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout, sequential_position_ids};
use tcat_testkit::max_diff;

fn layer(hidden: usize, heads: usize, kv_heads: usize, window: usize, dev: &Device) -> MultiHeadAttention {
    let head_dim = hidden / heads;
    let proj =
        |o: usize, i: usize| Linear::new(Tensor::randn(0f32, 1.0 / (i as f32).sqrt(), (o, i), dev).unwrap(), None);
    let qkv = QkvProjection::Separate {
        q: proj(heads * head_dim, hidden),
        k: proj(kv_heads * head_dim, hidden),
        v: proj(kv_heads * head_dim, hidden),
    };
    let rotary = RotaryEmbedding::new(
        RotaryConfig {
            rotary_dim: head_dim,
            base: 10_000.0,
            layout: RotaryLayout::HalfSplit,
            scaling: RopeScaling::None,
        },
        512,
        DType::F32,
        dev,
    )
    .unwrap();
    MultiHeadAttention::new(qkv, proj(hidden, heads * head_dim), heads, kv_heads, head_dim)
        .unwrap()
        .with_rotary(rotary)
        .with_sliding_window(window)
}

/// Decodes `x` in the given chunk sizes with a sliding cache and compares every chunk's output
/// with the full pass.
fn check(window: usize, chunks: &[usize], batch: usize, heads: usize, kv_heads: usize) {
    let dev = common::device();
    let hidden = heads * 4;
    let attn = layer(hidden, heads, kv_heads, window, &dev);
    let total: usize = chunks.iter().sum();
    let x = Tensor::randn(0f32, 1.0, (batch, total, hidden), &dev).unwrap();
    let full = attn.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    let mut cache = KvCache::sliding(window);
    let mut at = 0;
    for &n in chunks {
        let positions = sequential_position_ids(batch, n, at, &dev).unwrap();
        let got =
            attn.forward(&x.narrow(1, at, n).unwrap(), &AttentionMask::causal(), Some(&positions), Some(&mut cache));
        let d = max_diff(&got.unwrap(), &full.narrow(1, at, n).unwrap());
        assert!(d < 1e-5, "window {window}, chunks {chunks:?}: chunk at {at} differs by {d}");
        at += n;
        assert!(cache.held() < window, "the cache holds {} positions for a window of {window}", cache.held());
    }
    assert_eq!(cache.len(), total);
}

#[test]
fn token_by_token_past_three_windows() {
    check(4, &[1; 15], 1, 4, 4);
    check(5, &[1; 17], 2, 6, 2);
}

#[test]
fn prefill_longer_than_the_window_then_tokens() {
    check(4, &[11, 1, 1, 1, 1, 1], 2, 4, 2);
    check(3, &[20, 1, 1, 1], 1, 3, 1);
}

#[test]
fn prefill_shorter_than_the_window_then_chunks() {
    check(8, &[3, 2, 5, 1, 7, 4, 6], 2, 4, 2);
    check(6, &[2, 9, 3, 13, 1], 1, 6, 3);
}

#[test]
fn window_one_sees_only_itself() {
    check(1, &[3, 1, 2, 1], 1, 2, 1);
}

#[test]
fn sliding_windows_with_left_padding_align_the_key_mask() {
    // Row 1 is left-padded by two tokens; the padding mask grows with the sequence while the
    // cache drops old keys, and the layer narrows the mask to the keys it holds.
    let dev = common::device();
    let (window, hidden) = (4, 16);
    let attn = layer(hidden, 4, 2, window, &dev);
    let total = 12;
    let x = Tensor::randn(0f32, 1.0, (2, total, hidden), &dev).unwrap();
    let mut keep = vec![1u32; 2 * total];
    keep[total] = 0;
    keep[total + 1] = 0;
    let keep = Tensor::from_vec(keep, (2, total), &dev).unwrap();
    let positions = tcat_position::positions_from_attention_mask(&keep).unwrap();
    let mask = |len: usize| AttentionMask::causal().with_key_padding(keep.narrow(1, 0, len).unwrap());
    let full = attn.forward(&x, &mask(total), Some(&positions), None).unwrap();
    let mut cache = KvCache::sliding(window);
    let prompt = 5;
    let mut outputs = vec![
        attn.forward(
            &x.narrow(1, 0, prompt).unwrap(),
            &mask(prompt),
            Some(&positions.narrow(1, 0, prompt).unwrap()),
            Some(&mut cache),
        )
        .unwrap(),
    ];
    for t in prompt..total {
        let p = positions.narrow(1, t, 1).unwrap();
        outputs.push(attn.forward(&x.narrow(1, t, 1).unwrap(), &mask(t + 1), Some(&p), Some(&mut cache)).unwrap());
    }
    let got = Tensor::cat(&outputs, 1).unwrap();
    // Padded query positions may differ; compare the real ones.
    assert!(max_diff(&got.get(0).unwrap(), &full.get(0).unwrap()) < 1e-5);
    assert!(
        max_diff(
            &got.get(1).unwrap().narrow(0, 2, total - 2).unwrap(),
            &full.get(1).unwrap().narrow(0, 2, total - 2).unwrap()
        ) < 1e-5
    );
}

#[test]
fn layers_choose_their_cache() {
    let dev = common::device();
    let attn = layer(8, 2, 2, 16, &dev);
    assert_eq!(attn.new_cache(1000).retention(), Retention::Window { window: 16 });
    assert_eq!(attn.new_cache(20).retention(), Retention::All { capacity: 20 });
}
