//! Mixtral (Jiang et al. 2024, "Mixtral of Experts"): the Mistral decoder with a sparse
//! mixture of experts in every layer, each token routed to the top 2 of 8 SwiGLU experts with
//! the chosen gates renormalised. Hugging Face `model_type` `mixtral`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::{ArchSpec, AttentionPattern, FeedForwardKind, MoeSpec, RouterSpec, RoutingRule, Stacks};

use crate::ConfigFile;
use crate::build::{ExpertNames, WeightNames};
use crate::families::llama::{LlamaConfig, spec_with};

/// Mixtral's expert settings (the rest is [`LlamaConfig`]).
#[derive(Debug, Clone, Deserialize)]
struct MixtralExperts {
    num_local_experts: usize,
    num_experts_per_tok: usize,
    #[serde(default)]
    router_jitter_noise: f64,
}

/// Mixtral's names: LLaMA's, with the router and experts under `block_sparse_moe`.
pub const NAMES: WeightNames = WeightNames {
    router: "block_sparse_moe.gate",
    experts: ExpertNames::PerExpert { prefix: "block_sparse_moe.experts.{e}", gate: "w1", up: "w3", down: "w2" },
    ..crate::families::llama::NAMES
};

/// The spec of a Mixtral `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: LlamaConfig = config.parse()?;
    let experts: MixtralExperts = config.parse()?;
    config.require_positive("num_local_experts", experts.num_local_experts)?;
    if experts.num_experts_per_tok == 0 || experts.num_experts_per_tok > experts.num_local_experts {
        return Err(config.error(format!(
            "`num_experts_per_tok` ({}) must be between 1 and `num_local_experts` ({})",
            experts.num_experts_per_tok, experts.num_local_experts
        )));
    }
    let schedule = cfg.sliding_window.map(|window| vec![AttentionPattern::Local { window }]).unwrap_or_default();
    let mut spec = spec_with(config, &cfg, schedule)?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        tower.feed_forward.experts = Some(MoeSpec {
            num_experts: experts.num_local_experts,
            expert_kind: FeedForwardKind::Gated,
            expert_inner: cfg.intermediate_size,
            router: RouterSpec {
                rule: RoutingRule::TopK { k: experts.num_experts_per_tok, renormalize: true },
                bias: false,
                // The gate is an ordinary linear layer in the model's dtype; the softmax is f32.
                float32: false,
                jitter: experts.router_jitter_noise,
            },
            every: 1,
            offset: 0,
            shared_expert: None,
            first_dense: 0,
        });
    }
    Ok(spec)
}
