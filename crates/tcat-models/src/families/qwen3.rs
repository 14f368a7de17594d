//! Qwen3 (Qwen Team 2025, "Qwen3 Technical Report"): the Qwen2 decoder without the query, key
//! and value biases and with each head's queries and keys RMS-normalised (one gain vector of
//! `head_dim`, before rotary); the head width is set by `head_dim`, not `hidden / heads`.
//! Hugging Face `model_type` `qwen3`; `qwen3_moe` routes every `decoder_sparse_step`-th
//! layer's tokens to the top `num_experts_per_tok` of `num_experts` SwiGLU experts (no shared
//! expert), with a sliding window in every layer when `use_sliding_window` says so.

use tcat_core::Result;
use tcat_spec::{ArchSpec, QkNormSpec, Stacks};

use crate::ConfigFile;
use crate::build::{ExpertNames, WeightNames};
use crate::families::llama::{LlamaConfig, spec_with};
use crate::families::qwen2::{Qwen2Window, experts};

/// Qwen3's names: LLaMA's, with the per-head query and key norms beside the projections.
pub const NAMES: WeightNames =
    WeightNames { q_norm: "self_attn.q_norm", k_norm: "self_attn.k_norm", ..crate::families::llama::NAMES };

/// Qwen3-MoE's names: Qwen3's, with the router and experts under `mlp`.
pub const MOE_NAMES: WeightNames = WeightNames {
    router: "mlp.gate",
    experts: ExpertNames::PerExpert { prefix: "mlp.experts.{e}", gate: "gate_proj", up: "up_proj", down: "down_proj" },
    ..NAMES
};

/// The spec of a Qwen3 `config.json`: sliding layers as Qwen2 picks them.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let mut cfg: LlamaConfig = config.parse()?;
    // transformers' Qwen3 / Qwen3-MoE configs default `head_dim` to 128, not hidden / heads.
    cfg.head_dim.get_or_insert(128);
    let w: Qwen2Window = config.parse()?;
    let max_window_layers = w.max_window_layers;
    let schedule = w.schedule(config, cfg.num_hidden_layers, |i| i >= max_window_layers)?;
    let mut spec = spec_with(config, &cfg, schedule)?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        tower.attention.qk_norm = Some(QkNormSpec::Head);
    }
    Ok(spec)
}

/// The spec of a Qwen3-MoE `config.json`.
pub fn moe_spec(config: &ConfigFile) -> Result<ArchSpec> {
    let mut cfg: LlamaConfig = config.parse()?;
    // transformers' Qwen3 / Qwen3-MoE configs default `head_dim` to 128, not hidden / heads.
    cfg.head_dim.get_or_insert(128);
    let w: Qwen2Window = config.parse()?;
    // transformers' Qwen3MoeConfig: with `use_sliding_window`, every layer slides.
    let schedule = w.schedule(config, cfg.num_hidden_layers, |_| true)?;
    let experts = experts(config)?;
    if experts.shared_expert.is_some() {
        return Err(config.error("`shared_expert_intermediate_size` is set, but Qwen3-MoE has no shared expert"));
    }
    let mut spec = spec_with(config, &cfg, schedule)?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        tower.attention.qk_norm = Some(QkNormSpec::Head);
        tower.feed_forward.experts = Some(experts);
    }
    Ok(spec)
}
