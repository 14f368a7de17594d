//! tcat's attention in your own candle module: grouped-query heads, rotary positions and a
//! sliding window from a `VarBuilder`, decoded token by token with a sliding KV cache that never
//! holds more than the window. `--device cuda:0` (or `TCAT_DEVICE`) runs it on a GPU build.

use anyhow::Result;
use candle_core::{DType, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use tcat::attention::{AttentionConfig, AttentionMask, KvCache, MultiHeadAttention};

/// Your module: candle-nn's norm and tcat's attention, with weights from your VarBuilder.
struct MyBlock {
    norm: candle_nn::RmsNorm,
    attention: MultiHeadAttention,
}

impl MyBlock {
    fn new(vb: VarBuilder) -> Result<Self> {
        let config = AttentionConfig::new(64, 8).with_kv_heads(2).with_rotary(4096).with_sliding_window(4);
        let attention = MultiHeadAttention::load(vb.pp("self_attn"), &config)?; // q_proj, k_proj, v_proj, o_proj
        Ok(Self { norm: candle_nn::rms_norm(64, 1e-6, vb.pp("norm"))?, attention })
    }

    fn forward(&self, x: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        Ok((x + self.attention.forward(&self.norm.forward(x)?, &AttentionMask::causal(), None, cache)?)?)
    }
}

fn main() -> Result<()> {
    let (device, vars) = (tcat::core::take_device_arg(&mut std::env::args().skip(1).collect())?, VarMap::new());
    let block = MyBlock::new(VarBuilder::from_varmap(&vars, DType::F32, &device))?;
    vars.all_vars().iter().try_for_each(|v| v.set(&Tensor::randn(0f32, 0.2, v.shape(), &device)?))?;
    let x = Tensor::randn(0f32, 1.0, (1, 12, 64), &device)?;
    let full = block.forward(&x, None)?;
    let mut cache = block.attention.new_cache(12); // sliding: holds at most 3 past positions
    let steps = (0..12).map(|t| block.forward(&x.narrow(1, t, 1)?, Some(&mut cache))).collect::<Result<Vec<_>>>()?;
    let diff = (full - Tensor::cat(&steps, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!("decoding 12 tokens with a window of 4 matches the full pass: max diff {diff:.2e}");
    Ok(())
}
