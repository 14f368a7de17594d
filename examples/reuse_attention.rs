//! Dropping tcat's attention into your own candle module: a tiny causal self-attention block
//! with grouped-query heads, decoded token by token with a KV cache.

use anyhow::Result;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use tcat::attention::{AttentionMask, KvCache, MultiHeadAttention, QkvProjection};
use tcat::core::{Linear, WeightLayout};

/// Your module: a norm and tcat's attention, with weights from your own VarBuilder.
struct MyBlock {
    norm: candle_nn::RmsNorm,
    attention: MultiHeadAttention,
}

impl MyBlock {
    fn new(vb: VarBuilder, hidden: usize, heads: usize, kv_heads: usize) -> Result<Self> {
        let head_dim = hidden / heads;
        let lin = |name: &str, out| Linear::load(vb.pp(name), hidden, out, false, WeightLayout::OutIn);
        let qkv = QkvProjection::Separate {
            q: lin("q_proj", heads * head_dim)?,
            k: lin("k_proj", kv_heads * head_dim)?,
            v: lin("v_proj", kv_heads * head_dim)?,
        };
        let attention = MultiHeadAttention::new(qkv, lin("o_proj", hidden)?, heads, kv_heads, head_dim)?;
        Ok(Self { norm: candle_nn::rms_norm(hidden, 1e-6, vb.pp("norm"))?, attention })
    }

    fn forward(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let h = self.attention.forward(&self.norm.forward(x)?, &AttentionMask::causal(), None, Some(cache))?;
        Ok((x + h)?)
    }
}

fn main() -> Result<()> {
    let device = Device::Cpu;
    let vars = VarMap::new();
    let block = MyBlock::new(VarBuilder::from_varmap(&vars, DType::F32, &device), 64, 8, 2)?;
    for var in vars.all_vars() {
        var.set(&Tensor::randn(0f32, 0.2, var.shape(), &device)?)?; // VarMap starts at zero
    }
    let x = Tensor::randn(0f32, 1.0, (1, 10, 64), &device)?;

    let full = block.forward(&x, &mut KvCache::new(10))?;
    let mut cache = KvCache::new(10);
    let steps = (0..10).map(|t| block.forward(&x.narrow(1, t, 1)?, &mut cache)).collect::<Result<Vec<_>>>()?;
    let diff = (full - Tensor::cat(&steps, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!("token-by-token decoding matches the full pass: max diff {diff:.2e}");
    Ok(())
}
