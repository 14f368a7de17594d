//! Feed-forward as data: the position-wise network (Vaswani et al. 2017, §3.3), its gated
//! variants (Shazeer 2020, "GLU Variants Improve Transformer"), and sparse mixtures of experts
//! (Shazeer et al. 2017; Fedus et al. 2021, Switch; Du et al. 2021, GLaM; Jiang et al. 2024,
//! Mixtral).

use serde::{Deserialize, Serialize};

/// A feed-forward activation, named as Hugging Face configs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivationKind {
    /// Exact GELU (`gelu`).
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU's tanh approximation (`gelu_new`).
    #[serde(rename = "gelu_new")]
    GeluTanh,
    /// `x · σ(1.702 x)` (`quick_gelu`).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// `max(0, x)` (`relu`).
    #[serde(rename = "relu")]
    Relu,
    /// `x · σ(x)` (`silu`).
    #[serde(rename = "silu")]
    Silu,
    /// `tanh(x)` (`tanh`).
    #[serde(rename = "tanh")]
    Tanh,
}

impl ActivationKind {
    /// The Hugging Face name.
    pub fn name(self) -> &'static str {
        match self {
            ActivationKind::Gelu => "gelu",
            ActivationKind::GeluTanh => "gelu_new",
            ActivationKind::QuickGelu => "quick_gelu",
            ActivationKind::Relu => "relu",
            ActivationKind::Silu => "silu",
            ActivationKind::Tanh => "tanh",
        }
    }
}

impl std::str::FromStr for ActivationKind {
    type Err = String;

    /// Parses a Hugging Face activation name (with its aliases).
    ///
    /// ```
    /// use tcat_spec::ActivationKind;
    /// assert_eq!("gelu_pytorch_tanh".parse::<ActivationKind>().unwrap(), ActivationKind::GeluTanh);
    /// assert!("swish2".parse::<ActivationKind>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Self, String> {
        Ok(match name {
            // `gelu_python` is transformers' erf GELU written out; `gelu_accurate` its tanh
            // approximation with the same constants as `gelu_new`.
            "gelu" | "gelu_python" => ActivationKind::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_accurate" => ActivationKind::GeluTanh,
            "quick_gelu" => ActivationKind::QuickGelu,
            "relu" => ActivationKind::Relu,
            "silu" | "swish" => ActivationKind::Silu,
            "tanh" => ActivationKind::Tanh,
            other => {
                return Err(format!(
                    "unknown activation `{other}`; expected gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, quick_gelu, relu, silu, swish or tanh"
                ));
            }
        })
    }
}

/// Plain or gated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedForwardKind {
    /// `down(act(up(x)))`.
    Plain,
    /// `down(act(gate(x)) ⊙ up(x))`: SwiGLU with SiLU, GeGLU with GELU.
    Gated,
}

/// How a router picks experts for a token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum RoutingRule {
    /// The `k` highest softmax gates; `renormalize` rescales the chosen gates to sum to 1
    /// (Mixtral: yes; Qwen2-MoE and OLMoE: no).
    TopK {
        /// Experts per token.
        k: usize,
        /// Whether the chosen gates are rescaled to sum to 1.
        renormalize: bool,
    },
    /// Switch routing: the top-1 expert, each expert taking at most `capacity_factor · tokens /
    /// experts` tokens, the rest passing through unchanged (Fedus et al. 2021, §2.2).
    Top1Capacity {
        /// Capacity factor.
        capacity_factor: f64,
    },
    /// Switch routing with a fixed capacity: each expert takes at most the first `capacity`
    /// tokens of each sequence routed to it (transformers' `SwitchTransformersConfig.expert_capacity`);
    /// the others get no expert output.
    Top1FixedCapacity {
        /// Tokens per expert and sequence.
        capacity: usize,
    },
    /// DeepSeek-V2's routing (DeepSeek-AI 2024, §2.2.2): softmax gates; only the `topk_groups`
    /// groups (of `groups` equal ones) with the best top expert compete; the `k` best gates, times
    /// `scale`, never renormalised (`topk_method` `group_limited_greedy`; `greedy` is one group).
    GroupLimitedGreedy {
        /// Experts per token (`num_experts_per_tok`).
        k: usize,
        /// Groups (`n_group`).
        groups: usize,
        /// Groups kept per token (`topk_group`).
        topk_groups: usize,
        /// `routed_scaling_factor`.
        scale: f64,
    },
    /// DeepSeek-V3's routing (DeepSeek-V3 Technical Report, arXiv 2412.19437, §2.1.2,
    /// `noaux_tc`): sigmoid scores plus a stored per-expert correction
    /// (`e_score_correction_bias`) choose — groups ranked by the sum of their two best — and
    /// the uncorrected scores, renormalised when asked, times `scale`, gate.
    NoAuxTc {
        /// Experts per token (`num_experts_per_tok`).
        k: usize,
        /// Groups (`n_group`).
        groups: usize,
        /// Groups kept per token (`topk_group`).
        topk_groups: usize,
        /// Whether the chosen gates are divided by their sum (`norm_topk_prob`).
        renormalize: bool,
        /// `routed_scaling_factor`.
        scale: f64,
    },
}

/// A router's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RouterSpec {
    /// How experts are chosen.
    pub rule: RoutingRule,
    /// Whether the gate has a bias.
    pub bias: bool,
    /// Whether routing runs in f32 whatever the model dtype (Switch).
    pub float32: bool,
    /// Multiplicative jitter noise in training (0 at inference).
    pub jitter: f64,
}

/// A sparse mixture-of-experts feed-forward.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MoeSpec {
    /// Experts per MoE layer.
    pub num_experts: usize,
    /// Plain or gated experts (GLaM's experts are plain beside gated dense layers; Mixtral's
    /// are gated).
    pub expert_kind: FeedForwardKind,
    /// Inner width of one expert.
    pub expert_inner: usize,
    /// The router.
    pub router: RouterSpec,
    /// Layer `i` is sparse when `i % every == offset` (1, 0: every layer; 2, 1: every other
    /// layer starting with the second, as Switch and GLaM).
    pub every: usize,
    /// See [`every`](Self::every).
    pub offset: usize,
    /// An always-active shared expert beside the routed ones (Qwen2-MoE), if any.
    pub shared_expert: Option<SharedExpertSpec>,
    /// Layers below this index stay dense whatever [`every`](Self::every) says (DeepSeek's
    /// `first_k_dense_replace`).
    #[serde(default)]
    pub first_dense: usize,
}

/// An expert every token passes through, added to the routed experts' output (Qwen2-MoE's
/// `shared_expert`, DeepSeekMoE's shared experts). Its kind is the routed experts'.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SharedExpertSpec {
    /// Inner width.
    pub inner: usize,
    /// Whether its output is scaled by `sigmoid(g · x)` with a learned `[1, hidden]` gate
    /// (Qwen2-MoE's `shared_expert_gate`).
    pub sigmoid_gate: bool,
}

impl MoeSpec {
    /// Experts a token passes through.
    pub fn active_experts(&self) -> usize {
        match self.router.rule {
            RoutingRule::TopK { k, .. }
            | RoutingRule::GroupLimitedGreedy { k, .. }
            | RoutingRule::NoAuxTc { k, .. } => k,
            RoutingRule::Top1Capacity { .. } | RoutingRule::Top1FixedCapacity { .. } => 1,
        }
    }

    /// Whether layer `layer` is sparse.
    pub fn is_sparse(&self, layer: usize) -> bool {
        layer >= self.first_dense && self.every > 0 && layer % self.every == self.offset
    }
}

/// A tower's feed-forward network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeedForwardSpec {
    /// Plain or gated.
    pub kind: FeedForwardKind,
    /// Inner width of the dense network.
    pub inner: usize,
    /// The activation.
    pub activation: ActivationKind,
    /// Whether the projections have biases.
    pub bias: bool,
    /// The mixture of experts replacing the dense network in some layers, if any.
    #[serde(default)]
    pub experts: Option<MoeSpec>,
}

impl FeedForwardSpec {
    /// A plain network with biases.
    pub fn plain(inner: usize, activation: ActivationKind) -> Self {
        Self { kind: FeedForwardKind::Plain, inner, activation, bias: true, experts: None }
    }

    /// A gated network without biases (LLaMA, PaLM).
    pub fn gated(inner: usize, activation: ActivationKind) -> Self {
        Self { kind: FeedForwardKind::Gated, inner, activation, bias: false, experts: None }
    }
}
