//! BERT (Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers"):
//! post-norm encoder, GELU, learned absolute positions, segment embeddings, tanh pooler and
//! masked-LM head. Also RoBERTa's and XLM-RoBERTa's layout, which differ only in names and the
//! position rule (see [`crate::roberta`]). Hugging Face `model_type` `bert`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{MlmNames, QkvNames, WeightNames};

/// The fields of a BERT-family `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Rows of the position table.
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

fn default_act() -> String {
    "gelu".into()
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

/// BERT's names: `bert.` (or bare) base model, `cls.predictions` head.
pub const NAMES: WeightNames = WeightNames {
    base: &["bert", ""],
    word: "embeddings.word_embeddings",
    positions: "embeddings.position_embeddings",
    token_types: "embeddings.token_type_embeddings",
    embedding_norm: "embeddings.LayerNorm",
    layer: "encoder.layer.{i}",
    qkv: QkvNames::Separate { q: "attention.self.query", k: "attention.self.key", v: "attention.self.value" },
    attention_out: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn_up: "intermediate.dense",
    ffn_down: "output.dense",
    ffn_norm: "output.LayerNorm",
    pooler: "pooler.dense",
    mlm: Some(MlmNames {
        transform: "cls.predictions.transform.dense",
        norm: "cls.predictions.transform.LayerNorm",
        decoder: "cls.predictions.decoder",
        bias: &["cls.predictions.bias", "cls.predictions.decoder.bias"],
    }),
    ..WeightNames::EMPTY
};

/// The spec of a BERT-layout `config.json` (also RoBERTa's, with `ids` numbering positions
/// from the padding index).
pub(crate) fn spec_with(config: &ConfigFile, ids: impl Fn(&BertConfig) -> PositionIdRule) -> Result<ArchSpec> {
    let cfg: BertConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("intermediate_size", cfg.intermediate_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    if cfg.position_embedding_type != "absolute" {
        return Err(config.error(format!(
            "position_embedding_type `{}` is not supported yet (only `absolute`)",
            cfg.position_embedding_type
        )));
    }
    config.refuse("is_decoder", "BERT-layout models run as bidirectional encoders only")?;
    config.refuse("add_cross_attention", "BERT-layout models with cross-attention layers are not built")?;
    let mut tower = TowerSpec::encoder(
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.max_position_embeddings,
    )
    .with_positions(PositionSpec::Learned { ids: ids(&cfg) })
    .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_eps, bias: true })
    .with_feed_forward(FeedForwardSpec::plain(
        cfg.intermediate_size,
        config.activation("hidden_act", &cfg.hidden_act)?,
    ));
    tower.embeddings.token_types = cfg.type_vocab_size;
    let tokens = SpecialTokens { eos: vec![], pad: cfg.pad_token_id.unwrap_or(0), decoder_start: None };
    Ok(ArchSpec::encoder(tower, vec![HeadSpec::Pooler, HeadSpec::Mlm]).with_tokens(tokens))
}

/// The spec of a BERT `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    spec_with(config, |_| PositionIdRule::Sequential { offset: 0 })
}
