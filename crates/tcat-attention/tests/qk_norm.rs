//! Query-key normalisation in the attention module equals a plain reference: projections,
//! root mean squares computed element by element on the host, heads split by hand, rotary from
//! the position crate and the reference attention. Both scopes (whole projection as OLMoE,
//! per head as Qwen3), grouped-query heads, and cached decoding equal to the full pass.

use candle_core::{Device, Tensor};
use tcat_attention::{AttentionMask, MultiHeadAttention, QkNorm, QkNormScope, QkvProjection, reference};
use tcat_core::Linear;
use tcat_position::{RotaryConfig, RotaryEmbedding};

const HIDDEN: usize = 24;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 6;
const EPS: f64 = 1e-6;

fn weight(o: usize, i: usize, dev: &Device) -> Tensor {
    Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap()
}

/// Gains far from 1, so that a norm applied with the wrong gains shows.
fn gains(n: usize, dev: &Device) -> Tensor {
    Tensor::rand(0.5f32, 1.5, n, dev).unwrap()
}

/// `x / sqrt(mean(x²) + eps) * g` over groups of `width` consecutive values, in f64 on the host.
fn rms_by_hand(values: &[f32], width: usize, gains: &[f32]) -> Vec<f32> {
    values
        .chunks(width)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / width as f64;
            let inv = 1.0 / (ms + EPS).sqrt();
            row.iter().zip(gains).map(move |(&v, &g)| (v as f64 * inv * g as f64) as f32).collect::<Vec<_>>()
        })
        .collect()
}

fn heads(x: &Tensor, n: usize) -> Tensor {
    let (b, s, _) = x.dims3().unwrap();
    x.reshape((b, s, n, HEAD_DIM)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn qk_norm_matches_the_reference_in_both_scopes() {
    let dev = Device::Cpu;
    let (b, s) = (2, 5);
    let x = Tensor::randn(0f32, 1., (b, s, HIDDEN), &dev).unwrap();
    let (wq, wk, wv, wo) = (
        weight(HEADS * HEAD_DIM, HIDDEN, &dev),
        weight(KV_HEADS * HEAD_DIM, HIDDEN, &dev),
        weight(KV_HEADS * HEAD_DIM, HIDDEN, &dev),
        weight(HIDDEN, HEADS * HEAD_DIM, &dev),
    );
    let rope = RotaryEmbedding::new(RotaryConfig::new(HEAD_DIM), 32, candle_core::DType::F32, &dev).unwrap();
    for scope in [QkNormScope::Projection, QkNormScope::Head] {
        let (q_width, k_width) = match scope {
            QkNormScope::Projection => (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM),
            QkNormScope::Head => (HEAD_DIM, HEAD_DIM),
        };
        let (gq, gk) = (gains(q_width, &dev), gains(k_width, &dev));
        let qkv = QkvProjection::Separate {
            q: Linear::new(wq.clone(), None),
            k: Linear::new(wk.clone(), None),
            v: Linear::new(wv.clone(), None),
        };
        let module = MultiHeadAttention::new(qkv, Linear::new(wo.clone(), None), HEADS, KV_HEADS, HEAD_DIM)
            .unwrap()
            .with_rotary(rope.clone())
            .with_qk_norm(QkNorm::new(gq.clone(), gk.clone(), EPS, scope).unwrap())
            .unwrap();
        let got = module.forward(&x, &AttentionMask::causal(), None, None).unwrap();

        // The reference: normalise by hand (over the whole projection, or per head after the split).
        let project = |w: &Tensor| x.broadcast_matmul(&w.t().unwrap()).unwrap();
        let normed = |t: Tensor, n: usize, g: &Tensor| -> Tensor {
            let g: Vec<f32> = g.to_vec1().unwrap();
            let (t, width) = match scope {
                QkNormScope::Projection => (t, n * HEAD_DIM),
                QkNormScope::Head => (heads(&t, n), HEAD_DIM),
            };
            let values = rms_by_hand(&t.flatten_all().unwrap().to_vec1().unwrap(), width, &g);
            let t = Tensor::from_vec(values, t.dims(), &dev).unwrap();
            match scope {
                QkNormScope::Projection => heads(&t, n),
                QkNormScope::Head => t,
            }
        };
        let q = normed(project(&wq), HEADS, &gq);
        let k = normed(project(&wk), KV_HEADS, &gk);
        let v = heads(&project(&wv), KV_HEADS);
        let pos = Tensor::arange(0u32, s as u32, &dev).unwrap().unsqueeze(0).unwrap().repeat((b, 1)).unwrap();
        let (q, k) = (rope.apply(&q, &pos).unwrap(), rope.apply(&k, &pos).unwrap());
        let y = reference::attention(&q, &k, &v, &AttentionMask::causal(), 1.0 / (HEAD_DIM as f64).sqrt()).unwrap();
        let y = y.transpose(1, 2).unwrap().reshape((b, s, HEADS * HEAD_DIM)).unwrap();
        let want = y.broadcast_matmul(&wo.t().unwrap()).unwrap();
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "{scope:?}: differs from the reference by {d}");

        // Without the norm the output is visibly different: the test can fail.
        let plain = MultiHeadAttention::new(
            QkvProjection::Separate {
                q: Linear::new(wq.clone(), None),
                k: Linear::new(wk.clone(), None),
                v: Linear::new(wv.clone(), None),
            },
            Linear::new(wo.clone(), None),
            HEADS,
            KV_HEADS,
            HEAD_DIM,
        )
        .unwrap()
        .with_rotary(rope.clone());
        assert!(max_diff(&plain.forward(&x, &AttentionMask::causal(), None, None).unwrap(), &want) > 1e-3);

        // Cached decoding, one token at a time, equals the full pass.
        let mut cache = module.new_cache(s);
        for t in 0..s {
            let step = module.forward(&x.narrow(1, t, 1).unwrap(), &AttentionMask::causal(), None, Some(&mut cache));
            let d = max_diff(&step.unwrap(), &got.narrow(1, t, 1).unwrap());
            assert!(d < 1e-5, "{scope:?}: cached step {t} differs by {d}");
        }
    }
}

#[test]
fn qk_norm_gains_of_the_wrong_width_are_refused() {
    let dev = Device::Cpu;
    let qkv = QkvProjection::Separate {
        q: Linear::new(weight(HEADS * HEAD_DIM, HIDDEN, &dev), None),
        k: Linear::new(weight(KV_HEADS * HEAD_DIM, HIDDEN, &dev), None),
        v: Linear::new(weight(KV_HEADS * HEAD_DIM, HIDDEN, &dev), None),
    };
    let module = MultiHeadAttention::new(
        qkv,
        Linear::new(weight(HIDDEN, HEADS * HEAD_DIM, &dev), None),
        HEADS,
        KV_HEADS,
        HEAD_DIM,
    )
    .unwrap();
    // Per-projection key gains given to a per-head norm.
    let norm = QkNorm::new(gains(HEAD_DIM, &dev), gains(KV_HEADS * HEAD_DIM, &dev), EPS, QkNormScope::Head).unwrap();
    let err = module.with_qk_norm(norm).unwrap_err().to_string();
    assert!(err.contains("expected 6/6"), "{err}");
}
