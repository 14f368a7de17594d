//! LLaMA (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"):
//! pre-RMSNorm decoder, SwiGLU feed-forward, half-split rotary positions, no biases, and
//! grouped-query attention from LLaMA 2 on. Hugging Face `model_type` `llama` (also Alpaca,
//! Koala, SmolLM), and `mistral` (Jiang et al. 2023), which is the same network with a sliding
//! attention window.

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

/// The fields of a LLaMA `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the gated feed-forward layer.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention); all heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head (`hidden_size / num_attention_heads` when absent).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Gate activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence (rotary table size).
    pub max_position_embeddings: usize,
    /// RMSNorm ε.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Whether q/k/v/o projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the feed-forward projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Whether the LM head shares the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Keys each query sees (Mistral); all when absent.
    #[serde(default)]
    pub sliding_window: Option<usize>,
}

fn default_act() -> String {
    "silu".into()
}
fn default_eps() -> f64 {
    1e-6
}

/// Loads a LLaMA-architecture language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: LlamaConfig = config.parse()?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let heads = cfg.num_attention_heads;
    let kv_heads = cfg.num_key_value_heads.unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(config.error(format!(
            "`num_attention_heads` ({heads}) must be a multiple of `num_key_value_heads` ({kv_heads})"
        )));
    }
    let head_dim = match cfg.head_dim {
        Some(d) => d,
        None => {
            config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", heads)?;
            cfg.hidden_size / heads
        }
    };
    let act = cfg.hidden_act.parse::<Activation>().map_err(|e| config.error(format!("hidden_act: {e}")))?;
    let rotary_cfg = rotary_config(config, head_dim, 1.0, RotaryLayout::HalfSplit)?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["model", ""], "embed_tokens.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.hidden_size;
        let word = vb.get((cfg.vocab_size, h), "embed_tokens.weight")?;
        let rotary = RotaryEmbedding::new(rotary_cfg, cfg.max_position_embeddings, word.dtype(), word.device())?;
        let shape = LayerShape { hidden: h, heads, kv_heads, head_dim, act };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| layer(vb.pp(format!("layers.{i}")), &cfg, &shape, &rotary))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = Norm::load_rms_norm(vb.pp("norm"), h, cfg.rms_norm_eps)?;
        let head = if !cfg.tie_word_embeddings || root.contains_tensor("lm_head.weight") {
            LmHead::new(Linear::load(root.pp("lm_head"), h, cfg.vocab_size, false, WeightLayout::OutIn)?)
        } else {
            LmHead::tied(&word)
        };
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
        let embeddings = Embeddings::new(word, None, None, None);
        Ok(DecoderModel::new(
            embeddings,
            Stack::new(layers, Some(final_norm)),
            head,
            cfg.max_position_embeddings,
            eos,
            pad,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

struct LayerShape {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    act: Activation,
}

fn layer(
    vb: VarBuilder,
    cfg: &LlamaConfig,
    shape: &LayerShape,
    rotary: &RotaryEmbedding,
) -> candle_core::Result<TransformerLayer> {
    let LayerShape { hidden: h, heads, kv_heads, head_dim, act } = *shape;
    let attn =
        |name: &str, i, o| Linear::load(vb.pp("self_attn").pp(name), i, o, cfg.attention_bias, WeightLayout::OutIn);
    let mlp = |name: &str, i, o| Linear::load(vb.pp("mlp").pp(name), i, o, cfg.mlp_bias, WeightLayout::OutIn);
    let qkv = QkvProjection::stacked(
        attn("q_proj", h, heads * head_dim)?,
        attn("k_proj", h, kv_heads * head_dim)?,
        attn("v_proj", h, kv_heads * head_dim)?,
    );
    let mut attention = MultiHeadAttention::new(qkv, attn("o_proj", heads * head_dim, h)?, heads, kv_heads, head_dim)?
        .with_rotary(rotary.clone());
    if let Some(window) = cfg.sliding_window {
        attention = attention.with_sliding_window(window);
    }
    let inner = cfg.intermediate_size;
    let ffn =
        FeedForward::gated(mlp("gate_proj", h, inner)?, mlp("up_proj", h, inner)?, mlp("down_proj", inner, h)?, act);
    Ok(TransformerLayer::new(
        attention,
        Norm::load_rms_norm(vb.pp("input_layernorm"), h, cfg.rms_norm_eps)?,
        ffn,
        Norm::load_rms_norm(vb.pp("post_attention_layernorm"), h, cfg.rms_norm_eps)?,
        Residual::PreNorm,
    ))
}
