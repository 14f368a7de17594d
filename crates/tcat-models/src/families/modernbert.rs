//! ModernBERT (Warner et al. 2024, "Smarter, Better, Faster, Longer: A Modern Bidirectional
//! Encoder for Fast, Memory Efficient, and Long Context Finetuning and Inference", §2.1): a
//! pre-norm encoder with LayerNorms without biases (`norm_bias`), token embeddings followed by a
//! norm (no absolute positions, no token types), rotary positions, a fused `Wqkv` projection,
//! a GeGLU feed-forward whose single `Wi` gives `[input | gate]` (`Wo(act(input) ⊙ gate)`), no
//! linear biases (`attention_bias`, `mlp_bias`) and a final norm. Every
//! `global_attn_every_n_layers`-th layer (from the first) attends globally with rotary base
//! `global_rope_theta`; the others attend within a symmetric window of `local_attention` tokens
//! (`|i − j| ≤ local_attention / 2`, as transformers masks it) with base `local_rope_theta`.
//! The first layer has no attention norm: the embeddings end in one. The masked-LM head is
//! `decoder(norm(act(dense(h))))` with `classifier_bias` / `classifier_activation` and a
//! decoder tied to the token table with its `decoder.bias`. Hugging Face `model_type`
//! `modernbert`.
//!
//! transformers' unpadded (padding-free) and sparse-prediction paths compute the same numbers
//! for the real tokens, so they need nothing here; the classification heads are not built, so
//! `classifier_pooling` is not read.

use serde::Deserialize;
use serde_json::Value;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{MlmNames, QkvNames, WeightNames};

/// The fields of a ModernBERT `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct ModernBertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of each half of the GeGLU feed-forward (`Wi` gives twice as many features).
    pub intermediate_size: usize,
    /// Feed-forward activation name (on the `input` half).
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    /// The rotary tables' length.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Whether the LayerNorms have biases.
    #[serde(default)]
    pub norm_bias: bool,
    /// Whether `Wqkv` and `Wo` have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether `Wi` and the feed-forward `Wo` have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Tokens in a local layer's window (both sides together).
    #[serde(default = "default_local")]
    pub local_attention: usize,
    /// The period of global layers when `layer_types` is absent.
    #[serde(default = "default_every")]
    pub global_attn_every_n_layers: usize,
    /// Per-layer kinds (`full_attention`, `sliding_attention`), transformers 5.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Whether the masked-LM decoder adds a bias.
    #[serde(default = "yes")]
    pub decoder_bias: bool,
    /// Whether the head's dense transform has a bias.
    #[serde(default)]
    pub classifier_bias: bool,
    /// The head's activation.
    #[serde(default = "default_act")]
    pub classifier_activation: String,
    /// Whether the decoder is the token table.
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    8192
}
fn default_eps() -> f64 {
    1e-5
}
fn default_local() -> usize {
    128
}
fn default_every() -> usize {
    3
}
fn yes() -> bool {
    true
}

/// ModernBERT's names: `model.` (or bare) base model, `head` and `decoder` at the root.
pub const NAMES: WeightNames = WeightNames {
    base: &["model", ""],
    word: "embeddings.tok_embeddings",
    embedding_norm: "embeddings.norm",
    layer: "layers.{i}",
    qkv: QkvNames::Fused("attn.Wqkv"),
    attention_out: "attn.Wo",
    attention_norm: "attn_norm",
    ffn_gate_up: "mlp.Wi",
    ffn_down: "mlp.Wo",
    ffn_norm: "mlp_norm",
    final_norm: "final_norm",
    mlm: Some(MlmNames { transform: "head.dense", norm: "head.norm", decoder: "decoder", bias: &["decoder.bias"] }),
    ..WeightNames::EMPTY
};

/// The per-layer patterns: `layer_types` when the config has it (transformers 5), else a
/// global layer every `global_attn_every_n_layers` from layer 0; local layers see `radius`
/// keys on each side.
fn schedule(config: &ConfigFile, cfg: &ModernBertConfig, radius: usize) -> Result<Vec<AttentionPattern>> {
    let layers = cfg.num_hidden_layers;
    let local: Vec<bool> = match &cfg.layer_types {
        Some(types) => config.sliding_layers(types, layers)?,
        None => {
            config.require_positive("global_attn_every_n_layers", cfg.global_attn_every_n_layers)?;
            (0..layers).map(|i| !i.is_multiple_of(cfg.global_attn_every_n_layers)).collect()
        }
    };
    Ok(local.into_iter().map(|l| if l { AttentionPattern::Band { radius } } else { AttentionPattern::Dense }).collect())
}

/// The spec of a ModernBERT `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: ModernBertConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("intermediate_size", cfg.intermediate_size)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    config.require_positive("num_hidden_layers", cfg.num_hidden_layers)?;
    let head_dim = cfg.hidden_size / cfg.num_attention_heads;
    if let Some(v) = config.json.get("head_dim").filter(|v| !v.is_null())
        && v.as_u64() != Some(head_dim as u64)
    {
        return Err(config.error(format!(
            "`head_dim` = {v} is not supported: ModernBERT's heads are hidden_size / num_attention_heads = {head_dim} wide"
        )));
    }
    if config.json.get("is_decoder").and_then(Value::as_bool) == Some(true) {
        return Err(config.error("`is_decoder` = true is not supported: ModernBERT runs as a bidirectional encoder"));
    }
    let activation = config.activation("hidden_activation", &cfg.hidden_activation)?;
    let head_activation = config.activation("classifier_activation", &cfg.classifier_activation)?;
    // transformers 4 read a `null` local base as "the global one".
    let global_theta = match config.json.get("global_rope_theta") {
        Some(v) if !v.is_null() => {
            v.as_f64().ok_or_else(|| config.error(format!("`global_rope_theta` = {v}: expected a number")))?
        }
        _ => 160_000.0,
    };
    let local_default = match config.json.get("local_rope_theta") {
        Some(Value::Null) => global_theta,
        _ => 10_000.0,
    };
    let (global, local) = crate::rope_config::per_type_rotary(
        config,
        ("global_rope_theta", 160_000.0),
        ("local_rope_theta", local_default),
        true,
    )?;
    let schedule = schedule(config, &cfg, cfg.local_attention / 2)?;
    let norm = NormSpec::LayerNorm { eps: cfg.norm_eps, bias: cfg.norm_bias };
    let mut tower = TowerSpec::encoder(
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.max_position_embeddings,
    )
    .with_positions(PositionSpec::Rotary(global))
    .with_norm(norm)
    .with_residual(ResidualSpec::Pre)
    .with_feed_forward(FeedForwardSpec {
        bias: cfg.mlp_bias,
        ..FeedForwardSpec::gated(cfg.intermediate_size, activation)
    });
    tower.embeddings = EmbeddingSpec { norm: true, ..EmbeddingSpec::tokens() };
    tower.attention.qkv_bias = cfg.attention_bias;
    tower.attention.out_bias = cfg.attention_bias;
    tower.attention.schedule = schedule;
    // Only the local layers take the local base (a config without local layers keeps none).
    tower.attention.local_rotary = tower.attention.schedule.iter().any(AttentionPattern::is_local).then_some(local);
    tower.final_norm = true;
    tower.skip_first_attention_norm = true;
    let head = HeadSpec::MaskedLm {
        tied: cfg.tie_word_embeddings,
        transform_bias: cfg.classifier_bias,
        activation: head_activation,
        decoder_bias: cfg.decoder_bias,
    };
    let tokens = SpecialTokens { eos: vec![], pad: cfg.pad_token_id.unwrap_or(0), decoder_start: None };
    Ok(ArchSpec::encoder(tower, vec![head]).with_tokens(tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> ConfigFile {
        ConfigFile { path: "config.json".into(), json }
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "model_type": "modernbert", "vocab_size": 50368, "hidden_size": 768, "num_hidden_layers": 22,
            "num_attention_heads": 12, "intermediate_size": 1152, "global_attn_every_n_layers": 3,
            "local_attention": 128, "global_rope_theta": 160000.0, "local_rope_theta": 10000.0
        })
    }

    /// ModernBERT-base's config as published (transformers 4 field names): global layers 0, 3,
    /// 6, ..., a radius of 64 elsewhere, the two bases on their layers.
    #[test]
    fn the_published_base_config_maps_to_its_schedule_and_bases() {
        let spec = spec(&config(base())).unwrap();
        let tower = spec.single_tower().unwrap();
        let a = &tower.attention;
        assert_eq!(a.pattern(0), AttentionPattern::Dense);
        assert_eq!(a.pattern(1), AttentionPattern::Band { radius: 64 });
        assert_eq!(a.pattern(21), AttentionPattern::Dense);
        let PositionSpec::Rotary(global) = tower.positions else { panic!("rotary") };
        assert_eq!(a.rotary_for_layer(0, global).base, 160_000.0);
        assert_eq!(a.rotary_for_layer(1, global).base, 10_000.0);
        assert!(tower.skip_first_attention_norm && tower.final_norm);
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let mut json = base();
        json["layer_types"] = serde_json::json!(["full_attention", "chunked_attention"]);
        let err = spec(&config(json.clone())).unwrap_err().to_string();
        assert!(err.contains("`layer_types` has 2 entries for 22 layers"), "{err}");
        json["num_hidden_layers"] = serde_json::json!(2);
        let err = spec(&config(json)).unwrap_err().to_string();
        assert!(err.contains("chunked_attention"), "{err}");
        let mut json = base();
        json["head_dim"] = serde_json::json!(32);
        assert!(spec(&config(json)).unwrap_err().to_string().contains("`head_dim`"));
        let mut json = base();
        json["global_attn_every_n_layers"] = serde_json::json!(0);
        assert!(spec(&config(json)).unwrap_err().to_string().contains("global_attn_every_n_layers"));
        let mut json = base();
        json["classifier_activation"] = serde_json::json!("swishy");
        assert!(spec(&config(json)).unwrap_err().to_string().contains("classifier_activation"));
    }
}
