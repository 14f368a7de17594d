//! Swapping tcat's attention into a model defined outside tcat.
//!
//! `TinyLm` below is an ordinary candle model (embedding, pre-norm blocks of causal multi-head
//! self-attention and an MLP, LM head), with its own attention written the usual candle way.
//! Its blocks hold the attention as a `Box<dyn Module>`, so tcat's `MultiHeadAttention` (a
//! candle `Module`) drops in, loaded from the same `VarBuilder` names; the example checks that
//! the logits agree, then gives every layer a sliding window to show that tcat's other
//! settings are one line away. `--device cuda:0` (or `TCAT_DEVICE`) runs it on a GPU build.

use anyhow::Result;
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder, VarMap};
use tcat::attention::{AttentionConfig, Causality, MultiHeadAttention};

const VOCAB: usize = 50;
const HIDDEN: usize = 32;
const HEADS: usize = 4;
const LAYERS: usize = 2;

/// The model's own causal self-attention: q/k/v/o projections, softmax(QKᵀ/√d + mask) V.
struct CandleAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

impl CandleAttention {
    fn new(vb: VarBuilder) -> Result<Self> {
        let lin = |name| candle_nn::linear_no_bias(HIDDEN, HIDDEN, vb.pp(name));
        Ok(Self { q: lin("q_proj")?, k: lin("k_proj")?, v: lin("v_proj")?, o: lin("o_proj")? })
    }
}

impl Module for CandleAttention {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let d = HIDDEN / HEADS;
        let heads = |t: Tensor| t.reshape((b, s, HEADS, d))?.transpose(1, 2)?.contiguous();
        let (q, k, v) = (heads(self.q.forward(x)?)?, heads(self.k.forward(x)?)?, heads(self.v.forward(x)?)?);
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
        let mask: Vec<f32> = (0..s * s).map(|i| if i % s > i / s { f32::NEG_INFINITY } else { 0. }).collect();
        let scores = scores.broadcast_add(&Tensor::from_vec(mask, (s, s), x.device())?)?;
        let y = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
        self.o.forward(&y.transpose(1, 2)?.reshape((b, s, HIDDEN))?)
    }
}

/// One pre-norm block; the attention is any candle `Module`.
struct Block {
    norm1: RmsNorm,
    attention: Box<dyn Module>,
    norm2: RmsNorm,
    mlp: (Linear, Linear),
}

struct TinyLm {
    embed: Embedding,
    blocks: Vec<Block>,
    head: Linear,
}

impl TinyLm {
    /// The model with attention built by `attention(vb_of_layer)`.
    fn new(vb: VarBuilder, attention: &dyn Fn(VarBuilder) -> Result<Box<dyn Module>>) -> Result<Self> {
        let blocks = (0..LAYERS)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(Block {
                    norm1: candle_nn::rms_norm(HIDDEN, 1e-6, vb.pp("norm1"))?,
                    attention: attention(vb.pp("attn"))?,
                    norm2: candle_nn::rms_norm(HIDDEN, 1e-6, vb.pp("norm2"))?,
                    mlp: (
                        candle_nn::linear(HIDDEN, 4 * HIDDEN, vb.pp("fc1"))?,
                        candle_nn::linear(4 * HIDDEN, HIDDEN, vb.pp("fc2"))?,
                    ),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embed: candle_nn::embedding(VOCAB, HIDDEN, vb.pp("embed"))?,
            blocks,
            head: candle_nn::linear_no_bias(HIDDEN, VOCAB, vb.pp("head"))?,
        })
    }

    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut x = self.embed.forward(ids)?;
        for b in &self.blocks {
            x = (&x + b.attention.forward(&b.norm1.forward(&x)?)?)?;
            x = (&x + b.mlp.1.forward(&b.mlp.0.forward(&b.norm2.forward(&x)?)?.gelu()?)?)?;
        }
        Ok(self.head.forward(&x)?)
    }
}

fn main() -> Result<()> {
    let device: Device = tcat::core::take_device_arg(&mut std::env::args().skip(1).collect())?;
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &device);
    let original = TinyLm::new(vb.clone(), &|vb| Ok(Box::new(CandleAttention::new(vb)?)))?;
    vars.all_vars().iter().try_for_each(|v| v.set(&Tensor::randn(0f32, 0.3, v.shape(), &device)?))?;

    // The same weights (q_proj, k_proj, v_proj, o_proj under each layer's `attn`), tcat's attention.
    let config = AttentionConfig::new(HIDDEN, HEADS).with_causality(Causality::Causal);
    let swapped = TinyLm::new(vb.clone(), &|vb| Ok(Box::new(MultiHeadAttention::load(vb, &config)?)))?;

    let ids = Tensor::new(&[[3u32, 14, 15, 9, 26, 5, 35, 8]], &device)?;
    let diff = (original.forward(&ids)? - swapped.forward(&ids)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!("tcat's attention inside TinyLm: logits differ from the model's own attention by {diff:.2e}");
    anyhow::ensure!(diff < 1e-4, "the swapped attention computes something else ({diff})");

    // Other settings are one line away: a sliding window of 4 keys per query, no new weights.
    let local = config.clone().with_sliding_window(4);
    let windowed = TinyLm::new(vb, &|vb| Ok(Box::new(MultiHeadAttention::load(vb, &local)?)))?;
    let logits = windowed.forward(&ids)?;
    println!("with a sliding window of 4: logits {:?}", logits.dims());
    Ok(())
}
