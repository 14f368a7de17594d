//! OLMoE (Muennighoff et al. 2024, "OLMoE: Open Mixture-of-Experts Language Models"): the LLaMA
//! decoder with RMS-normalised queries and keys (each norm over the whole projection, before
//! rotary) and a mixture of experts in every layer: the top `num_experts_per_tok` of
//! `num_experts` SwiGLU experts by softmax probability, not renormalised unless
//! `norm_topk_prob`. Hugging Face `model_type` `olmoe`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::{ArchSpec, FeedForwardKind, MoeSpec, QkNormSpec, RouterSpec, RoutingRule, Stacks};

use crate::ConfigFile;
use crate::build::{ExpertNames, WeightNames};
use crate::families::llama::{LlamaConfig, spec_with};

/// OLMoE's own settings (the rest is [`LlamaConfig`]).
#[derive(Debug, Clone, Deserialize)]
struct OlmoeSettings {
    num_experts: usize,
    num_experts_per_tok: usize,
    #[serde(default)]
    norm_topk_prob: bool,
    #[serde(default)]
    clip_qkv: Option<f64>,
}

/// OLMoE's names: LLaMA's, with the query/key norms beside the projections and the router and
/// experts under `mlp`.
pub const NAMES: WeightNames = WeightNames {
    q_norm: "self_attn.q_norm",
    k_norm: "self_attn.k_norm",
    router: "mlp.gate",
    experts: ExpertNames::PerExpert { prefix: "mlp.experts.{e}", gate: "gate_proj", up: "up_proj", down: "down_proj" },
    ..crate::families::llama::NAMES
};

/// The spec of an OLMoE `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: LlamaConfig = config.parse()?;
    let o: OlmoeSettings = config.parse()?;
    config.require_positive("num_experts", o.num_experts)?;
    if o.num_experts_per_tok == 0 || o.num_experts_per_tok > o.num_experts {
        return Err(config.error(format!(
            "`num_experts_per_tok` ({}) must be between 1 and `num_experts` ({})",
            o.num_experts_per_tok, o.num_experts
        )));
    }
    if let Some(clip) = o.clip_qkv {
        return Err(tcat_core::Error::NotImplemented {
            what: format!("`clip_qkv` ({clip}): clamping queries, keys and values (OLMoE)"),
        });
    }
    let mut spec = spec_with(config, &cfg, Vec::new())?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        tower.attention.qk_norm = Some(QkNormSpec::Projection);
        tower.feed_forward.experts = Some(MoeSpec {
            num_experts: o.num_experts,
            expert_kind: FeedForwardKind::Gated,
            expert_inner: cfg.intermediate_size,
            router: RouterSpec {
                rule: RoutingRule::TopK { k: o.num_experts_per_tok, renormalize: o.norm_topk_prob },
                bias: false,
                float32: false,
                jitter: 0.0,
            },
            every: 1,
            offset: 0,
            shared_expert: None,
            first_dense: 0,
        });
    }
    Ok(spec)
}
