//! CTRL (Keskar et al. 2019, "CTRL: A Conditional Transformer Language Model for Controllable
//! Generation"): a pre-LN decoder with fixed sinusoidal positions (sines then cosines) added to
//! word vectors scaled by `√d_model`, ReLU feed-forward, and a tied head with a bias. Control
//! codes are ordinary prefix tokens. Hugging Face `model_type` `ctrl`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// The ε of the layers' LayerNorms (fixed in the reference implementation).
const LAYER_EPS: f64 = 1e-6;

/// The fields of the `config.json` that shape the network.
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

/// CTRL's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "w",
    layer: "h.{i}",
    qkv: QkvNames::Separate {
        q: "multi_head_attention.Wq",
        k: "multi_head_attention.Wk",
        v: "multi_head_attention.Wv",
    },
    attention_out: "multi_head_attention.dense",
    attention_norm: "layernorm1",
    ffn_up: "ffn.0",
    ffn_down: "ffn.2",
    ffn_norm: "layernorm2",
    final_norm: "layernorm",
    ..WeightNames::EMPTY
};

/// The spec of a CTRL `config.json`: sinusoidal positions (sines then cosines), word
/// vectors scaled by `√d`, ReLU, and an LM head with a bias.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: CtrlConfig = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    // The reference's layers use ε = 1e-6 whatever the config says; only the final norm
    // reads `layer_norm_epsilon`. One ε per tower: refuse a config where they differ.
    if cfg.layer_norm_epsilon != LAYER_EPS {
        return Err(config.error(format!(
            "`layer_norm_epsilon` {} differs from the layers' fixed ε {LAYER_EPS}; not supported",
            cfg.layer_norm_epsilon
        )));
    }
    let h = cfg.n_embd;
    let mut tower = TowerSpec::decoder(cfg.vocab_size, h, cfg.n_layer, cfg.n_head, cfg.n_positions)
        .with_positions(PositionSpec::Sinusoidal { layout: SinusoidalLayoutSpec::HalfSplit })
        .with_norm(NormSpec::LayerNorm { eps: LAYER_EPS, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(cfg.dff, ActivationKind::Relu));
    tower.embeddings.scale = EmbeddingScale::SqrtHidden;
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: true }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}
