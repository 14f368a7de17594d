//! GPT-NeoX (Black et al. 2022, "GPT-NeoX-20B"), also Pythia and Dolly-2: attention and
//! feed-forward in parallel from two LayerNorms (or in sequence when `use_parallel_residual` is
//! false), half-split rotary on a fraction of each head, fused QKV stored head by head.
//! Hugging Face `model_type` `gpt_neox`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// The fields of the `config.json` that shape the network.
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

/// GPT-NeoX's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["gpt_neox", ""],
    word: "embed_in",
    layer: "layers.{i}",
    qkv: QkvNames::FusedPerHead("attention.query_key_value"),
    attention_out: "attention.dense",
    attention_norm: "input_layernorm",
    ffn_up: "mlp.dense_h_to_4h",
    ffn_down: "mlp.dense_4h_to_h",
    ffn_norm: "post_attention_layernorm",
    final_norm: "final_layer_norm",
    lm_head: "embed_out",
    ..WeightNames::EMPTY
};

/// The spec of a GPT-NeoX `config.json`: parallel (or sequential) residual, half-split
/// rotary on `rotary_pct` of each head.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: GptNeoxConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let rotary = crate::rope_config::rotary_spec(config, 0.25, RotaryLayoutSpec::HalfSplit)?;
    let mut tower = TowerSpec::decoder(
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.max_position_embeddings,
    )
    .with_positions(PositionSpec::Rotary(rotary))
    .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_eps, bias: true })
    .with_feed_forward(FeedForwardSpec::plain(cfg.intermediate_size, config.activation("hidden_act", &cfg.hidden_act)?))
    .with_residual(if cfg.use_parallel_residual { ResidualSpec::Parallel } else { ResidualSpec::Pre });
    tower.attention.qkv_bias = cfg.attention_bias;
    tower.attention.out_bias = cfg.attention_bias;
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: cfg.tie_word_embeddings, bias: false })
        .with_tokens(SpecialTokens { eos, pad, decoder_start: None }))
}
