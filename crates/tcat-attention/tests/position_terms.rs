//! The one way positions and per-layer patterns enter the module, against references written
//! out loop by loop in f64:
//!
//! - a layer's own sparse pattern (`with_pattern`, `LayerAttention::Sparse`) = the reference
//!   attention with the pattern ANDed into the caller's mask (padding, sliding window);
//! - Transformer-XL's relative term (Dai et al. 2019, §3.3) over `[memory; segment]` = the
//!   paper's score `(q_i + u)·k_j + (q_i + v)·W_R R_{i−j}` written out per query, key and head;
//!   cached decoding of the same layer = its full pass;
//! - T5's bucketed bias as a module term, decoded with a cache = the full pass.

mod common;

use candle_core::{DType, Device, Tensor};
use tcat_attention::{
    AttentionKernel, AttentionMask, GridAxis, KvCache, LayerAttention, MultiHeadAttention, PositionTerm, QkvProjection,
    SparsePattern, XlRelativePosition,
};
use tcat_core::Linear;
use tcat_position::{BucketDirection, RelativePositionBias};
use tcat_testkit::max_diff;

const KERNELS: [AttentionKernel; 2] = [AttentionKernel::Materialized, AttentionKernel::Fused];

fn weight(o: usize, i: usize, dev: &Device) -> Tensor {
    Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap()
}

/// A host copy of a 2-D tensor in f64.
fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

/// `x · wᵀ` for `x` `[n, i]`, `w` `[o, i]`.
fn project(x: &[Vec<f64>], w: &[Vec<f64>]) -> Vec<Vec<f64>> {
    x.iter().map(|row| w.iter().map(|wr| row.iter().zip(wr).map(|(a, b)| a * b).sum()).collect()).collect()
}

#[test]
fn a_layer_pattern_is_anded_with_the_callers_mask() {
    let dev = common::device();
    let (hidden, heads, kv_heads, head_dim, seq) = (16, 4, 2, 4, 13);
    let (wq, wk, wv) = (weight(16, hidden, &dev), weight(8, hidden, &dev), weight(8, hidden, &dev));
    let qkv = QkvProjection::Separate {
        q: Linear::new(wq.clone(), None),
        k: Linear::new(wk.clone(), None),
        v: Linear::new(wv.clone(), None),
    };
    // The identity out-projection exposes the attention itself.
    let eye = Tensor::eye(16, DType::F32, &dev).unwrap();
    let base = MultiHeadAttention::new(qkv, Linear::new(eye, None), heads, kv_heads, head_dim).unwrap();
    let x = Tensor::randn(0f32, 1., (2, seq, hidden), &dev).unwrap();
    let split = |w: &Tensor, h: usize| {
        x.broadcast_matmul(&w.t().unwrap()).unwrap().reshape((2, seq, h, head_dim)).unwrap().transpose(1, 2).unwrap()
    };
    let (q, k, v) = (split(&wq, heads), split(&wk, kv_heads), split(&wv, kv_heads));
    let keep = Tensor::new(&[[1u32; 13], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]], &dev).unwrap();
    let patterns = [
        SparsePattern::Strided { stride: 3 },
        SparsePattern::Fixed { block: 4, summary: 1 },
        SparsePattern::Dalle { text: 1, rows: 3, cols: 4, axis: GridAxis::Row },
        SparsePattern::Dalle { text: 1, rows: 3, cols: 4, axis: GridAxis::Column },
        SparsePattern::Dalle { text: 1, rows: 3, cols: 4, axis: GridAxis::Convolutional { kernel: 3 } },
    ];
    let callers = [
        AttentionMask::causal(),
        AttentionMask::causal().with_key_padding(keep.clone()),
        AttentionMask::causal().with_sliding_window(7),
        AttentionMask::none().with_pattern(SparsePattern::Strided { stride: 2 }),
    ];
    for pattern in patterns {
        for caller in &callers {
            let want = tcat_attention::reference::attention(&q, &k, &v, &caller.clone().with_pattern(pattern), 0.5)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape((2, seq, heads * head_dim))
                .unwrap();
            for kernel in KERNELS {
                for layer in
                    [base.clone().with_pattern(pattern), LayerAttention::Sparse { pattern }.apply(base.clone())]
                {
                    let got = layer.with_kernel(kernel).forward(&x, caller, None, None).unwrap();
                    let d = max_diff(&got, &want);
                    assert!(d < 1e-5, "{pattern:?} with {caller:?}, {kernel:?}: {d}");
                }
            }
            // The restriction must matter, or the test proves nothing.
            let plain = base.forward(&x, caller, None, None).unwrap();
            assert!(max_diff(&plain, &want) > 1e-3, "{pattern:?} hides nothing beyond {caller:?}");
        }
    }
    // A pattern layer keeps every position in its cache (patterns speak absolute positions).
    let layer = base.with_sliding_window(2).with_pattern(SparsePattern::Strided { stride: 2 });
    assert_eq!(layer.new_cache(100).len(), 0);
    assert!(format!("{:?}", layer.new_cache(100)).contains("All"));
}

/// A Transformer-XL attention layer with fused `qkv_net`, `o_net`, `r_net` and `u`, `v`.
struct XlWeights {
    qkv: Tensor,
    out: Tensor,
    r: Tensor,
    u: Tensor,
    v: Tensor,
}

const XL_HIDDEN: usize = 12;
const XL_HEADS: usize = 3;
const XL_HEAD_DIM: usize = 4;

fn xl_weights(dev: &Device) -> XlWeights {
    let width = XL_HEADS * XL_HEAD_DIM;
    XlWeights {
        qkv: weight(3 * width, XL_HIDDEN, dev),
        out: weight(XL_HIDDEN, width, dev),
        r: weight(width, XL_HIDDEN, dev),
        u: Tensor::randn(0f32, 0.5, (XL_HEADS, XL_HEAD_DIM), dev).unwrap(),
        v: Tensor::randn(0f32, 0.5, (XL_HEADS, XL_HEAD_DIM), dev).unwrap(),
    }
}

fn xl_layer(w: &XlWeights) -> MultiHeadAttention {
    let xl = XlRelativePosition::new(Linear::new(w.r.clone(), None), w.u.clone(), w.v.clone()).unwrap();
    MultiHeadAttention::new(
        QkvProjection::Fused(Linear::new(w.qkv.clone(), None)),
        Linear::new(w.out.clone(), None),
        XL_HEADS,
        XL_HEADS,
        XL_HEAD_DIM,
    )
    .unwrap()
    .with_position(PositionTerm::score(xl))
}

/// The paper's attention for one batch row, loop by loop: `h` `[seq, hidden]` after `mem`
/// `[mem_len, hidden]`, causal over `[mem; h]`, scale `1/√d`.
#[allow(clippy::needless_range_loop)] // the paper's indices, spelled out
fn xl_reference(w: &XlWeights, mem: &[Vec<f64>], h: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (m, s, d, width) = (mem.len(), h.len(), XL_HEAD_DIM, XL_HEADS * XL_HEAD_DIM);
    let ext: Vec<Vec<f64>> = mem.iter().chain(h).cloned().collect();
    let qkv = project(&ext, &rows(&w.qkv));
    let (u, v, wr) = (rows(&w.u), rows(&w.v), rows(&w.r));
    let scale = 1.0 / (d as f64).sqrt();
    // R_δ for δ ≥ 0: sines then cosines of δ · 10000^(−2k/hidden).
    let sinusoid = |delta: f64| -> Vec<f64> {
        let half = XL_HIDDEN / 2;
        let angle = |k: usize| delta * 10000f64.powf(-2.0 * k as f64 / XL_HIDDEN as f64);
        (0..half).map(|k| angle(k).sin()).chain((0..half).map(|k| angle(k).cos())).collect()
    };
    let mut out = vec![vec![0.0; width]; s];
    for (i, out_row) in out.iter_mut().enumerate() {
        let p = m + i; // the query's position among the keys
        for head in 0..XL_HEADS {
            let q: Vec<f64> = (0..d).map(|x| qkv[p][head * d + x]).collect();
            let mut scores = Vec::new();
            for j in 0..=p {
                let k: Vec<f64> = (0..d).map(|x| qkv[j][width + head * d + x]).collect();
                let r = project(&[sinusoid((p - j) as f64)], &wr).remove(0);
                let content: f64 = (0..d).map(|x| (q[x] + u[head][x]) * k[x]).sum();
                let position: f64 = (0..d).map(|x| (q[x] + v[head][x]) * r[head * d + x]).sum();
                scores.push((content + position) * scale);
            }
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for (j, wj) in weights.iter().enumerate() {
                for x in 0..d {
                    out_row[head * d + x] += wj / total * qkv[j][2 * width + head * d + x];
                }
            }
        }
    }
    project(&out, &rows(&w.out))
}

#[test]
fn transformer_xl_with_segment_memory_equals_the_papers_score() {
    let dev = common::device();
    let w = xl_weights(&dev);
    for (mem_len, seq) in [(0, 5), (4, 3), (7, 7), (2, 1)] {
        let mem = Tensor::randn(0f32, 1., (2, mem_len, XL_HIDDEN), &dev).unwrap();
        let h = Tensor::randn(0f32, 1., (2, seq, XL_HIDDEN), &dev).unwrap();
        let memory = (mem_len > 0).then_some(&mem);
        for kernel in KERNELS {
            let got =
                xl_layer(&w).with_kernel(kernel).forward_with_memory(&h, memory, &AttentionMask::causal()).unwrap();
            for b in 0..2 {
                let want = xl_reference(&w, &rows(&mem.get(b).unwrap()), &rows(&h.get(b).unwrap()));
                let want = Tensor::new(want, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
                let d = max_diff(&got.get(b).unwrap(), &want);
                assert!(d < 1e-5, "memory {mem_len}, segment {seq}, {kernel:?}, row {b}: {d}");
            }
        }
    }
}

#[test]
fn transformer_xl_decoding_with_a_cache_equals_the_full_pass() {
    // The relative term depends on distances only, so feeding the segment chunk by chunk
    // through a KV cache gives the full pass (memory of the cache = the earlier chunks).
    let dev = common::device();
    let w = xl_weights(&dev);
    let x = Tensor::randn(0f32, 1., (2, 9, XL_HIDDEN), &dev).unwrap();
    let layer = xl_layer(&w);
    let full = layer.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    for kernel in KERNELS {
        let layer = layer.clone().with_kernel(kernel);
        let mut cache = KvCache::new(9);
        let mut at = 0;
        for n in [1, 3, 2, 3] {
            let got = layer.forward(&x.narrow(1, at, n).unwrap(), &AttentionMask::causal(), None, Some(&mut cache));
            let d = max_diff(&got.unwrap(), &full.narrow(1, at, n).unwrap());
            assert!(d < 1e-5, "{kernel:?}: the step at {at} (+{n}) differs by {d}");
            at += n;
        }
    }
}

#[test]
fn t5_bias_as_a_module_term_decodes_like_the_full_pass() {
    let dev = common::device();
    let (hidden, heads, kv_heads, head_dim) = (16, 4, 2, 4);
    let table = Tensor::randn(0f32, 1., (8, heads), &dev).unwrap();
    let t5 = RelativePositionBias::new(table, BucketDirection::Causal, 12).unwrap();
    let qkv = QkvProjection::Separate {
        q: Linear::new(weight(16, hidden, &dev), None),
        k: Linear::new(weight(8, hidden, &dev), None),
        v: Linear::new(weight(8, hidden, &dev), None),
    };
    let plain = MultiHeadAttention::new(qkv, Linear::new(weight(hidden, 16, &dev), None), heads, kv_heads, head_dim)
        .unwrap()
        .with_scale(1.0);
    let layer = plain.clone().with_position(PositionTerm::RelativeBias(t5.clone()));
    let x = Tensor::randn(0f32, 1., (2, 15, hidden), &dev).unwrap();
    let full = layer.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    // The term is the bias T5 passes in the mask, and it matters.
    let by_mask = plain.forward(&x, &AttentionMask::causal().with_bias(t5.bias(15, 15).unwrap()), None, None).unwrap();
    assert!(max_diff(&full, &by_mask) < 1e-6);
    assert!(max_diff(&full, &plain.forward(&x, &AttentionMask::causal(), None, None).unwrap()) > 1e-3);
    for kernel in KERNELS {
        let layer = layer.clone().with_kernel(kernel);
        let mut cache = KvCache::new(15);
        let mut at = 0;
        for n in [4, 1, 1, 5, 2, 2] {
            let got = layer.forward(&x.narrow(1, at, n).unwrap(), &AttentionMask::causal(), None, Some(&mut cache));
            let d = max_diff(&got.unwrap(), &full.narrow(1, at, n).unwrap());
            assert!(d < 1e-5, "{kernel:?}: the step at {at} (+{n}) differs by {d}");
            at += n;
        }
    }
}

#[test]
fn deberta_terms_through_the_module_equal_the_bias_in_the_reference() {
    // DeBERTa (He et al. 2021, eq. 2–4): c2p and p2c over the shared relative embeddings, every
    // term scaled by 1/√(3d); the module adds them through its one ScoreTerm path.
    use tcat_attention::DisentangledPosition;
    use tcat_position::{LogBuckets, deberta_relative_positions, disentangled_bias};
    let dev = common::device();
    let (hidden, heads, head_dim, seq, span) = (16, 4, 4, 9, 4);
    let (wq, wk, wv) = (weight(16, hidden, &dev), weight(16, hidden, &dev), weight(16, hidden, &dev));
    let qkv = QkvProjection::Separate {
        q: Linear::new(wq.clone(), None),
        k: Linear::new(wk.clone(), None),
        v: Linear::new(wv.clone(), None),
    };
    let eye = Tensor::eye(16, DType::F32, &dev).unwrap();
    let scale = 1.0 / ((head_dim * 3) as f64).sqrt();
    let pos_q = Tensor::randn(0f32, 1., (heads, 2 * span, head_dim), &dev).unwrap();
    let pos_k = Tensor::randn(0f32, 1., (heads, 2 * span, head_dim), &dev).unwrap();
    let buckets = Some(LogBuckets { bucket_size: 4, max_position: 8 });
    let term = DisentangledPosition::new(Some(pos_q.clone()), Some(pos_k.clone()), span, buckets);
    let layer = MultiHeadAttention::new(qkv, Linear::new(eye, None), heads, heads, head_dim)
        .unwrap()
        .with_scale(scale)
        .with_position(PositionTerm::score(term));
    let x = Tensor::randn(0f32, 1., (2, seq, hidden), &dev).unwrap();
    let split = |w: &Tensor| {
        x.broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .reshape((2, seq, heads, head_dim))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
    };
    let (q, k, v) = (split(&wq), split(&wk), split(&wv));
    let relative = deberta_relative_positions(seq, seq, buckets, &dev).unwrap();
    let bias = disentangled_bias(&q, &k, Some(&pos_q), Some(&pos_k), &relative, span, scale).unwrap();
    let keep = Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0]], &dev).unwrap();
    let mask = AttentionMask::none().with_key_padding(keep);
    let want = tcat_attention::reference::attention(&q, &k, &v, &mask.clone().with_bias(bias), scale)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((2, seq, 16))
        .unwrap();
    for kernel in KERNELS {
        let got = layer.clone().with_kernel(kernel).forward(&x, &mask, None, None).unwrap();
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "{kernel:?}: {d}");
    }
    let plain = tcat_attention::reference::attention(&q, &k, &v, &mask, scale).unwrap();
    let plain = plain.transpose(1, 2).unwrap().reshape((2, seq, 16)).unwrap();
    assert!(max_diff(&plain, &want) > 1e-3, "the position terms must matter");
}
