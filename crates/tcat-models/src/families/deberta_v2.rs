//! DeBERTa (He et al. 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled Attention",
//! §3.1), v2 and v3 ("DeBERTaV3", 2021): BERT's post-norm encoder whose attention adds
//! content-to-position and position-to-content terms over relative embeddings shared by every
//! layer. v1 projects them with each layer's own position projections (`pos_proj`,
//! `pos_q_proj`), keeps distances up to `max_relative_positions`, adds absolute positions too,
//! and stores queries, keys and values as one per-head `in_proj` with query and value biases.
//! v2/v3 project them with the layer's query and key projections (`share_att_key`), may
//! normalise them, log-bucket the distances (`position_buckets`) and usually drop absolute
//! positions (`position_biased_input: false`). The score scale is `1/√(head_dim · (1 +
//! terms))`. Hugging Face `model_type` `deberta` and `deberta-v2` (also the v3 checkpoints).

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{MlmNames, QkvNames, TokenConvolutionNames, WeightNames};

/// The fields of a DeBERTa-v2 `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct DebertaV2Config {
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
    /// Rows of the absolute position table, and the relative span when
    /// `max_relative_positions` < 1.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Rows of the segment table (0: none).
    #[serde(default)]
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Whether attention has the disentangled position terms.
    #[serde(default)]
    pub relative_attention: bool,
    /// Relative distances kept (< 1: `max_position_embeddings`).
    #[serde(default = "minus_one")]
    pub max_relative_positions: i64,
    /// Log buckets of relative distances (< 1: none).
    #[serde(default = "minus_one")]
    pub position_buckets: i64,
    /// Whether a learned absolute table is added to the embeddings.
    #[serde(default = "yes")]
    pub position_biased_input: bool,
    /// The position terms: `["c2p", "p2c"]`, or one of them, or `"c2p|p2c"`.
    #[serde(default)]
    pub pos_att_type: Option<serde_json::Value>,
    /// Whether v2 projects positions with the content projections (v1 never does).
    #[serde(default)]
    pub share_att_key: bool,
    /// `layer_norm` normalises the relative embeddings; `none` leaves them.
    #[serde(default = "default_norm_rel")]
    pub norm_rel_ebd: String,
    /// Width of the embedding tables (only the hidden width is built).
    #[serde(default)]
    pub embedding_size: Option<usize>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    512
}
fn default_eps() -> f64 {
    1e-7
}
fn minus_one() -> i64 {
    -1
}
fn yes() -> bool {
    true
}
fn default_norm_rel() -> String {
    "none".into()
}

/// DeBERTa-v2's names: BERT's layout under `deberta.` with `query_proj`/`key_proj`/`value_proj`,
/// the relative table `encoder.rel_embeddings` and its norm `encoder.LayerNorm`, and the legacy
/// `cls.predictions` masked-LM head.
pub const NAMES: WeightNames = WeightNames {
    base: &["deberta", ""],
    qkv: QkvNames::Separate {
        q: "attention.self.query_proj",
        k: "attention.self.key_proj",
        v: "attention.self.value_proj",
    },
    pooler: "",
    mlm: Some(MlmNames {
        transform: "cls.predictions.transform.dense",
        norm: "cls.predictions.transform.LayerNorm",
        decoder: "cls.predictions.decoder",
        bias: &["cls.predictions.bias", "cls.predictions.decoder.bias"],
    }),
    relative_embeddings: "encoder.rel_embeddings",
    relative_norm: "encoder.LayerNorm",
    relative_key: "attention.self.pos_key_proj",
    relative_query: "attention.self.pos_query_proj",
    convolution: TokenConvolutionNames { kernel: "encoder.conv.conv", norm: "encoder.conv.LayerNorm" },
    project_in: "embeddings.embed_proj",
    ..crate::bert::NAMES
};

/// DeBERTa v1's names: v2's layout with the per-head `in_proj` and its `q_bias`/`v_bias`, and
/// the position projections `pos_proj` (content-to-position) and `pos_q_proj`.
pub const NAMES_V1: WeightNames = WeightNames {
    qkv: QkvNames::FusedPerHeadQvBias {
        fused: "attention.self.in_proj",
        q_bias: "attention.self.q_bias",
        v_bias: "attention.self.v_bias",
    },
    relative_key: "attention.self.pos_proj",
    relative_query: "attention.self.pos_q_proj",
    ..NAMES
};

/// The names of a checkpoint saved with `legacy: false`: the masked-LM head under
/// `lm_predictions.lm_head`, always tied to the token table.
pub const NAMES_NON_LEGACY: WeightNames = WeightNames {
    mlm: Some(MlmNames {
        transform: "lm_predictions.lm_head.dense",
        norm: "lm_predictions.lm_head.LayerNorm",
        decoder: "",
        bias: &["lm_predictions.lm_head.bias"],
    }),
    ..NAMES
};

/// The names of a DeBERTa-v2 `config.json`: its `legacy` flag (default `true`) picks the
/// masked-LM head's layout.
pub fn names(config: &ConfigFile) -> Result<WeightNames> {
    let v1 = config.model_type()? == "deberta";
    let legacy = match config.json.get("legacy") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(true)) => true,
        Some(serde_json::Value::Bool(false)) => false,
        Some(other) => return Err(config.error(format!("`legacy` = {other}: expected true or false"))),
    };
    let names = if v1 { NAMES_V1 } else { NAMES };
    Ok(if legacy { names } else { WeightNames { mlm: NAMES_NON_LEGACY.mlm, ..names } })
}

/// The disentangled terms `pos_att_type` names (`None` when it names none).
fn terms(config: &ConfigFile, value: Option<&serde_json::Value>) -> Result<Option<DisentangledTerms>> {
    let names: Vec<String> = match value {
        None | Some(serde_json::Value::Null) => vec![],
        Some(serde_json::Value::String(s)) => s.split('|').map(|t| t.trim().to_lowercase()).collect(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|t| t.as_str().map(|t| t.trim().to_lowercase()))
            .collect::<Option<_>>()
            .ok_or_else(|| config.error("`pos_att_type` must list strings (`c2p`, `p2c`)"))?,
        Some(other) => return Err(config.error(format!("`pos_att_type` = {other}: expected a list or a `|`-string"))),
    };
    if let Some(unknown) = names.iter().find(|t| !matches!(t.as_str(), "c2p" | "p2c" | "")) {
        return Err(config.error(format!("`pos_att_type` term `{unknown}` is unknown (expected `c2p` or `p2c`)")));
    }
    let has = |t: &str| names.iter().any(|n| n == t);
    Ok(match (has("c2p"), has("p2c")) {
        (true, true) => Some(DisentangledTerms::Both),
        (true, false) => Some(DisentangledTerms::ContentToPosition),
        (false, true) => Some(DisentangledTerms::PositionToContent),
        (false, false) => None,
    })
}

/// The spec of a DeBERTa v1 or v2 `config.json` (`model_type` `deberta` or `deberta-v2`).
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let v1 = config.model_type()? == "deberta";
    let cfg: DebertaV2Config = config.parse()?;
    config.refuse("talking_head", "DeBERTa's talking-head projections are not built")?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("intermediate_size", cfg.intermediate_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    if cfg.embedding_size == Some(0) {
        return Err(config.error("`embedding_size` is 0, expected a positive width"));
    }
    // v2's n-gram convolution beside the first layer (`conv_kernel_size` > 0); v1's encoder has
    // none and transformers ignores the fields there.
    let convolution = match config.json.get("conv_kernel_size") {
        Some(k) if !v1 => {
            let kernel = k.as_u64().ok_or_else(|| config.error("`conv_kernel_size` must be a whole number"))? as usize;
            let groups = match config.json.get("conv_groups") {
                None => 1,
                Some(g) => g.as_u64().ok_or_else(|| config.error("`conv_groups` must be a whole number"))? as usize,
            };
            let act = config.json.get("conv_act").and_then(serde_json::Value::as_str).unwrap_or("tanh");
            if kernel > 0 && (kernel.is_multiple_of(2) || groups == 0 || !cfg.hidden_size.is_multiple_of(groups)) {
                return Err(config.error(format!(
                    "`conv_kernel_size` {kernel} must be odd (transformers pads (k - 1) / 2 on each side) and \
                     `conv_groups` {groups} must divide `hidden_size` {}",
                    cfg.hidden_size
                )));
            }
            (kernel > 0).then_some(TokenConvolutionSpec {
                kernel,
                groups,
                activation: config.activation("conv_act", act)?,
            })
        }
        _ => None,
    };
    // deberta-v2-xlarge and xxlarge store `attention_head_size`, equal to hidden / heads there
    // (transformers' output projection needs heads × size = hidden).
    let split = (cfg.hidden_size / cfg.num_attention_heads) as u64;
    if let Some(size) = config.json.get("attention_head_size").filter(|v| !v.is_null() && v.as_u64() != Some(split)) {
        return Err(config.error(format!(
            "`attention_head_size` = {size} is not supported: heads other than hidden_size / num_attention_heads \
             ({} / {}) are not built",
            cfg.hidden_size, cfg.num_attention_heads
        )));
    }
    let norm_rel = if v1 { "none".to_string() } else { cfg.norm_rel_ebd.to_lowercase() };
    let normalised = norm_rel.split('|').any(|t| t.trim() == "layer_norm");
    if norm_rel.split('|').any(|t| !matches!(t.trim(), "layer_norm" | "none")) {
        return Err(
            config.error(format!("`norm_rel_ebd` `{}` is unknown (expected `layer_norm` or `none`)", cfg.norm_rel_ebd))
        );
    }
    let head_dim = cfg.hidden_size / cfg.num_attention_heads;
    let mut tower = TowerSpec::encoder(
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.max_position_embeddings,
    )
    .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_eps, bias: true })
    .with_feed_forward(FeedForwardSpec::plain(
        cfg.intermediate_size,
        config.activation("hidden_act", &cfg.hidden_act)?,
    ));
    tower.embeddings.token_types = cfg.type_vocab_size;
    // Tables narrower than the hidden states: their sum is projected by `embed_proj`, then
    // normalised.
    if let Some(width) = cfg.embedding_size.filter(|&e| e != cfg.hidden_size) {
        tower.embeddings.projection = EmbeddingProjection::SummedBeforeNorm { width };
    }
    tower.convolution = convolution;
    let absolute = PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } };
    let terms = if cfg.relative_attention { terms(config, cfg.pos_att_type.as_ref())? } else { None };
    tower = match terms {
        Some(terms) => {
            // v1 always has its own position projections and no buckets.
            let share_keys = cfg.share_att_key && !v1;
            let position_buckets = if v1 { -1 } else { cfg.position_buckets };
            let max_relative = if cfg.max_relative_positions < 1 {
                cfg.max_position_embeddings
            } else {
                cfg.max_relative_positions as usize
            };
            let buckets = (position_buckets > 0).then_some(position_buckets as usize);
            if buckets.is_some_and(|b| b < 4 || max_relative <= b / 2 + 1) {
                return Err(config.error(format!(
                    "`position_buckets` {} needs at least 4 buckets and `max_relative_positions` ({max_relative}) above \
                     half of them plus one",
                    position_buckets
                )));
            }
            let mut tower = tower.with_positions(PositionSpec::Deberta {
                max_relative,
                buckets,
                share_keys,
                absolute: cfg.position_biased_input,
                terms,
                normalised,
            });
            tower.attention.scale = ScaleRule::Fixed { scale: 1.0 / ((head_dim * (1 + terms.count())) as f64).sqrt() };
            tower
        }
        None if cfg.position_biased_input => tower.with_positions(absolute),
        None => tower.with_positions(PositionSpec::None),
    };
    let tokens = SpecialTokens { eos: vec![], pad: cfg.pad_token_id.unwrap_or(0), decoder_start: None };
    Ok(ArchSpec::encoder(tower, vec![HeadSpec::Mlm]).with_tokens(tokens))
}
