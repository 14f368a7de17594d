//! ELECTRA (Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather
//! Than Generators"): BERT's encoder whose embeddings may be narrower than the hidden states
//! (`embedding_size` E ≠ H: the normalised sum is projected by `embeddings_project`), no
//! pooler, and the discriminator's replaced-token head (§2); a generator checkpoint
//! (`ElectraForMaskedLM`) carries a masked-LM head H → E → V instead. Hugging Face
//! `model_type` `electra`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{MlmNames, ReplacedTokenNames, WeightNames};

/// The fields of an ELECTRA `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct ElectraConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width E of the embedding tables.
    #[serde(default = "default_embedding_size")]
    pub embedding_size: usize,
    /// Width H of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward (and discriminator) activation name.
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
fn default_act() -> String {
    "gelu".into()
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

/// ELECTRA's names: BERT's layers under `electra.` (or bare), `embeddings_project`, the
/// discriminator's `discriminator_predictions` and the generator's masked-LM head.
pub const NAMES: WeightNames = WeightNames {
    base: &["electra", ""],
    project_in: "embeddings_project",
    pooler: "",
    mlm: Some(MlmNames {
        transform: "generator_predictions.dense",
        norm: "generator_predictions.LayerNorm",
        decoder: "generator_lm_head",
        bias: &["generator_lm_head.bias"],
    }),
    replaced_token: Some(ReplacedTokenNames {
        dense: "discriminator_predictions.dense",
        prediction: "discriminator_predictions.dense_prediction",
    }),
    ..crate::bert::NAMES
};

/// The spec of an ELECTRA `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: ElectraConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("embedding_size", cfg.embedding_size)?;
    config.require_positive("intermediate_size", cfg.intermediate_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    if cfg.position_embedding_type != "absolute" {
        return Err(config.error(format!(
            "position_embedding_type `{}` is not supported yet (only `absolute`)",
            cfg.position_embedding_type
        )));
    }
    config.refuse("is_decoder", "ELECTRA runs as a bidirectional encoder only")?;
    config.refuse("add_cross_attention", "ELECTRA with cross-attention layers is not built")?;
    let activation = config.activation("hidden_act", &cfg.hidden_act)?;
    let mut tower = TowerSpec::encoder(
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.max_position_embeddings,
    )
    .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } })
    .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_eps, bias: true })
    .with_feed_forward(FeedForwardSpec::plain(cfg.intermediate_size, activation));
    tower.embeddings.token_types = cfg.type_vocab_size;
    if cfg.embedding_size != cfg.hidden_size {
        tower.embeddings.projection = EmbeddingProjection::Summed { width: cfg.embedding_size };
    }
    let mut heads = vec![HeadSpec::ReplacedToken];
    // The generator's head applies exact GELU whatever `hidden_act` says; the builder's
    // masked-LM head uses the tower's activation, so it is built only where the two agree.
    if activation == ActivationKind::Gelu {
        heads.push(HeadSpec::Mlm);
    }
    let tokens = SpecialTokens { eos: vec![], pad: cfg.pad_token_id.unwrap_or(0), decoder_start: None };
    Ok(ArchSpec::encoder(tower, heads).with_tokens(tokens))
}
