//! GPT-NeoX (Black et al. 2022, "GPT-NeoX-20B"), also Pythia and Dolly-2: attention and
//! feed-forward in parallel from two LayerNorms (or in sequence when `use_parallel_residual` is
//! false), half-split rotary on a fraction of each head, fused QKV stored head by head.
//! Hugging Face `model_type` `gpt_neox`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, LmHead, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::{RotaryEmbedding, RotaryLayout};

use crate::config::TokenIds;
use crate::decoder::special_ids;
use crate::rope_config::rotary_config;
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// The fields of a GPT-NeoX `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoxConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence (rotary table size).
    pub max_position_embeddings: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Attention and feed-forward in parallel (true) or in sequence.
    #[serde(default = "yes")]
    pub use_parallel_residual: bool,
    /// Whether the attention projections have biases.
    #[serde(default = "yes")]
    pub attention_bias: bool,
    /// Whether the LM head shares the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

/// Loads a GPT-NeoX language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: GptNeoxConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let act = cfg.hidden_act.parse::<Activation>().map_err(|e| config.error(format!("hidden_act: {e}")))?;
    let head_dim = cfg.hidden_size / cfg.num_attention_heads;
    let rotary_cfg = rotary_config(config, head_dim, 0.25, RotaryLayout::HalfSplit)?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["gpt_neox", ""], "embed_in.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.hidden_size;
        let word = vb.get((cfg.vocab_size, h), "embed_in.weight")?;
        let rotary = RotaryEmbedding::new(rotary_cfg, cfg.max_position_embeddings, word.dtype(), word.device())?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| layer(vb.pp(format!("layers.{i}")), &cfg, act, &rotary))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = Norm::load_layer_norm(vb.pp("final_layer_norm"), h, cfg.layer_norm_eps)?;
        let head = if cfg.tie_word_embeddings && !root.contains_tensor("embed_out.weight") {
            LmHead::tied(&word)
        } else {
            LmHead::new(Linear::load(root.pp("embed_out"), h, cfg.vocab_size, false, WeightLayout::OutIn)?)
        };
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
        Ok(DecoderModel::new(
            Embeddings::new(word, None, None, None),
            Stack::new(layers, Some(final_norm)),
            head,
            cfg.max_position_embeddings,
            eos,
            pad,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(
    vb: VarBuilder,
    cfg: &GptNeoxConfig,
    act: Activation,
    rotary: &RotaryEmbedding,
) -> candle_core::Result<TransformerLayer> {
    let h = cfg.hidden_size;
    let heads = cfg.num_attention_heads;
    let lin = |name: &str, i, o, bias| Linear::load(vb.pp(name), i, o, bias, WeightLayout::OutIn);
    let attention = MultiHeadAttention::new(
        QkvProjection::FusedPerHead(lin("attention.query_key_value", h, 3 * h, cfg.attention_bias)?),
        lin("attention.dense", h, h, cfg.attention_bias)?,
        heads,
        heads,
        h / heads,
    )?
    .with_rotary(rotary.clone());
    let inner = cfg.intermediate_size;
    let ffn =
        FeedForward::new(lin("mlp.dense_h_to_4h", h, inner, true)?, lin("mlp.dense_4h_to_h", inner, h, true)?, act);
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("input_layernorm"), h, cfg.layer_norm_eps)?,
        ffn,
        Norm::load_layer_norm(vb.pp("post_attention_layernorm"), h, cfg.layer_norm_eps)?,
        if cfg.use_parallel_residual { Residual::Parallel } else { Residual::PreNorm },
    ))
}
