//! CTRL (Keskar et al. 2019, "CTRL: A Conditional Transformer Language Model for Controllable
//! Generation"): a pre-LN decoder with fixed sinusoidal positions (sines then cosines) added to
//! word vectors scaled by `√d_model`, ReLU feed-forward, and a tied head with a bias. Control
//! codes are ordinary prefix tokens. Hugging Face `model_type` `ctrl`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, LmHead, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::{AbsolutePositions, SinusoidalLayout, sinusoidal_table};

use crate::config::TokenIds;
use crate::decoder::special_ids;
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// CTRL's per-layer LayerNorm ε (fixed in the reference implementation).
const LAYER_EPS: f64 = 1e-6;

/// The fields of a CTRL `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct CtrlConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence.
    pub n_positions: usize,
    /// Width of the hidden states.
    pub n_embd: usize,
    /// Width of the feed-forward layer.
    pub dff: usize,
    /// Number of layers.
    pub n_layer: usize,
    /// Attention heads per layer.
    pub n_head: usize,
    /// ε of the final LayerNorm.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-6
}

/// Loads a CTRL language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: CtrlConfig = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["transformer", ""], "w.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.n_embd;
        let word = vb.get((cfg.vocab_size, h), "w.weight")?;
        let table = sinusoidal_table(cfg.n_positions, h, SinusoidalLayout::HalfSplit, word.dtype(), word.device())?;
        let layers =
            (0..cfg.n_layer).map(|i| layer(vb.pp(format!("h.{i}")), &cfg)).collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = Norm::load_layer_norm(vb.pp("layernorm"), h, cfg.layer_norm_epsilon)?;
        let weight = if root.contains_tensor("lm_head.weight") {
            root.get((cfg.vocab_size, h), "lm_head.weight")?
        } else {
            word.clone()
        };
        let bias =
            if root.contains_tensor("lm_head.bias") { Some(root.get(cfg.vocab_size, "lm_head.bias")?) } else { None };
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
        let embeddings = Embeddings::new(word, Some(AbsolutePositions::new(table, 0)), None, None)
            .with_word_scale((h as f64).sqrt());
        Ok(DecoderModel::new(
            embeddings,
            Stack::new(layers, Some(final_norm)),
            LmHead::new(Linear::new(weight, bias)),
            cfg.n_positions,
            eos,
            pad,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(vb: VarBuilder, cfg: &CtrlConfig) -> candle_core::Result<TransformerLayer> {
    let h = cfg.n_embd;
    let lin = |name: &str, i, o| Linear::load(vb.pp(name), i, o, true, WeightLayout::OutIn);
    let qkv = QkvProjection::stacked(
        lin("multi_head_attention.Wq", h, h)?,
        lin("multi_head_attention.Wk", h, h)?,
        lin("multi_head_attention.Wv", h, h)?,
    );
    let attention =
        MultiHeadAttention::new(qkv, lin("multi_head_attention.dense", h, h)?, cfg.n_head, cfg.n_head, h / cfg.n_head)?;
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("layernorm1"), h, LAYER_EPS)?,
        FeedForward::new(lin("ffn.0", h, cfg.dff)?, lin("ffn.2", cfg.dff, h)?, Activation::Relu),
        Norm::load_layer_norm(vb.pp("layernorm2"), h, LAYER_EPS)?,
        Residual::PreNorm,
    ))
}
