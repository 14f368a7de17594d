//! ALBERT (Lan et al. 2019, "ALBERT: A Lite BERT for Self-supervised Learning of Language
//! Representations"): BERT with factorised embeddings (a `V × E` table whose normalised sum is
//! projected to the hidden width H, §3.1) and cross-layer parameter sharing (all layers reuse
//! the weights of `num_hidden_groups` groups, one by default, §3.1), `gelu_new`, a tanh pooler,
//! the masked-LM head (H → E → V) and the sentence-order prediction head (§3.2). Hugging Face
//! `model_type` `albert`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{MlmNames, QkvNames, WeightNames};

/// The fields of an ALBERT `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct AlbertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width E of the embedding tables.
    #[serde(default = "default_embedding_size")]
    pub embedding_size: usize,
    /// Width H of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Weight sets the layers share in turn.
    #[serde(default = "one")]
    pub num_hidden_groups: usize,
    /// Layers inside one group (only 1 is built).
    #[serde(default = "one")]
    pub inner_group_num: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Rows of the position table.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Rows of the segment table.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Only `absolute` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_embedding_size() -> usize {
    128
}
fn one() -> usize {
    1
}
fn default_act() -> String {
    "gelu_new".into()
}
fn default_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

/// ALBERT's names: the base model under `albert.` (or bare), one layer per group under
/// `encoder.albert_layer_groups.{i}.albert_layers.0`, the `predictions` masked-LM head and
/// the `sop_classifier`.
pub const NAMES: WeightNames = WeightNames {
    base: &["albert", ""],
    word: "embeddings.word_embeddings",
    positions: "embeddings.position_embeddings",
    token_types: "embeddings.token_type_embeddings",
    embedding_norm: "embeddings.LayerNorm",
    project_in: "encoder.embedding_hidden_mapping_in",
    layer: "encoder.albert_layer_groups.{i}.albert_layers.0",
    qkv: QkvNames::Separate { q: "attention.query", k: "attention.key", v: "attention.value" },
    attention_out: "attention.dense",
    attention_norm: "attention.LayerNorm",
    ffn_up: "ffn",
    ffn_down: "ffn_output",
    ffn_norm: "full_layer_layer_norm",
    pooler: "pooler",
    mlm: Some(MlmNames {
        transform: "predictions.dense",
        norm: "predictions.LayerNorm",
        decoder: "predictions.decoder",
        bias: &["predictions.bias", "predictions.decoder.bias"],
    }),
    sentence_order: "sop_classifier.classifier",
    ..WeightNames::EMPTY
};

/// The spec of an ALBERT `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: AlbertConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("embedding_size", cfg.embedding_size)?;
    config.require_positive("intermediate_size", cfg.intermediate_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    config.require_positive("num_hidden_layers", cfg.num_hidden_layers)?;
    if cfg.num_hidden_groups == 0 || cfg.num_hidden_groups > cfg.num_hidden_layers {
        return Err(config.error(format!(
            "`num_hidden_groups` ({}) must be between 1 and `num_hidden_layers` ({})",
            cfg.num_hidden_groups, cfg.num_hidden_layers
        )));
    }
    if cfg.inner_group_num != 1 {
        return Err(config.error(format!(
            "`inner_group_num` = {} is not supported yet (only 1 layer per group)",
            cfg.inner_group_num
        )));
    }
    if cfg.position_embedding_type != "absolute" {
        return Err(config.error(format!(
            "position_embedding_type `{}` is not supported yet (only `absolute`)",
            cfg.position_embedding_type
        )));
    }
    let mut tower = TowerSpec::encoder(
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.max_position_embeddings,
    )
    .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } })
    .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_eps, bias: true })
    .with_feed_forward(FeedForwardSpec::plain(
        cfg.intermediate_size,
        config.activation("hidden_act", &cfg.hidden_act)?,
    ));
    tower.embeddings.token_types = cfg.type_vocab_size;
    // ALBERT always projects, even when E = H (`embedding_hidden_mapping_in` exists).
    tower.embeddings.projection = EmbeddingProjection::Summed { width: cfg.embedding_size };
    tower.sharing = LayerSharing::Groups { groups: cfg.num_hidden_groups };
    let tokens = SpecialTokens { eos: vec![], pad: cfg.pad_token_id.unwrap_or(0), decoder_start: None };
    Ok(ArchSpec::encoder(tower, vec![HeadSpec::Pooler, HeadSpec::Mlm, HeadSpec::SentenceOrder]).with_tokens(tokens))
}
