//! Qwen2 (Qwen Team 2024, "Qwen2 Technical Report"): the LLaMA architecture with biases on the
//! query, key and value projections (none on the output), and sliding-window attention in the
//! layers its config names. Hugging Face `model_type` `qwen2`; `qwen2_moe` (Qwen1.5-MoE) adds
//! routed and shared experts ([`moe_spec`]).

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::{
    ArchSpec, AttentionPattern, FeedForwardKind, MoeSpec, RouterSpec, RoutingRule, SharedExpertSpec, Stacks,
};

use crate::ConfigFile;
use crate::build::{ExpertNames, SharedExpertNames, WeightNames};
use crate::families::llama::{LlamaConfig, spec_with};

/// Qwen2's sliding-window settings (the rest is [`LlamaConfig`]).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Qwen2Window {
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    sliding_window: Option<usize>,
    /// transformers' Qwen2 / Qwen2-MoE / Qwen3 configs default it to 28.
    #[serde(default = "twenty_eight")]
    pub(crate) max_window_layers: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
}

/// The spec of a Qwen2 `config.json`. As transformers does, the window applies only with
/// `use_sliding_window`, in the layers `layer_types` marks `sliding_attention` (by default
/// those from `max_window_layers` on).
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: LlamaConfig = config.parse()?;
    let w: Qwen2Window = config.parse()?;
    let max_window_layers = w.max_window_layers;
    let schedule = w.schedule(config, cfg.num_hidden_layers, |i| i >= max_window_layers)?;
    let mut spec = spec_with(config, &cfg, schedule)?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        tower.attention.qkv_bias = true;
        tower.attention.out_bias = false;
    }
    Ok(spec)
}

impl Qwen2Window {
    /// The attention pattern per layer: `layer_types` when the config has it, else sliding in
    /// the layers `sliding` picks (the families differ), and only with `use_sliding_window`.
    pub(crate) fn schedule(
        self,
        config: &ConfigFile,
        layers: usize,
        sliding: impl Fn(usize) -> bool,
    ) -> Result<Vec<AttentionPattern>> {
        let window = if self.use_sliding_window { self.sliding_window } else { None };
        let types = self.layer_types.unwrap_or_else(|| {
            let sliding = |i: usize| window.is_some() && sliding(i);
            (0..layers).map(|i| if sliding(i) { "sliding_attention" } else { "full_attention" }.to_string()).collect()
        });
        layer_schedule(config, &types, layers, window)
    }
}

/// Attention patterns from `layer_types` (`full_attention` / `sliding_attention`).
fn layer_schedule(
    config: &ConfigFile,
    types: &[String],
    layers: usize,
    window: Option<usize>,
) -> Result<Vec<AttentionPattern>> {
    if types.len() != layers {
        return Err(config.error(format!("`layer_types` has {} entries for {layers} layers", types.len())));
    }
    types
        .iter()
        .map(|t| match (t.as_str(), window) {
            ("full_attention", _) => Ok(AttentionPattern::Dense),
            ("sliding_attention", Some(window)) => Ok(AttentionPattern::Local { window }),
            ("sliding_attention", None) => Ok(AttentionPattern::Dense),
            (other, _) => Err(config.error(format!("layer type `{other}` is not full_attention or sliding_attention"))),
        })
        .collect()
}

/// The spec of a Qwen2-MoE `config.json` (`qwen2_moe`; Qwen Team 2024, "Qwen1.5-MoE"):
/// Qwen2's attention (q/k/v biases as `qkv_bias` says) with a mixture of experts in every
/// `decoder_sparse_step`-th layer: the top `num_experts_per_tok` of `num_experts` SwiGLU
/// experts, their softmax gates renormalised only with `norm_topk_prob`, plus a shared expert
/// every token passes through, scaled by `sigmoid(shared_expert_gate · x)`.
pub fn moe_spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: LlamaConfig = config.parse()?;
    let w: Qwen2Window = config.parse()?;
    let qkv: Qwen2MoeBias = config.parse()?;
    let layers = cfg.num_hidden_layers;
    let max_window_layers = w.max_window_layers;
    // transformers' Qwen2MoeConfig: sliding in the even layers below `max_window_layers`.
    let schedule = w.schedule(config, layers, |i| (i + 1) % 2 == 1 && i < max_window_layers)?;
    let mut experts = experts(config)?;
    // transformers' Qwen2MoeConfig always builds the shared expert, 5632 wide by default.
    experts.shared_expert.get_or_insert(SharedExpertSpec { inner: 5632, sigmoid_gate: true });
    let mut spec = spec_with(config, &cfg, schedule)?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        tower.attention.qkv_bias = qkv.qkv_bias;
        tower.attention.out_bias = false;
        tower.feed_forward.experts = Some(experts);
    }
    Ok(spec)
}

/// The routed experts of a Qwen2-MoE or Qwen3-MoE `config.json`: every
/// `decoder_sparse_step`-th layer sparse, softmax gates renormalised only with
/// `norm_topk_prob`, and Qwen2-MoE's sigmoid-gated shared expert when the config sizes one.
pub(crate) fn experts(config: &ConfigFile) -> Result<MoeSpec> {
    let m: Qwen2MoeExperts = config.parse()?;
    config.require_positive("num_experts", m.num_experts)?;
    config.require_positive("decoder_sparse_step", m.decoder_sparse_step)?;
    if m.num_experts_per_tok == 0 || m.num_experts_per_tok > m.num_experts {
        return Err(config.error(format!(
            "`num_experts_per_tok` ({}) must be between 1 and `num_experts` ({})",
            m.num_experts_per_tok, m.num_experts
        )));
    }
    if !m.mlp_only_layers.is_empty() {
        return Err(tcat_core::Error::NotImplemented {
            what: format!("dense layers listed in `mlp_only_layers` ({:?}) of a Qwen2-MoE model", m.mlp_only_layers),
        });
    }
    Ok(MoeSpec {
        num_experts: m.num_experts,
        expert_kind: FeedForwardKind::Gated,
        expert_inner: m.moe_intermediate_size,
        router: RouterSpec {
            rule: RoutingRule::TopK { k: m.num_experts_per_tok, renormalize: m.norm_topk_prob },
            bias: false,
            float32: false,
            jitter: 0.0,
        },
        // Layer `i` is sparse when `(i + 1) % step == 0`.
        every: m.decoder_sparse_step,
        offset: m.decoder_sparse_step - 1,
        shared_expert: m.shared_expert_intermediate_size.map(|inner| SharedExpertSpec { inner, sigmoid_gate: true }),
        first_dense: 0,
    })
}

/// Qwen2-MoE's attention biases.
#[derive(Debug, Clone, Deserialize)]
struct Qwen2MoeBias {
    #[serde(default = "yes")]
    qkv_bias: bool,
}

/// Qwen2-MoE's expert settings (the rest is [`LlamaConfig`] and [`Qwen2Window`]).
#[derive(Debug, Clone, Deserialize)]
struct Qwen2MoeExperts {
    // Qwen3MoeConfig (transformers 5) saves it as `num_local_experts`.
    #[serde(alias = "num_local_experts")]
    num_experts: usize,
    num_experts_per_tok: usize,
    moe_intermediate_size: usize,
    #[serde(default)]
    shared_expert_intermediate_size: Option<usize>,
    #[serde(default)]
    norm_topk_prob: bool,
    #[serde(default = "one")]
    decoder_sparse_step: usize,
    #[serde(default)]
    mlp_only_layers: Vec<usize>,
}

fn twenty_eight() -> usize {
    28
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// Qwen2-MoE's names: LLaMA's, with the router, experts and shared expert under `mlp`.
pub const MOE_NAMES: WeightNames = WeightNames {
    router: "mlp.gate",
    experts: ExpertNames::PerExpert { prefix: "mlp.experts.{e}", gate: "gate_proj", up: "up_proj", down: "down_proj" },
    shared_expert: Some(SharedExpertNames {
        gate: "mlp.shared_expert.gate_proj",
        up: "mlp.shared_expert.up_proj",
        down: "mlp.shared_expert.down_proj",
        sigmoid_gate: "mlp.shared_expert_gate",
    }),
    ..crate::families::llama::NAMES
};
