//! OPT (Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language Models"): a decoder
//! with learned positions offset by 2, ReLU, pre-LN (`do_layer_norm_before`, all released sizes
//! but 350m) or post-LN, and token vectors narrower than the hidden states with linear
//! projections in and out (350m's `word_embed_proj_dim`). Hugging Face `model_type` `opt`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// Position ids start at 2 (the reference's offset for its padding rows).
const POSITION_OFFSET: usize = 2;
/// OPT's LayerNorm ε (fixed in the reference implementation).
const EPS: f64 = 1e-5;

/// The fields of the `config.json` that shape the network.
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

/// OPT's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["model.decoder", "decoder", ""],
    word: "embed_tokens",
    positions: "embed_positions",
    project_in: "project_in",
    project_out: "project_out",
    layer: "layers.{i}",
    qkv: QkvNames::Separate { q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj" },
    attention_out: "self_attn.out_proj",
    attention_norm: "self_attn_layer_norm",
    ffn_up: "fc1",
    ffn_down: "fc2",
    ffn_norm: "final_layer_norm",
    final_norm: "final_layer_norm",
    ..WeightNames::EMPTY
};

/// The spec of an OPT `config.json`: learned positions offset by 2, ReLU, pre-LN (or
/// post-LN), OPT-350m's narrower word vectors projected in and out.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: OptConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let affine = config.json.get("layer_norm_elementwise_affine").filter(|v| !v.is_null());
    if let Some(v) = affine.filter(|v| !v.is_boolean()) {
        return Err(config.error(format!("`layer_norm_elementwise_affine`: invalid type: {v}, expected a boolean")));
    }
    if affine.and_then(serde_json::Value::as_bool) == Some(false) {
        return Err(config
            .error("`layer_norm_elementwise_affine` false (LayerNorms without gain and bias) is not supported yet"));
    }
    let h = cfg.hidden_size;
    let mut tower = TowerSpec::decoder(
        cfg.vocab_size,
        h,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.max_position_embeddings,
    )
    .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: POSITION_OFFSET } })
    .with_norm(NormSpec::LayerNorm { eps: EPS, bias: true })
    .with_feed_forward(FeedForwardSpec {
        bias: cfg.enable_bias,
        ..FeedForwardSpec::plain(cfg.ffn_dim, config.activation("activation_function", &cfg.activation_function)?)
    })
    .with_residual(if cfg.do_layer_norm_before { ResidualSpec::Pre } else { ResidualSpec::Post });
    tower.final_norm = cfg.do_layer_norm_before && !cfg._remove_final_layer_norm;
    tower.attention.qkv_bias = cfg.enable_bias;
    tower.attention.out_bias = cfg.enable_bias;
    if let Some(width) = cfg.word_embed_proj_dim.filter(|w| *w != h) {
        tower.embeddings.projection = EmbeddingProjection::Words { width };
    }
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 1);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}
