//! The encoder-decoder's decoder layer (Vaswani et al. 2017, §3.1): self-attention,
//! cross-attention to a padded encoder memory, feed-forward, against the three sub-layers
//! written out with plain tensor operations, for post- and pre-norm placement; cached decoding
//! with the memory projected once equals the full pass.

use candle_core::{D, Device, Tensor};
use tcat_attention::{AttentionMask, MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, FeedForward, Norm, Residual, Stack, TransformerLayer};
use tcat_core::Linear;

const H: usize = 8;
const HEADS: usize = 2;
const HD: usize = 4;

fn rand(shape: &[usize], scale: f64, dev: &Device) -> Tensor {
    Tensor::randn(0f32, 1f32, shape, dev).unwrap().affine(scale, 0.).unwrap()
}

struct Proj {
    w: Tensor,
    b: Tensor,
}

impl Proj {
    fn new(o: usize, i: usize, dev: &Device) -> Self {
        Self { w: rand(&[o, i], 0.5, dev), b: rand(&[o], 0.2, dev) }
    }
    fn linear(&self) -> Linear {
        Linear::new(self.w.clone(), Some(self.b.clone()))
    }
    /// `x W^T + b`, written out.
    fn apply(&self, x: &Tensor) -> Tensor {
        x.broadcast_matmul(&self.w.t().unwrap()).unwrap().broadcast_add(&self.b).unwrap()
    }
}

struct Attn {
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
}

impl Attn {
    fn new(dev: &Device) -> Self {
        Self { q: Proj::new(H, H, dev), k: Proj::new(H, H, dev), v: Proj::new(H, H, dev), o: Proj::new(H, H, dev) }
    }
    fn module(&self) -> MultiHeadAttention {
        let qkv = QkvProjection::Separate { q: self.q.linear(), k: self.k.linear(), v: self.v.linear() };
        MultiHeadAttention::new(qkv, self.o.linear(), HEADS, HEADS, HD).unwrap()
    }
    /// softmax(q kᵀ/√d + bias) v per head, written out; `bias` `[batch, q, k]` is 0 or -inf.
    fn apply(&self, x: &Tensor, memory: &Tensor, bias: &Tensor) -> Tensor {
        let heads = |t: Tensor| {
            let (b, s, _) = t.dims3().unwrap();
            t.reshape((b, s, HEADS, HD)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
        };
        let (q, k, v) = (heads(self.q.apply(x)), heads(self.k.apply(memory)), heads(self.v.apply(memory)));
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / (HD as f64).sqrt()).unwrap();
        let scores = scores.broadcast_add(&bias.unsqueeze(1).unwrap()).unwrap();
        let max = scores.max_keepdim(D::Minus1).unwrap();
        let e = scores.broadcast_sub(&max).unwrap().exp().unwrap();
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
        let y = p.matmul(&v).unwrap().transpose(1, 2).unwrap();
        let (b, s, _, _) = y.dims4().unwrap();
        self.o.apply(&y.reshape((b, s, H)).unwrap())
    }
}

struct Ln {
    g: Tensor,
    b: Tensor,
}

impl Ln {
    fn new(dev: &Device) -> Self {
        Self { g: rand(&[H], 0.2, dev).affine(1., 1.).unwrap(), b: rand(&[H], 0.2, dev) }
    }
    fn norm(&self) -> Norm {
        Norm::layer_norm(self.g.clone(), self.b.clone(), 1e-5)
    }
    fn apply(&self, x: &Tensor) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let c = x.broadcast_sub(&mean).unwrap();
        let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let n = c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        n.broadcast_mul(&self.g).unwrap().broadcast_add(&self.b).unwrap()
    }
}

/// `[batch, q, k]` of 0 where allowed and -inf elsewhere.
fn bias(allowed: impl Fn(usize, usize, usize) -> bool, b: usize, q: usize, k: usize, dev: &Device) -> Tensor {
    let data: Vec<f32> =
        (0..b * q * k).map(|i| if allowed(i / (q * k), (i / k) % q, i % k) { 0. } else { f32::NEG_INFINITY }).collect();
    Tensor::from_vec(data, (b, q, k), dev).unwrap()
}

#[test]
fn decoder_layer_matches_the_sub_layers_written_out() {
    let dev = Device::Cpu;
    let (b, s, m) = (2, 5, 6);
    let memory_len = [6usize, 3];
    for residual in [Residual::PostNorm, Residual::PreNorm] {
        let (sa, ca) = (Attn::new(&dev), Attn::new(&dev));
        let (up, down) = (Proj::new(16, H, &dev), Proj::new(H, 16, &dev));
        let (n1, n2, n3) = (Ln::new(&dev), Ln::new(&dev), Ln::new(&dev));
        let ffn = FeedForward::new(up.linear(), down.linear(), Activation::Relu);
        let layer = TransformerLayer::new(sa.module(), n1.norm(), ffn, n3.norm(), residual)
            .with_cross_attention(ca.module(), n2.norm())
            .unwrap();
        let stack = Stack::new(vec![layer], None);
        let x = rand(&[b, s, H], 1., &dev);
        let memory = rand(&[b, m, H], 1., &dev);
        let keep: Vec<u32> = (0..b * m).map(|i| u32::from(i % m < memory_len[i / m])).collect();
        let keep = Tensor::from_vec(keep, (b, m), &dev).unwrap();
        let mem = stack.encoder_memory(&memory, Some(&keep)).unwrap();
        let (y, _) = stack.forward_decoder(&x, &AttentionMask::causal(), None, None, &mem).unwrap();

        let causal = bias(|_, q, k| k <= q, b, s, s, &dev);
        let padded = bias(|row, _, k| k < memory_len[row], b, s, m, &dev);
        let ff = |h: &Tensor| down.apply(&up.apply(h).relu().unwrap());
        let expected = match residual {
            Residual::PostNorm => {
                let h = n1.apply(&(&x + sa.apply(&x, &x, &causal)).unwrap());
                let h = n2.apply(&(&h + ca.apply(&h, &memory, &padded)).unwrap());
                n3.apply(&(&h + ff(&h)).unwrap())
            }
            _ => {
                let a = n1.apply(&x);
                let h = (&x + sa.apply(&a, &a, &causal)).unwrap();
                let h = (&h + ca.apply(&n2.apply(&h), &memory, &padded)).unwrap();
                (&h + ff(&n3.apply(&h))).unwrap()
            }
        };
        let d = (y - expected).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{residual:?}: differs by {d}");

        // Token by token with a cache: the memory's keys and values were projected once.
        let mut caches = stack.new_caches(s);
        let full = stack.forward_decoder(&x, &AttentionMask::causal(), None, None, &mem).unwrap().0;
        for t in 0..s {
            let step = x.narrow(1, t, 1).unwrap();
            let (y, _) = stack.forward_decoder(&step, &AttentionMask::causal(), None, Some(&mut caches), &mem).unwrap();
            let d = (y - full.narrow(1, t, 1).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-5, "{residual:?}: cached step {t}");
        }
    }
}

#[test]
fn memory_is_required_exactly_by_cross_attending_layers() {
    let dev = Device::Cpu;
    let (sa, ca) = (Attn::new(&dev), Attn::new(&dev));
    let ffn = || FeedForward::new(Proj::new(16, H, &dev).linear(), Proj::new(H, 16, &dev).linear(), Activation::Relu);
    let layer =
        TransformerLayer::new(sa.module(), Ln::new(&dev).norm(), ffn(), Ln::new(&dev).norm(), Residual::PreNorm);
    let parallel =
        TransformerLayer::new(sa.module(), Ln::new(&dev).norm(), ffn(), Ln::new(&dev).norm(), Residual::Parallel);
    assert!(parallel.with_cross_attention(ca.module(), Ln::new(&dev).norm()).is_err());
    let x = rand(&[1, 2, H], 1., &dev);
    let cross = layer.clone().with_cross_attention(ca.module(), Ln::new(&dev).norm()).unwrap();
    let err = cross.forward(&x, &AttentionMask::causal(), None, None).unwrap_err().to_string();
    assert!(err.contains("encoder memory is missing"), "{err}");
    let stack = Stack::new(vec![cross], None);
    let mem = stack.encoder_memory(&rand(&[1, 3, H], 1., &dev), None).unwrap();
    let plain = Stack::new(vec![layer], None);
    assert!(plain.forward_decoder(&x, &AttentionMask::causal(), None, None, &mem).is_err());
    assert_eq!(mem.len(), 3);
    let two = mem.select_rows(&Tensor::new(&[0u32, 0], &dev).unwrap()).unwrap();
    assert_eq!(two.rows(), 2);
}
