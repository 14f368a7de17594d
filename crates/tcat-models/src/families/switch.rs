//! Switch Transformers (Fedus et al. 2021, "Switch Transformers: Scaling to Trillion Parameter
//! Models with Simple and Efficient Sparsity"): T5 whose feed-forward is, in every `step`-th
//! layer, a mixture of experts with top-1 routing (a bias-free router run in f32, §2.2) and a
//! fixed expert capacity per sequence: tokens past it get no expert output. Hugging Face
//! `model_type` `switch_transformers`; the sparse layers are those transformers picks
//! (`i % step == 1`, every layer for a step of 1, with `step = layers / sparse layers`).

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{ExpertNames, WeightNames};
use crate::families::t5::{self, T5Config};

/// The mixture-of-experts fields of a Switch `config.json`.
#[derive(Debug, Clone, Deserialize)]
struct SwitchConfig {
    #[serde(default = "default_experts")]
    num_experts: usize,
    #[serde(default = "default_capacity")]
    expert_capacity: usize,
    #[serde(default = "default_sparse")]
    num_sparse_encoder_layers: usize,
    #[serde(default = "default_sparse")]
    num_sparse_decoder_layers: usize,
    #[serde(default)]
    router_bias: bool,
    #[serde(default = "default_jitter")]
    router_jitter_noise: f64,
    #[serde(default = "default_router_dtype")]
    router_dtype: String,
    #[serde(default = "default_act")]
    dense_act_fn: String,
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
}

fn default_experts() -> usize {
    8
}
fn default_capacity() -> usize {
    64
}
fn default_sparse() -> usize {
    3
}
fn default_jitter() -> f64 {
    0.01
}
fn default_router_dtype() -> String {
    "float32".into()
}
fn default_act() -> String {
    "relu".into()
}
fn default_true() -> bool {
    true
}

const fn with_experts(names: WeightNames) -> WeightNames {
    WeightNames {
        ffn_up: names.ffn_up,
        router: "layer.1.mlp.router.classifier",
        experts: ExpertNames::PerExpert { prefix: "layer.1.mlp.experts.expert_{e}", gate: "", up: "wi", down: "wo" },
        ..names
    }
}

const ENCODER: WeightNames =
    WeightNames { ffn_up: "layer.1.mlp.wi", ffn_down: "layer.1.mlp.wo", ..with_experts(t5::NAMES) };

const SEQ2SEQ: crate::build::Seq2seqNames = crate::build::Seq2seqNames {
    decoder: WeightNames {
        ffn_up: "layer.2.mlp.wi",
        ffn_down: "layer.2.mlp.wo",
        router: "layer.2.mlp.router.classifier",
        experts: ExpertNames::PerExpert { prefix: "layer.2.mlp.experts.expert_{e}", gate: "", up: "wi", down: "wo" },
        ..t5::DECODER
    },
    shared: &["shared"],
    final_logits_bias: "",
};

/// Switch Transformers' names: T5's, with the feed-forward under `mlp` (`wi`, `wo`), the
/// router at `mlp.router.classifier` and expert `e` at `mlp.experts.expert_{e}`.
pub const NAMES: WeightNames = WeightNames { seq2seq: Some(&SEQ2SEQ), ..ENCODER };

/// transformers' sparse step: every `layers / sparse` layers (`layers` when there are none).
fn sparse_every(layers: usize, sparse: usize) -> MoeSchedule {
    let step = layers.checked_div(sparse).unwrap_or(layers);
    match step {
        0 => MoeSchedule { every: 0, offset: 0 },
        1 => MoeSchedule { every: 1, offset: 0 },
        step => MoeSchedule { every: step, offset: 1 },
    }
}

struct MoeSchedule {
    every: usize,
    offset: usize,
}

/// The spec of a Switch Transformers `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let mut cfg: T5Config = config.parse()?;
    let moe: SwitchConfig = config.parse()?;
    config.require_positive("num_experts", moe.num_experts)?;
    if moe.router_dtype != "float32" {
        return Err(config.error(format!("`router_dtype` `{}` is not supported (only float32)", moe.router_dtype)));
    }
    cfg.feed_forward_proj = moe.dense_act_fn.clone();
    let mut spec = t5::spec_from(config, &cfg, moe.tie_word_embeddings)?;
    let router = RouterSpec {
        rule: RoutingRule::Top1FixedCapacity { capacity: moe.expert_capacity },
        bias: moe.router_bias,
        float32: true,
        jitter: moe.router_jitter_noise,
    };
    if let Stacks::EncoderDecoder { encoder, decoder, .. } = &mut spec.stacks {
        for (tower, sparse) in [(encoder, moe.num_sparse_encoder_layers), (decoder, moe.num_sparse_decoder_layers)] {
            let MoeSchedule { every, offset } = sparse_every(tower.num_layers, sparse);
            tower.feed_forward.experts = (every > 0).then_some(MoeSpec {
                num_experts: moe.num_experts,
                expert_kind: FeedForwardKind::Plain,
                expert_inner: tower.feed_forward.inner,
                router,
                every,
                offset,
                shared_expert: None,
                first_dense: 0,
            });
        }
    }
    Ok(spec)
}
