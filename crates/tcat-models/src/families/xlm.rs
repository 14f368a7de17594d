//! XLM (Lample & Conneau 2019, "Cross-lingual Language Model Pretraining"): a post-norm BERT-like
//! encoder whose input adds a language embedding to every token (§3.3, Figure 1), learned (or
//! stored sinusoidal) positions, GELU, and a vocabulary projection tied to the token table as the
//! MLM / TLM head. The language of each token is an input (`--langs` in the CLI); without one no
//! language vector is added, as in the reference. Hugging Face `model_type` `xlm`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};

/// The fields of an XLM `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct XlmConfig {
    /// Vocabulary size.
    #[serde(alias = "n_words")]
    pub vocab_size: usize,
    /// Width of the hidden states (the feed-forward is 4× wider).
    pub emb_dim: usize,
    /// Number of layers.
    pub n_layers: usize,
    /// Attention heads per layer.
    pub n_heads: usize,
    /// Languages of the language table.
    #[serde(default = "one")]
    pub n_langs: usize,
    /// Whether the language table is used (with `n_langs` > 1).
    #[serde(default = "yes")]
    pub use_lang_emb: bool,
    /// Rows of the position table.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Exact GELU (true) or ReLU.
    #[serde(default = "yes")]
    pub gelu_activation: bool,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default = "default_pad")]
    pub pad_index: u32,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_positions() -> usize {
    512
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pad() -> u32 {
    2
}

/// XLM's names: the base model under `transformer.` (or bare) with per-layer module lists
/// (`attentions.{i}`, `layer_norm1.{i}`, `ffns.{i}`, `layer_norm2.{i}`), `lang_embeddings`,
/// and `pred_layer.proj` as the head.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "embeddings",
    positions: "position_embeddings",
    languages: "lang_embeddings",
    embedding_norm: "layer_norm_emb",
    layer: "",
    qkv: QkvNames::Separate { q: "attentions.{i}.q_lin", k: "attentions.{i}.k_lin", v: "attentions.{i}.v_lin" },
    attention_out: "attentions.{i}.out_lin",
    attention_norm: "layer_norm1.{i}",
    ffn_up: "ffns.{i}.lin1",
    ffn_down: "ffns.{i}.lin2",
    ffn_norm: "layer_norm2.{i}",
    lm_head: "pred_layer.proj",
    ..WeightNames::EMPTY
};

/// The spec of an XLM `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: XlmConfig = config.parse()?;
    config.require_heads("emb_dim", cfg.emb_dim, "n_heads", cfg.n_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    config.refuse("causal", "XLM's causal language models (CLM) are not built; only the bidirectional encoder")?;
    config.refuse("asm", "the adaptive softmax head (`asm`) is not built")?;
    let inner = cfg.emb_dim.checked_mul(4).ok_or_else(|| config.error("`emb_dim` × 4 overflows"))?;
    let activation = if cfg.gelu_activation { ActivationKind::Gelu } else { ActivationKind::Relu };
    let mut tower =
        TowerSpec::encoder(cfg.vocab_size, cfg.emb_dim, cfg.n_layers, cfg.n_heads, cfg.max_position_embeddings)
            .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } })
            .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_eps, bias: true })
            .with_feed_forward(FeedForwardSpec::plain(inner, activation));
    // XLM adds token type ids through the word table; tcat takes no token types for it.
    tower.embeddings.token_types = 0;
    if cfg.use_lang_emb && cfg.n_langs > 1 {
        tower.embeddings.languages = cfg.n_langs;
    }
    let tokens = SpecialTokens { eos: vec![], pad: cfg.pad_index, decoder_start: None };
    Ok(ArchSpec::encoder(tower, vec![HeadSpec::Lm { tied: true, bias: true }]).with_tokens(tokens))
}
