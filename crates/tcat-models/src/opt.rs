//! OPT (Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language Models"): a decoder
//! with learned positions offset by 2, ReLU, pre-LN (`do_layer_norm_before`, all released sizes
//! but 350m) or post-LN, and token vectors narrower than the hidden states with linear
//! projections in and out (350m's `word_embed_proj_dim`). Hugging Face `model_type` `opt`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::AbsolutePositions;

use crate::config::TokenIds;
use crate::decoder::{lm_head_or_tied, special_ids};
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// OPT's position table starts two rows in (a fairseq legacy).
const POSITION_OFFSET: usize = 2;
/// OPT's LayerNorm ε (fixed in the reference implementation).
const EPS: f64 = 1e-5;

/// The fields of an OPT `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct OptConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the feed-forward layer.
    pub ffn_dim: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Pre-LN (true) or post-LN.
    #[serde(default = "yes")]
    pub do_layer_norm_before: bool,
    /// Width of the token embeddings (`hidden_size` when absent); when it differs,
    /// `project_in` / `project_out` map between the two widths (OPT-350m).
    #[serde(default)]
    pub word_embed_proj_dim: Option<usize>,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// Whether projections have biases.
    #[serde(default = "yes")]
    pub enable_bias: bool,
    /// Drops the final LayerNorm of pre-LN models (OPT-350m conversion detail).
    #[serde(default)]
    pub _remove_final_layer_norm: bool,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn yes() -> bool {
    true
}
fn default_act() -> String {
    "relu".into()
}

/// Loads an OPT language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: OptConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let word_dim = cfg.word_embed_proj_dim.unwrap_or(cfg.hidden_size);
    config.require_positive("word_embed_proj_dim", word_dim)?;
    let act =
        cfg.activation_function.parse::<Activation>().map_err(|e| config.error(format!("activation_function: {e}")))?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["model.decoder", "decoder", ""], "embed_tokens.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.hidden_size;
        let word = vb.get((cfg.vocab_size, word_dim), "embed_tokens.weight")?;
        let rows = cfg.max_position_embeddings + POSITION_OFFSET;
        let positions = AbsolutePositions::load(vb.pp("embed_positions"), rows, h, POSITION_OFFSET)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| layer(vb.pp(format!("layers.{i}")), &cfg, act))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = if cfg.do_layer_norm_before && !cfg._remove_final_layer_norm {
            Some(Norm::load_layer_norm(vb.pp("final_layer_norm"), h, EPS)?)
        } else {
            None
        };
        let head = lm_head_or_tied(&root, &word)?;
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 1);
        let stack = Stack::new(layers, final_norm);
        let max = cfg.max_position_embeddings;
        if word_dim == h {
            let embeddings = Embeddings::new(word, Some(positions), None, None);
            return Ok(DecoderModel::new(embeddings, stack, head, max, eos, pad));
        }
        // OPT-350m: 512-wide token vectors, projected in after the lookup (before the 1024-wide
        // positions are added) and out after the final norm (before the tied head); no biases.
        let project = |name: &str, i, o| Linear::load(vb.pp(name), i, o, false, WeightLayout::OutIn);
        let (project_in, project_out) = (project("project_in", word_dim, h)?, project("project_out", h, word_dim)?);
        let embeddings = Embeddings::new(word, None, None, None);
        Ok(DecoderModel::new(embeddings, stack, head, max, eos, pad).with_width_projection(
            project_in,
            Some(positions),
            project_out,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(vb: VarBuilder, cfg: &OptConfig, act: Activation) -> candle_core::Result<TransformerLayer> {
    let h = cfg.hidden_size;
    let heads = cfg.num_attention_heads;
    let lin = |name: &str, i, o| Linear::load(vb.pp(name), i, o, cfg.enable_bias, WeightLayout::OutIn);
    let qkv = QkvProjection::Separate {
        q: lin("self_attn.q_proj", h, h)?,
        k: lin("self_attn.k_proj", h, h)?,
        v: lin("self_attn.v_proj", h, h)?,
    };
    let attention = MultiHeadAttention::new(qkv, lin("self_attn.out_proj", h, h)?, heads, heads, h / heads)?;
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("self_attn_layer_norm"), h, EPS)?,
        FeedForward::new(lin("fc1", h, cfg.ffn_dim)?, lin("fc2", cfg.ffn_dim, h)?, act),
        Norm::load_layer_norm(vb.pp("final_layer_norm"), h, EPS)?,
        if cfg.do_layer_norm_before { Residual::PreNorm } else { Residual::PostNorm },
    ))
}
