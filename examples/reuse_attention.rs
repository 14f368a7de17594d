//! Dropping tcat's attention into your own candle module: a causal self-attention block with
//! grouped-query heads, rotary positions and a sliding window, decoded token by token with a
//! sliding KV cache that never holds more than the window. `--device cuda:0` (or
//! `TCAT_DEVICE=cuda:0`) runs it on a GPU of a `--features cuda` build.

use anyhow::Result;
use candle_core::{DType, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use tcat::attention::{AttentionMask, KvCache, MultiHeadAttention, QkvProjection};
use tcat::core::{Linear, WeightLayout};
use tcat::position::{RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout};

/// Your module: a norm and tcat's attention, with weights from your own VarBuilder.
struct MyBlock {
    norm: candle_nn::RmsNorm,
    attention: MultiHeadAttention,
}

impl MyBlock {
    fn new(vb: VarBuilder, hidden: usize, heads: usize, kv_heads: usize, window: usize) -> Result<Self> {
        let head_dim = hidden / heads;
        let lin = |name: &str, out| Linear::load(vb.pp(name), hidden, out, false, WeightLayout::OutIn);
        let qkv = QkvProjection::Separate {
            q: lin("q_proj", heads * head_dim)?,
            k: lin("k_proj", kv_heads * head_dim)?,
            v: lin("v_proj", kv_heads * head_dim)?,
        };
        let rope = RotaryConfig {
            rotary_dim: head_dim,
            base: 1e4,
            layout: RotaryLayout::HalfSplit,
            scaling: RopeScaling::None,
        };
        let attention = MultiHeadAttention::new(qkv, lin("o_proj", hidden)?, heads, kv_heads, head_dim)?
            .with_rotary(RotaryEmbedding::new(rope, 4096, DType::F32, vb.device())?)
            .with_sliding_window(window);
        Ok(Self { norm: candle_nn::rms_norm(hidden, 1e-6, vb.pp("norm"))?, attention })
    }

    fn forward(&self, x: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        Ok((x + self.attention.forward(&self.norm.forward(x)?, &AttentionMask::causal(), None, cache)?)?)
    }
}

fn main() -> Result<()> {
    let (device, vars) = (tcat::core::take_device_arg(&mut std::env::args().skip(1).collect())?, VarMap::new());
    let block = MyBlock::new(VarBuilder::from_varmap(&vars, DType::F32, &device), 64, 8, 2, 4)?;
    for var in vars.all_vars() {
        var.set(&Tensor::randn(0f32, 0.2, var.shape(), &device)?)?; // VarMap starts at zero
    }
    let x = Tensor::randn(0f32, 1.0, (1, 12, 64), &device)?;
    let full = block.forward(&x, None)?;
    let mut cache = KvCache::sliding(4); // holds at most 3 past positions
    let steps = (0..12).map(|t| block.forward(&x.narrow(1, t, 1)?, Some(&mut cache))).collect::<Result<Vec<_>>>()?;
    let diff = (full - Tensor::cat(&steps, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!("decoding 12 tokens with a window of 4 matches the full pass: max diff {diff:.2e}");
    Ok(())
}
