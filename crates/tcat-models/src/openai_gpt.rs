//! GPT (Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training"):
//! the first decoder-only Transformer LM — post-LN layers, learned positions, `Conv1D` weights,
//! no final norm, tied head. Its `afn = "gelu"` is the tanh approximation. Hugging Face
//! `model_type` `openai-gpt`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::AbsolutePositions;

use crate::config::TokenIds;
use crate::decoder::{lm_head_or_tied, special_ids};
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// The fields of an OpenAI GPT `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenAiGptConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence.
    pub n_positions: usize,
    /// Width of the hidden states.
    pub n_embd: usize,
    /// Number of layers.
    pub n_layer: usize,
    /// Attention heads per layer.
    pub n_head: usize,
    /// Activation name in GPT's own table (`gelu` there is the tanh approximation).
    #[serde(default = "default_act")]
    pub afn: String,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
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

/// Loads an OpenAI GPT language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: OpenAiGptConfig = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    let act = match cfg.afn.as_str() {
        "gelu" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        other => return Err(config.error(format!("afn `{other}`: expected gelu, relu, silu or swish"))),
    };
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["transformer", ""], "tokens_embed.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.n_embd;
        let word = vb.get((cfg.vocab_size, h), "tokens_embed.weight")?;
        let positions = AbsolutePositions::load(vb.pp("positions_embed"), cfg.n_positions, h, 0)?;
        let layers = (0..cfg.n_layer)
            .map(|i| layer(vb.pp(format!("h.{i}")), &cfg, act))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let head = lm_head_or_tied(&root, &word)?;
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
        Ok(DecoderModel::new(
            Embeddings::new(word, Some(positions), None, None),
            Stack::new(layers, None),
            head,
            cfg.n_positions,
            eos,
            pad,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(vb: VarBuilder, cfg: &OpenAiGptConfig, act: Activation) -> candle_core::Result<TransformerLayer> {
    let h = cfg.n_embd;
    let conv1d = |name: &str, i, o| Linear::load(vb.pp(name), i, o, true, WeightLayout::InOut);
    let attention = MultiHeadAttention::new(
        QkvProjection::Fused(conv1d("attn.c_attn", h, 3 * h)?),
        conv1d("attn.c_proj", h, h)?,
        cfg.n_head,
        cfg.n_head,
        h / cfg.n_head,
    )?;
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("ln_1"), h, cfg.layer_norm_epsilon)?,
        FeedForward::new(conv1d("mlp.c_fc", h, 4 * h)?, conv1d("mlp.c_proj", 4 * h, h)?, act),
        Norm::load_layer_norm(vb.pp("ln_2"), h, cfg.layer_norm_epsilon)?,
        Residual::PostNorm,
    ))
}
