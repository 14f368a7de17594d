//! DistilBERT (Sanh et al. 2019, "DistilBERT, a distilled version of BERT"): a 6-layer BERT
//! without token types or pooler, post-norm, GELU. Hugging Face `model_type` `distilbert`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{MlmNames, QkvNames, WeightNames};

const EPS: f64 = 1e-12;

/// The fields of a DistilBERT `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct DistilBertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub dim: usize,
    /// Number of layers.
    pub n_layers: usize,
    /// Attention heads per layer.
    pub n_heads: usize,
    /// Width of the feed-forward layer.
    pub hidden_dim: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub activation: String,
    /// Rows of the position table (sinusoidal tables are stored in the weights too).
    pub max_position_embeddings: usize,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}

/// DistilBERT's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["distilbert", ""],
    word: "embeddings.word_embeddings",
    positions: "embeddings.position_embeddings",
    embedding_norm: "embeddings.LayerNorm",
    layer: "transformer.layer.{i}",
    qkv: QkvNames::Separate { q: "attention.q_lin", k: "attention.k_lin", v: "attention.v_lin" },
    attention_out: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    ffn_up: "ffn.lin1",
    ffn_down: "ffn.lin2",
    ffn_norm: "output_layer_norm",
    mlm: Some(MlmNames {
        transform: "vocab_transform",
        norm: "vocab_layer_norm",
        decoder: "vocab_projector",
        bias: &["vocab_projector.bias"],
    }),
    ..WeightNames::EMPTY
};

/// The spec of a DistilBERT `config.json`: BERT without token types or pooler. Its
/// sinusoidal tables (`sinusoidal_pos_embds`) are stored in the weights, so they load as a
/// learned table.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: DistilBertConfig = config.parse()?;
    config.require_heads("dim", cfg.dim, "n_heads", cfg.n_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("hidden_dim", cfg.hidden_dim)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let mut tower = TowerSpec::encoder(cfg.vocab_size, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.max_position_embeddings)
        .with_norm(NormSpec::LayerNorm { eps: EPS, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(cfg.hidden_dim, config.activation("activation", &cfg.activation)?));
    tower.embeddings.token_types = 0;
    let tokens = SpecialTokens { eos: vec![], pad: cfg.pad_token_id.unwrap_or(0), decoder_start: None };
    Ok(ArchSpec::encoder(tower, vec![HeadSpec::Mlm]).with_tokens(tokens))
}
