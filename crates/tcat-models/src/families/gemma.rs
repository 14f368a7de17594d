//! Gemma (Gemma Team 2024, "Gemma: Open Models Based on Gemini Research and Technology"),
//! Gemma 2 (Gemma Team 2024, "Gemma 2: Improving Open Language Models at a Practical Size") and
//! Gemma 3's text decoder (Gemma Team 2025, "Gemma 3 Technical Report").
//!
//! All three are LLaMA-like decoders with a GeGLU feed-forward (tanh GELU), RMSNorms whose gain
//! is `1 + w` computed in f32 ([`NormSpec::RmsNormPlusOne`]), token embeddings multiplied by
//! `√hidden` (rounded to the model's dtype, as transformers does) and a head tied to the token
//! table; the head width is `head_dim`, not `hidden / heads`. Gemma 2 adds sandwich norms around
//! both branches ([`ResidualSpec::Sandwich`]), scores scaled by `query_pre_attn_scalar^-½`,
//! soft-capped scores (`attn_logit_softcapping`) and logits (`final_logit_softcapping`), and
//! sliding-window layers alternating with global ones (`layer_types`; by default every other
//! layer from the first slides). Gemma 3 keeps the sandwich norms, normalises each head's
//! queries and keys (`q_norm`, `k_norm`, also `1 + w`), drops the soft-caps by default, makes
//! five of every six layers local (`sliding_window_pattern` / `layer_types`) and gives the local
//! layers their own rotary base (`rope_local_base_freq`, 10,000) while the global ones use
//! `rope_theta` (1,000,000) with the config's scaling ([`AttentionSpec::local_rotary`]).
//!
//! Hugging Face `model_type`s `gemma`, `gemma2` and `gemma3_text` (`Gemma3ForCausalLM`).

use serde::Deserialize;
use serde_json::Value;
use tcat_core::Result;
use tcat_spec::{
    ArchSpec, AttentionPattern, AttentionSpec, EmbeddingScale, FeedForwardSpec, HeadSpec, Masking, NormSpec,
    PositionSpec, QkNormSpec, ResidualSpec, RotaryLayoutSpec, ScaleRule, SpecialTokens, TowerSpec,
};

use crate::ConfigFile;
use crate::build::WeightNames;
use crate::config::TokenIds;
use crate::decoder::special_ids;
use crate::rope_config::rotary_spec;

/// Gemma's weight names: LLaMA's (`pre_feedforward_layernorm` for the feed-forward branch's
/// input norm in Gemma 2 and 3, whose `post_attention_layernorm` normalises the attention
/// output instead).
pub const NAMES: WeightNames = crate::families::llama::NAMES;

/// Gemma 2's and Gemma 3's names: the sandwich norms and the per-head query/key norms.
pub const SANDWICH_NAMES: WeightNames = WeightNames {
    attention_out_norm: "post_attention_layernorm",
    ffn_norm: "pre_feedforward_layernorm",
    ffn_out_norm: "post_feedforward_layernorm",
    q_norm: "self_attn.q_norm",
    k_norm: "self_attn.k_norm",
    ..crate::families::llama::NAMES
};

/// Which Gemma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    One,
    Two,
    Three,
}

/// The fields of a Gemma `config.json` that shape the network (defaults: transformers 5.23's
/// `GemmaConfig`, `Gemma2Config`, `Gemma3TextConfig`).
#[derive(Debug, Clone, Deserialize)]
struct GemmaConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    hidden_activation: Option<String>,
    #[serde(default)]
    max_position_embeddings: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    #[serde(default = "default_eos")]
    eos_token_id: TokenIds,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    query_pre_attn_scalar: Option<f64>,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default)]
    sliding_window_pattern: Option<usize>,
}

fn default_eps() -> f64 {
    1e-6
}
fn yes() -> bool {
    true
}
fn default_eos() -> TokenIds {
    serde_json::from_value(Value::from(1)).unwrap_or_default()
}

/// The spec of a Gemma (v1) `config.json`.
pub fn gemma_spec(config: &ConfigFile) -> Result<ArchSpec> {
    spec(config, Generation::One)
}

/// The spec of a Gemma 2 `config.json`.
pub fn gemma2_spec(config: &ConfigFile) -> Result<ArchSpec> {
    spec(config, Generation::Two)
}

/// The spec of a Gemma 3 text `config.json` (`gemma3_text`).
pub fn gemma3_spec(config: &ConfigFile) -> Result<ArchSpec> {
    spec(config, Generation::Three)
}

/// A float field that transformers defaults to `default` when absent but that `null` turns off.
fn optional_number(config: &ConfigFile, field: &str, default: Option<f64>) -> Result<Option<f64>> {
    match config.json.get(field) {
        None => Ok(default),
        Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
            _ => Err(config.error(format!("`{field}` = {v}: expected a positive number or null"))),
        },
    }
}

fn spec(config: &ConfigFile, generation: Generation) -> Result<ArchSpec> {
    let cfg: GemmaConfig = config.parse()?;
    config.refuse("use_bidirectional_attention", "tcat builds Gemma as a causal decoder")?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("num_hidden_layers", cfg.num_hidden_layers)?;
    config.require_positive("num_attention_heads", cfg.num_attention_heads)?;
    let heads = cfg.num_attention_heads;
    let kv_heads = cfg.num_key_value_heads.unwrap_or(match generation {
        Generation::One => 16,
        Generation::Two | Generation::Three => 4,
    });
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(config.error(format!(
            "`num_attention_heads` ({heads}) must be a multiple of `num_key_value_heads` ({kv_heads})"
        )));
    }
    let head_dim = cfg.head_dim.unwrap_or(256);
    config.require_positive("head_dim", head_dim)?;
    let max_positions = cfg.max_position_embeddings.unwrap_or(match generation {
        Generation::One | Generation::Two => 8192,
        Generation::Three => 131_072,
    });
    config.require_positive("max_position_embeddings", max_positions)?;
    let act_name = cfg.hidden_activation.as_deref().unwrap_or("gelu_pytorch_tanh");
    let activation = config.activation("hidden_activation", act_name)?;

    let (softcap, final_softcap) = match generation {
        Generation::One => {
            config.refuse("attn_logit_softcapping", "Gemma (v1) has no score soft-capping")?;
            config.refuse("final_logit_softcapping", "Gemma (v1) has no logit soft-capping")?;
            (None, None)
        }
        Generation::Two => (
            optional_number(config, "attn_logit_softcapping", Some(50.0))?,
            optional_number(config, "final_logit_softcapping", Some(30.0))?,
        ),
        Generation::Three => (
            optional_number(config, "attn_logit_softcapping", None)?,
            optional_number(config, "final_logit_softcapping", None)?,
        ),
    };
    let scale = match (generation, cfg.query_pre_attn_scalar) {
        (Generation::One, Some(_)) => {
            return Err(config.error("`query_pre_attn_scalar` is set, but Gemma (v1) scales scores by head_dim^-0.5"));
        }
        (Generation::One, None) => ScaleRule::InverseSqrtHeadDim,
        (_, scalar) => {
            let scalar = scalar.unwrap_or(256.0);
            if !(scalar > 0.0 && scalar.is_finite()) {
                return Err(config.error(format!("`query_pre_attn_scalar` ({scalar}) must be positive")));
            }
            ScaleRule::Fixed { scale: scalar.powf(-0.5) }
        }
    };
    let schedule = match generation {
        Generation::One => {
            config.refuse("sliding_window", "Gemma (v1) attends to every key")?;
            vec![]
        }
        Generation::Two | Generation::Three => schedule(config, &cfg, generation)?,
    };
    let (rotary, local_rotary) = match generation {
        Generation::One | Generation::Two => (rotary_spec(config, 1.0, RotaryLayoutSpec::HalfSplit)?, None),
        Generation::Three => {
            let (global, local) = gemma3_rotary(config)?;
            (global, Some(local))
        }
    };
    let norm = NormSpec::RmsNormPlusOne { eps: cfg.rms_norm_eps };
    let mut tower = TowerSpec::decoder(cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, heads, max_positions)
        .with_positions(PositionSpec::Rotary(rotary))
        .with_norm(norm)
        .with_residual(match generation {
            Generation::One => ResidualSpec::Pre,
            Generation::Two | Generation::Three => ResidualSpec::Sandwich,
        })
        .with_attention(AttentionSpec {
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            qkv_bias: cfg.attention_bias,
            out_bias: cfg.attention_bias,
            scale,
            masking: Masking::Causal,
            schedule,
            qk_norm: (generation == Generation::Three).then_some(QkNormSpec::Head),
            logit_softcap: softcap,
            latent: None,
            local_rotary,
        })
        .with_feed_forward(FeedForwardSpec::gated(cfg.intermediate_size, activation));
    tower.embeddings.scale = EmbeddingScale::SqrtHidden;
    let head = match final_softcap {
        Some(cap) => HeadSpec::SoftcappedLm { tied: cfg.tie_word_embeddings, cap },
        None => HeadSpec::Lm { tied: cfg.tie_word_embeddings, bias: false },
    };
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, head).with_tokens(SpecialTokens { eos, pad, decoder_start: None }))
}

/// The per-layer patterns: `layer_types` when the config has it, else Gemma 2's alternation
/// (layer `i` slides when `i + 1` is odd) or Gemma 3's `sliding_window_pattern` (layer `i`
/// slides unless `i + 1` is a multiple of it; 6 by default), each with `sliding_window` keys.
fn schedule(config: &ConfigFile, cfg: &GemmaConfig, generation: Generation) -> Result<Vec<AttentionPattern>> {
    let layers = cfg.num_hidden_layers;
    let window = match config.json.get("sliding_window") {
        None => 4096,
        Some(v) => v
            .as_u64()
            .filter(|w| *w > 0)
            .ok_or_else(|| config.error(format!("`sliding_window` = {v}: expected a positive integer")))?
            as usize,
    };
    let slides: Vec<bool> = match &cfg.layer_types {
        Some(types) => config.sliding_layers(types, layers)?,
        None => {
            let pattern = match generation {
                Generation::Three => cfg.sliding_window_pattern.unwrap_or(6),
                _ => 2,
            };
            config.require_positive("sliding_window_pattern", pattern)?;
            (0..layers).map(|i| !(i + 1).is_multiple_of(pattern)).collect()
        }
    };
    Ok(slides
        .into_iter()
        .map(|local| if local { AttentionPattern::Local { window } } else { AttentionPattern::Dense })
        .collect())
}

/// Gemma 3's two rotary settings (global, local). transformers 5 saves them as `rope_parameters`
/// keyed by layer type (`full_attention`, `sliding_attention`); older configs have `rope_theta`
/// (global, 1,000,000 by default), `rope_local_base_freq` (local, 10,000) and `rope_scaling`
/// (global layers only).
fn gemma3_rotary(config: &ConfigFile) -> Result<(tcat_spec::RotarySpec, tcat_spec::RotarySpec)> {
    crate::rope_config::per_type_rotary(config, ("rope_theta", 1e6), ("rope_local_base_freq", 1e4), false)
}

/// The weight names of a Gemma `config.json`.
pub fn names(config: &ConfigFile) -> Result<WeightNames> {
    Ok(if config.model_type()? == "gemma" { NAMES } else { SANDWICH_NAMES })
}
