//! Position schemes at the level of a stack:
//!
//! - T5's relative bias computed once per stack (Raffel et al. 2020, §2.1), in a causal decoder
//!   as LaMDA uses it: equal to every layer computing the same bias itself, and cached decoding
//!   (token by token and in chunks) equal to the full pass;
//! - Transformer-XL's segment-level recurrence (Dai et al. 2019, §3.2) with its relative term:
//!   segments fed one after the other with a memory that holds everything seen equal one causal
//!   pass over their concatenation; a shorter memory keeps only its `mem_len` positions.

use candle_core::{Device, Tensor};
use tcat_attention::{AttentionMask, MultiHeadAttention, PositionTerm, QkvProjection, XlRelativePosition};
use tcat_blocks::{Activation, FeedForward, Norm, Residual, Stack, TransformerLayer};
use tcat_core::Linear;
use tcat_position::{BucketDirection, RelativePositionBias, SegmentMemory};
use tcat_testkit::max_diff;

const HIDDEN: usize = 16;
const HEADS: usize = 4;
const HEAD_DIM: usize = 4;

fn lin(o: usize, i: usize, dev: &Device) -> Linear {
    Linear::new(
        Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap(),
        Some(Tensor::randn(0f32, 0.1, o, dev).unwrap()),
    )
}

fn norm(dev: &Device) -> Norm {
    Norm::layer_norm(
        Tensor::randn(1f32, 0.1, HIDDEN, dev).unwrap(),
        Tensor::randn(0f32, 0.1, HIDDEN, dev).unwrap(),
        1e-5,
    )
}

fn layer(attention: MultiHeadAttention, residual: Residual, dev: &Device) -> TransformerLayer {
    let ffn = FeedForward::new(lin(2 * HIDDEN, HIDDEN, dev), lin(HIDDEN, 2 * HIDDEN, dev), Activation::Gelu);
    TransformerLayer::new(attention, norm(dev), ffn, norm(dev), residual)
}

fn attention(kv_heads: usize, dev: &Device) -> MultiHeadAttention {
    let qkv = QkvProjection::Fused(lin((HEADS + 2 * kv_heads) * HEAD_DIM, HIDDEN, dev));
    MultiHeadAttention::new(qkv, lin(HIDDEN, HEADS * HEAD_DIM, dev), HEADS, kv_heads, HEAD_DIM).unwrap()
}

#[test]
fn t5_bias_shared_by_a_causal_stack_decodes_like_the_full_pass() {
    let dev = Device::Cpu;
    let table = Tensor::randn(0f32, 1., (8, HEADS), &dev).unwrap();
    let t5 = RelativePositionBias::new(table, BucketDirection::Causal, 10).unwrap();
    let attentions: Vec<MultiHeadAttention> = (0..2).map(|_| attention(2, &dev).with_scale(1.0)).collect();
    let layers: Vec<TransformerLayer> = attentions.iter().map(|a| layer(a.clone(), Residual::PreNorm, &dev)).collect();
    let final_norm = norm(&dev);
    let shared = Stack::new(layers.clone(), Some(final_norm.clone())).with_relative_bias(t5.clone());
    // The reference: each layer computes the same bias itself (T5 keeps it in the first only).
    let per_layer = Stack::new(
        attentions
            .iter()
            .zip(&layers)
            .map(|(a, l)| {
                // Same weights: rebuild the layer around the attention with its own term.
                let with_term = a.clone().with_position(PositionTerm::RelativeBias(t5.clone()));
                rebuild(l, with_term)
            })
            .collect(),
        Some(final_norm),
    );
    let x = Tensor::randn(0f32, 1., (2, 14, HIDDEN), &dev).unwrap();
    let full = shared.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    let reference = per_layer.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    assert!(max_diff(&full, &reference) < 1e-5, "{}", max_diff(&full, &reference));
    let no_bias = Stack::new(layers, None).forward(&x, &AttentionMask::causal(), None, None).unwrap();
    assert!(max_diff(&full, &no_bias) > 1e-3, "the bias must matter");
    for chunks in [vec![1; 14], vec![5, 1, 3, 5]] {
        let mut caches = shared.new_caches(14);
        let mut at = 0;
        for n in chunks.iter().copied() {
            let step = shared.forward(&x.narrow(1, at, n).unwrap(), &AttentionMask::causal(), None, Some(&mut caches));
            let d = max_diff(&step.unwrap(), &full.narrow(1, at, n).unwrap());
            assert!(d < 1e-5, "chunks {chunks:?}: the step at {at} (+{n}) differs by {d}");
            at += n;
        }
    }
}

/// `l` with its attention replaced (same norms and feed-forward weights).
fn rebuild(l: &TransformerLayer, attention: MultiHeadAttention) -> TransformerLayer {
    let (attention_norm, feed_forward, feed_forward_norm, residual) = l.parts();
    TransformerLayer::new(attention, attention_norm.clone(), feed_forward.clone(), feed_forward_norm.clone(), residual)
}

fn xl_stack(dev: &Device) -> Stack {
    let layers = (0..2)
        .map(|_| {
            let u = Tensor::randn(0f32, 0.5, (HEADS, HEAD_DIM), dev).unwrap();
            let v = Tensor::randn(0f32, 0.5, (HEADS, HEAD_DIM), dev).unwrap();
            let xl = XlRelativePosition::new(lin(HEADS * HEAD_DIM, HIDDEN, dev), u, v).unwrap();
            layer(attention(HEADS, dev).with_position(PositionTerm::score(xl)), Residual::PostNorm, dev)
        })
        .collect();
    Stack::new(layers, None)
}

#[test]
fn transformer_xl_segments_with_memory_equal_one_pass_over_their_concatenation() {
    let dev = Device::Cpu;
    let stack = xl_stack(&dev);
    let x = Tensor::randn(0f32, 1., (2, 12, HIDDEN), &dev).unwrap();
    let full = stack.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    let mut memory = SegmentMemory::new(2, 12);
    let mut at = 0;
    for n in [4, 3, 5] {
        let got = stack.forward_with_memory(&x.narrow(1, at, n).unwrap(), &AttentionMask::causal(), &mut memory);
        let d = max_diff(&got.unwrap(), &full.narrow(1, at, n).unwrap());
        assert!(d < 1e-5, "segment at {at} (+{n}) differs by {d}");
        at += n;
        assert_eq!(memory.len(0), at);
    }
    // A memory of 3 positions forgets: the last segment then differs from the full pass.
    let mut short = SegmentMemory::new(2, 3);
    let mut last = None;
    for (at, n) in [(0, 4), (4, 3), (7, 5)] {
        last = Some(stack.forward_with_memory(&x.narrow(1, at, n).unwrap(), &AttentionMask::causal(), &mut short));
        assert_eq!(short.len(1), 3);
    }
    assert!(max_diff(&last.unwrap().unwrap(), &full.narrow(1, 7, 5).unwrap()) > 1e-4);
    let err = stack.forward_with_memory(&x, &AttentionMask::causal(), &mut SegmentMemory::new(3, 4)).unwrap_err();
    assert!(err.to_string().contains("serves 3 layers"), "{err}");
}
