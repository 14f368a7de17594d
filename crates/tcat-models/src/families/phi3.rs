//! Phi-3 (Abdin et al. 2024, "Phi-3 Technical Report: A Highly Capable Language Model Locally
//! on Your Phone"): the LLaMA architecture with the query, key and value projections stored as
//! one `qkv_proj` and the gate and up projections as one `gate_up_proj`, no biases, an
//! optional sliding window, and LongRoPE (Ding et al. 2024) for the 128k-context models: per-
//! frequency factors from a short list up to `original_max_position_embeddings` and a long
//! list beyond, with the cos/sin tables scaled by `√(1 + ln s / ln L)`. Hugging Face
//! `model_type` `phi3` (also Phi-3.5-mini and Phi-4).

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::{ArchSpec, AttentionPattern, Stacks};

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::families::llama::{LlamaConfig, spec_with};

/// The fields Phi-3 adds to [`LlamaConfig`].
#[derive(Debug, Clone, Deserialize)]
struct Phi3Fields {
    #[serde(default)]
    sliding_window: Option<usize>,
}

/// Hugging Face's Phi-3 weight names (`Phi3ForCausalLM`, or a bare `Phi3Model`).
pub const NAMES: WeightNames = WeightNames {
    qkv: QkvNames::Fused("self_attn.qkv_proj"),
    ffn_gate: "",
    ffn_up: "",
    ffn_gate_up: "mlp.gate_up_proj",
    ..crate::llama::NAMES
};

/// The spec of a Phi-3 `config.json`. transformers' Phi-3 has no biases whatever
/// `attention_bias` / `mlp_bias` say, and an RMSNorm ε of 1e-5 when the config gives none.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let mut cfg: LlamaConfig = config.parse()?;
    if config.json.get("rms_norm_eps").is_none() {
        cfg.rms_norm_eps = 1e-5;
    }
    (cfg.attention_bias, cfg.mlp_bias) = (false, false);
    let fields: Phi3Fields = config.parse()?;
    let schedule = match fields.sliding_window {
        Some(0) => return Err(config.error("`sliding_window` must be positive (or null for full attention)")),
        Some(window) => vec![AttentionPattern::Local { window }],
        None => Vec::new(),
    };
    let mut spec = spec_with(config, &cfg, schedule)?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        (tower.attention.qkv_bias, tower.attention.out_bias, tower.feed_forward.bias) = (false, false, false);
    }
    Ok(spec)
}
