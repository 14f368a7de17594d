//! GPT (Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training"):
//! the first decoder-only Transformer LM — post-LN layers, learned positions, `Conv1D` weights,
//! no final norm, tied head. Its `afn = "gelu"` is the tanh approximation. Hugging Face
//! `model_type` `openai-gpt`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// The fields of the `config.json` that shape the network.
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

/// OpenAI GPT's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "tokens_embed",
    positions: "positions_embed",
    layer: "h.{i}",
    qkv: QkvNames::Fused("attn.c_attn"),
    attention_out: "attn.c_proj",
    attention_norm: "ln_1",
    ffn_up: "mlp.c_fc",
    ffn_down: "mlp.c_proj",
    ffn_norm: "ln_2",
    layout: tcat_core::WeightLayout::InOut,
    ..WeightNames::EMPTY
};

/// The spec of an OpenAI GPT `config.json`: post-LN, learned positions, no final norm.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: OpenAiGptConfig = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    // modeling_openai's ACT_FNS maps `gelu` to the tanh approximation.
    let activation = match cfg.afn.as_str() {
        "gelu" => ActivationKind::GeluTanh,
        other => config.activation("afn", other)?,
    };
    let h = cfg.n_embd;
    let mut tower = TowerSpec::decoder(cfg.vocab_size, h, cfg.n_layer, cfg.n_head, cfg.n_positions)
        .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_epsilon, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(h.saturating_mul(4), activation))
        .with_residual(ResidualSpec::Post);
    tower.final_norm = false;
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}
