//! Cross-attention (encoder-decoder attention, Vaswani et al. 2017 §3.2.3) against a reference
//! whose projections are loops over the raw weights in f64 and whose attention is
//! [`reference::attention`], with key padding on the memory; and decoding with the memory's keys
//! and values projected once, every step equal to a full recompute.

mod common;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{AttentionMask, MultiHeadAttention, QkvProjection, reference};
use tcat_core::Linear;
use tcat_testkit::max_diff;

/// A dense layer kept twice: as host f64 rows (`[out][in]`, bias) for the reference, and as a
/// `Linear` for the module.
struct Dense {
    w: Vec<Vec<f64>>,
    b: Vec<f64>,
}

impl Dense {
    fn random(rng: &mut StdRng, out: usize, inp: usize) -> Self {
        let s = 1.0 / (inp as f64).sqrt();
        let w = (0..out).map(|_| (0..inp).map(|_| rng.random_range(-s..s)).collect()).collect();
        let b = (0..out).map(|_| rng.random_range(-0.2..0.2)).collect();
        Self { w, b }
    }

    fn linear(&self, dev: &Device) -> Linear {
        let (out, inp) = (self.w.len(), self.w[0].len());
        let w: Vec<f32> = self.w.iter().flatten().map(|&x| x as f32).collect();
        let b: Vec<f32> = self.b.iter().map(|&x| x as f32).collect();
        Linear::new(Tensor::from_vec(w, (out, inp), dev).unwrap(), Some(Tensor::from_vec(b, out, dev).unwrap()))
    }

    /// `y[t] = W x[t] + b`, token by token.
    fn apply(&self, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
        x.iter()
            .map(|xt| {
                self.w
                    .iter()
                    .zip(&self.b)
                    .map(|(row, b)| b + row.iter().zip(xt).map(|(w, x)| w * x).sum::<f64>())
                    .collect()
            })
            .collect()
    }
}

struct Setup {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    q: Dense,
    k: Dense,
    v: Dense,
    out: Dense,
}

impl Setup {
    fn new(rng: &mut StdRng, hidden: usize, heads: usize, kv_heads: usize, head_dim: usize) -> Self {
        Self {
            heads,
            kv_heads,
            head_dim,
            q: Dense::random(rng, heads * head_dim, hidden),
            k: Dense::random(rng, kv_heads * head_dim, hidden),
            v: Dense::random(rng, kv_heads * head_dim, hidden),
            out: Dense::random(rng, hidden, heads * head_dim),
        }
    }

    fn module(&self, dev: &Device) -> MultiHeadAttention {
        let qkv = QkvProjection::Separate { q: self.q.linear(dev), k: self.k.linear(dev), v: self.v.linear(dev) };
        MultiHeadAttention::new(qkv, self.out.linear(dev), self.heads, self.kv_heads, self.head_dim).unwrap()
    }

    /// Cross-attention written out: project with loops, split heads by columns, attend with
    /// the reference, concatenate the heads, project out with loops.
    fn reference(&self, x: &Tensor, memory: &Tensor, keep: &Tensor) -> Tensor {
        let dev = x.device();
        let host = |t: &Tensor| -> Vec<Vec<Vec<f64>>> { t.to_dtype(DType::F64).unwrap().to_vec3().unwrap() };
        let (x, memory) = (host(x), host(memory));
        let d = self.head_dim;
        // [batch][seq][heads·d] → [batch, heads, seq, d]
        let heads_of = |rows: Vec<Vec<Vec<f64>>>, heads: usize| {
            let (b, s) = (rows.len(), rows[0].len());
            let mut flat = Vec::with_capacity(b * heads * s * d);
            for row in &rows {
                for h in 0..heads {
                    for token in row {
                        flat.extend_from_slice(&token[h * d..(h + 1) * d]);
                    }
                }
            }
            Tensor::from_vec(flat, (b, heads, s, d), dev).unwrap()
        };
        let q = heads_of(x.iter().map(|r| self.q.apply(r)).collect(), self.heads);
        let k = heads_of(memory.iter().map(|r| self.k.apply(r)).collect(), self.kv_heads);
        let v = heads_of(memory.iter().map(|r| self.v.apply(r)).collect(), self.kv_heads);
        let mask = AttentionMask::none().with_key_padding(keep.clone());
        let o = reference::attention(&q, &k, &v, &mask, 1.0 / (d as f64).sqrt()).unwrap();
        // [batch, heads, seq, d] → [batch][seq][heads·d], head h in columns h·d..(h+1)·d
        let (b, h, s, _) = o.dims4().unwrap();
        let o: Vec<f64> = o.flatten_all().unwrap().to_vec1().unwrap();
        let merged: Vec<Vec<Vec<f64>>> = (0..b)
            .map(|bi| {
                (0..s)
                    .map(|t| (0..h).flat_map(|hi| o[((bi * h + hi) * s + t) * d..][..d].iter().copied()).collect())
                    .collect()
            })
            .collect();
        let y: Vec<f32> = merged.iter().flat_map(|r| self.out.apply(r)).flatten().map(|v| v as f32).collect();
        Tensor::from_vec(y, (merged.len(), merged[0].len(), self.out.w.len()), dev).unwrap()
    }
}

/// Memory padding: row `r` keeps its first `lens[r]` positions.
fn keep_prefix(lens: &[usize], len: usize, dev: &Device) -> Tensor {
    let keep: Vec<u32> = lens.iter().flat_map(|&n| (0..len).map(move |j| u32::from(j < n))).collect();
    Tensor::from_vec(keep, (lens.len(), len), dev).unwrap()
}

#[test]
fn cross_attention_with_padded_memory_matches_the_written_out_reference() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(11);
    for (heads, kv_heads, head_dim, hidden) in [(2, 2, 4, 8), (4, 2, 3, 10), (6, 1, 2, 6)] {
        let setup = Setup::new(&mut rng, hidden, heads, kv_heads, head_dim);
        let attn = setup.module(&dev);
        let x = Tensor::randn(0f32, 1., (3, 5, hidden), &dev).unwrap();
        let memory = Tensor::randn(0f32, 1., (3, 7, hidden), &dev).unwrap();
        let keep = keep_prefix(&[7, 4, 1], 7, &dev);
        let mask = AttentionMask::none().with_key_padding(keep.clone());
        let got = attn.forward_cross(&x, &memory, &mask).unwrap();
        let want = setup.reference(&x, &memory, &keep);
        let d = max_diff(&got, &want);
        assert!(d <= 1e-5, "{heads} heads / {kv_heads} kv heads: {d}");
        // The padding matters: without it the rows with padded memory change.
        let unmasked = attn.forward_cross(&x, &memory, &AttentionMask::none()).unwrap();
        assert!(max_diff(&unmasked.narrow(0, 1, 2).unwrap(), &want.narrow(0, 1, 2).unwrap()) > 1e-3);
    }
}

#[test]
fn memory_projected_once_serves_every_decoding_step() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(12);
    let (heads, kv_heads, head_dim, hidden) = (4, 2, 4, 12);
    let setup = Setup::new(&mut rng, hidden, heads, kv_heads, head_dim);
    let attn = setup.module(&dev);
    let steps = 6;
    let x = Tensor::randn(0f32, 1., (2, steps, hidden), &dev).unwrap();
    let memory = Tensor::randn(0f32, 1., (2, 9, hidden), &dev).unwrap();
    let keep = keep_prefix(&[9, 5], 9, &dev);
    let mask = AttentionMask::none().with_key_padding(keep.clone());
    // The encoder's keys and values, once.
    let (k, v) = attn.project_kv(&memory).unwrap();
    assert_eq!(k.dims(), &[2, kv_heads, 9, head_dim]);
    for t in 0..steps {
        let q = attn.project_q(&x.narrow(1, t, 1).unwrap()).unwrap();
        let step = attn.attend(&q, &k, &v, &mask).unwrap();
        // A full recompute over every decoder position so far, memory projected again.
        let recomputed = attn.forward_cross(&x.narrow(1, 0, t + 1).unwrap(), &memory, &mask).unwrap();
        let d = max_diff(&step, &recomputed.narrow(1, t, 1).unwrap());
        assert!(d <= 1e-5, "step {t}: {d}");
        let want = setup.reference(&x.narrow(1, t, 1).unwrap(), &memory, &keep);
        assert!(max_diff(&step, &want) <= 1e-5, "step {t} against the reference");
    }
}
