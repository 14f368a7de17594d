//! Mixture-of-experts feed-forward: a learned router sends each token to a few of `num_experts`
//! feed-forward networks and sums their outputs weighted by the router's gate (the sparsely-gated
//! MoE layer of Shazeer et al. 2017, "Outrageously Large Neural Networks", eq. 1–4).
//!
//! Two routing rules cover the published models ([`RoutingRule`]):
//!
//! - **Top-k** (Shazeer et al. 2017; GLaM, Du et al. 2021, top-2; Mixtral, Jiang et al. 2024,
//!   top-2 renormalised; Qwen2-MoE and OLMoE, top-k not renormalised): `p = softmax(W_g x)`, the
//!   `k` largest `p_e` pick the experts, `y = Σ_{e ∈ topk} g_e E_e(x)` with `g_e = p_e` or
//!   `p_e / Σ_topk p`.
//! - **Top-1 with expert capacity** (Switch Transformer, Fedus et al. 2021, §2.1–2.2): each token
//!   goes to its arg-max expert with gate `g = max_e p_e`; within a group (one sequence, as
//!   transformers' `SwitchTransformersTop1Router`) an expert takes at most `capacity` tokens in
//!   sequence order and the tokens beyond it are dropped: their MoE output is zero, so the
//!   layer's residual passes them through unchanged.
//!
//! The router's softmax is always computed in f32 (Switch's "selective precision", §2.4; Mixtral's
//! `softmax(router_logits, dtype=torch.float)`), the logits themselves in the input dtype or in f32
//! ([`LogitsPrecision`]); the gates are rounded to the input dtype before they weight the expert
//! outputs, as transformers does. Router jitter (multiplicative input noise, Switch §2.4 and
//! Mixtral's `router_jitter_noise`) is a training-time regulariser only and is not implemented:
//! inference routing is deterministic.
//!
//! [`RouterOutput`] carries what training and monitoring need beside the output: the logits, the
//! fraction of tokens each expert took (`load`), the load-balancing loss — Mixtral's (transformers'
//! `load_balancing_loss_func` in `modeling_mixtral`) for top-k, Switch's (eq. 4–6, as in
//! `modeling_switch_transformers`) for top-1 with capacity — and the router z-loss (ST-MoE, Zoph
//! et al. 2022, eq. 5: the mean of `logsumexp(logits)²`). [`load_balancing_loss`] recomputes the
//! loss over several layers at once, the way transformers concatenates the layers' logits.
//!
//! - **Group-limited** routing (DeepSeek-AI 2024, "DeepSeek-V2", §2.2.2, device-limited
//!   routing; DeepSeek-V3 Technical Report, arXiv 2412.19437, §2.1.2 and eq. 12–16): the
//!   experts are split into `groups` equal groups, each token first keeps the `topk_groups` groups
//!   with the highest group score, then takes its top-`k` experts inside them; the gates are
//!   multiplied by a `scale` (`routed_scaling_factor`). V2's `group_limited_greedy` scores with a
//!   softmax and ranks a group by its best expert ([`RoutingRule::GroupLimitedGreedy`]; `greedy`
//!   is the one-group case); V3's `noaux_tc` scores with a sigmoid, adds a per-expert bias
//!   (`e_score_correction_bias`, [`Router::with_score_correction`]) for the choice only, ranks a
//!   group by the sum of its two best biased scores, and gates with the unbiased scores,
//!   renormalised or not ([`RoutingRule::NoAuxTc`]).
//!
//! An optional shared expert runs on every token beside the routed ones, scaled by
//! `sigmoid(w_s · x)` (Qwen2-MoE's `shared_expert` and `shared_expert_gate`).
//!
//! **Dispatch stays on the device.** [`MoeFeedForward::forward`] computes the routing, a stable
//! sort of the `(token, slot)` pairs by expert (one-hot, prefix sums, scatter) and the gathers on
//! the input's device; the only transfer to the host is the `[num_experts + 1]` vector of
//! per-expert token counts, because the size of each expert's batch is a shape and candle shapes
//! live on the host. Each active expert then runs one batched forward over its tokens
//! (`index_select`), and one `index_add` scatters the weighted outputs back.
//! [`MoeFeedForward::forward_reference`] is the plain token-by-token loop the tests hold the fast
//! path to.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use tcat_core::{Linear, prefix_sum};

use crate::{FeedForward, FeedForwardConfig};

/// How a router chooses experts from its softmax probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoutingRule {
    /// The `k` most probable experts, each weighted by its probability; with `renormalize` the
    /// `k` weights are divided by their sum (Mixtral: `k = 2`, renormalised; Qwen2-MoE / OLMoE:
    /// `norm_topk_prob = false`). No expert capacity: no token is dropped.
    TopK {
        /// Experts per token, `1..=num_experts`.
        k: usize,
        /// Divide the `k` gates by their sum.
        renormalize: bool,
    },
    /// Switch Transformer's top-1 routing with an expert capacity per group (one sequence):
    /// tokens beyond an expert's capacity, counted in sequence order, are dropped (zero output).
    /// The gate is the top-1 probability itself (not renormalised).
    Top1Capacity {
        /// How many tokens an expert takes per group.
        capacity: ExpertCapacity,
    },
    /// DeepSeek-V2's routing (`topk_method` `greedy` with `groups = topk_groups = 1`, or
    /// `group_limited_greedy`): softmax probabilities; the `topk_groups` groups with the
    /// highest best probability are kept, the others' probabilities set to zero; the `k` largest
    /// remaining probabilities pick the experts, and their gates are the probabilities times
    /// `scale`. Never renormalised.
    GroupLimitedGreedy {
        /// Experts per token.
        k: usize,
        /// Equal groups the experts are split into, in order (`n_group`).
        groups: usize,
        /// Groups kept per token (`topk_group`).
        topk_groups: usize,
        /// Factor on the gates (`routed_scaling_factor`).
        scale: f64,
    },
    /// DeepSeek-V3's routing (`noaux_tc`): sigmoid scores `s`; for the choice only, the router's
    /// score correction `b` is added (auxiliary-loss-free balancing); a group's score is the sum
    /// of its two largest `s + b`; the `topk_groups` best groups are kept and the `k` largest
    /// `s + b` inside them pick the experts. The gates are the uncorrected `s` of the chosen
    /// experts, divided by their sum (plus 1e-20) when `renormalize`, times `scale`.
    NoAuxTc {
        /// Experts per token.
        k: usize,
        /// Equal groups the experts are split into, in order (`n_group`).
        groups: usize,
        /// Groups kept per token (`topk_group`).
        topk_groups: usize,
        /// Whether the chosen gates are divided by their sum (`norm_topk_prob`).
        renormalize: bool,
        /// Factor on the gates (`routed_scaling_factor`).
        scale: f64,
    },
}

impl RoutingRule {
    /// Mixtral's rule: top-2, renormalised.
    pub const MIXTRAL: RoutingRule = RoutingRule::TopK { k: 2, renormalize: true };

    /// Experts chosen per token (1 for [`RoutingRule::Top1Capacity`]).
    pub fn experts_per_token(&self) -> usize {
        match self {
            RoutingRule::TopK { k, .. }
            | RoutingRule::GroupLimitedGreedy { k, .. }
            | RoutingRule::NoAuxTc { k, .. } => *k,
            RoutingRule::Top1Capacity { .. } => 1,
        }
    }

    /// Whether the scores are sigmoids rather than a softmax ([`RoutingRule::NoAuxTc`]).
    pub fn sigmoid_scores(&self) -> bool {
        matches!(self, RoutingRule::NoAuxTc { .. })
    }
}

/// The number of tokens one expert may take from one group under
/// [`RoutingRule::Top1Capacity`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExpertCapacity {
    /// A fixed count, transformers' `SwitchTransformersConfig.expert_capacity` (default 64): a
    /// token is kept when it is among the first `n` of its sequence routed to its expert.
    Fixed(usize),
    /// From the group size, as Switch's paper (eq. 3) and the released flaxformer code compute it:
    /// `max(round(factor · tokens_per_group / num_experts), min)`.
    Factor {
        /// The capacity factor (Switch evaluates with 1.0 or 2.0).
        factor: f64,
        /// The least capacity (flaxformer's `min_expert_capacity`).
        min: usize,
    },
}

impl ExpertCapacity {
    /// The capacity for groups of `tokens_per_group` tokens over `num_experts` experts.
    ///
    /// ```
    /// use tcat_blocks::ExpertCapacity;
    /// assert_eq!(ExpertCapacity::Fixed(64).for_group(10, 8), 64);
    /// assert_eq!(ExpertCapacity::Factor { factor: 1.25, min: 1 }.for_group(32, 8), 5);
    /// assert_eq!(ExpertCapacity::Factor { factor: 1.0, min: 4 }.for_group(8, 8), 4);
    /// ```
    pub fn for_group(&self, tokens_per_group: usize, num_experts: usize) -> usize {
        match *self {
            ExpertCapacity::Fixed(n) => n,
            ExpertCapacity::Factor { factor, min } => {
                let auto = (factor * tokens_per_group as f64 / num_experts.max(1) as f64).round();
                // `as` saturates: a negative or NaN factor gives 0, then `min`.
                (auto as usize).max(min)
            }
        }
    }
}

/// The dtype the router's logits are computed in (its softmax is always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitsPrecision {
    /// The input's dtype, as Mixtral and Qwen2-MoE (the gate is an ordinary `nn.Linear`).
    #[default]
    Input,
    /// f32: input and gate weight are widened before the product, as Switch's
    /// `router_dtype = "float32"`.
    F32,
}

/// The router: a linear gate over the hidden state, a softmax over the experts in f32, and a
/// [`RoutingRule`].
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_blocks::{Router, RoutingRule};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// // Expert 1 reads the first feature, expert 2 the second, experts 0 and 3 nothing.
/// let w = Tensor::new(&[[0f32, 0.], [4., 0.], [0., 4.], [0., 0.]], &dev).unwrap();
/// let router = Router::new(Linear::new(w, None), RoutingRule::TopK { k: 1, renormalize: true }).unwrap();
/// let x = Tensor::new(&[[[1f32, 0.], [0., 1.]]], &dev).unwrap(); // [batch 1, seq 2, hidden 2]
/// let routing = router.route(&x).unwrap();
/// assert_eq!(routing.experts.to_vec3::<u32>().unwrap(), [[[1], [2]]]);
/// assert_eq!(routing.gates.to_vec3::<f32>().unwrap(), [[[1.], [1.]]]);
/// ```
#[derive(Debug, Clone)]
pub struct Router {
    gate: Linear,
    rule: RoutingRule,
    precision: LogitsPrecision,
    /// [`RoutingRule::NoAuxTc`]'s per-expert score correction, f32 `[num_experts]`.
    correction: Option<Tensor>,
}

/// One routing decision for `[.., seq]` tokens (leading dimensions as the input's).
#[derive(Debug, Clone)]
pub struct Routing {
    /// Router logits `[.., seq, num_experts]` in the [`LogitsPrecision`]'s dtype.
    pub logits: Tensor,
    /// Softmax of the logits (sigmoid under [`RoutingRule::NoAuxTc`]), f32 `[.., seq,
    /// num_experts]`.
    pub probs: Tensor,
    /// Chosen experts, u32 `[.., seq, k]`; a token dropped by the capacity holds `num_experts`.
    pub experts: Tensor,
    /// Gates, f32 `[.., seq, k]` (zero for a dropped token).
    pub gates: Tensor,
}

impl Router {
    /// A router from its gate `[num_experts, hidden]` (with an optional bias, as Switch's
    /// `router_bias`) and rule. Errors when the rule does not fit the number of experts.
    pub fn new(gate: Linear, rule: RoutingRule) -> Result<Self> {
        let num_experts = gate.out_features();
        if num_experts == 0 {
            candle_core::bail!("router: the gate has no experts (out_features 0)");
        }
        match rule {
            RoutingRule::TopK { k, .. } if k == 0 || k > num_experts => {
                candle_core::bail!("router: top-k expected k in 1..={num_experts} (num_experts), found {k}")
            }
            RoutingRule::Top1Capacity { capacity: ExpertCapacity::Factor { factor, .. } }
                if !(factor.is_finite() && factor > 0.) =>
            {
                candle_core::bail!("router: capacity factor expected a positive finite number, found {factor}")
            }
            RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, scale }
            | RoutingRule::NoAuxTc { k, groups, topk_groups, scale, .. } => {
                let sigmoid = rule.sigmoid_scores();
                if groups == 0 || !num_experts.is_multiple_of(groups) {
                    candle_core::bail!(
                        "router: {num_experts} experts do not split into {groups} equal groups (n_group)"
                    )
                }
                if topk_groups == 0 || topk_groups > groups {
                    candle_core::bail!("router: topk_group expected in 1..={groups} (n_group), found {topk_groups}")
                }
                let reachable = topk_groups * (num_experts / groups);
                if k == 0 || k > reachable {
                    candle_core::bail!(
                        "router: expected k in 1..={reachable} (the experts of topk_group = {topk_groups} groups), found {k}"
                    )
                }
                if sigmoid && num_experts / groups < 2 {
                    candle_core::bail!(
                        "router: noaux_tc scores a group by its two best experts; groups of {} expert",
                        num_experts / groups
                    )
                }
                if !scale.is_finite() {
                    candle_core::bail!("router: routed_scaling_factor expected a finite number, found {scale}")
                }
            }
            _ => {}
        }
        Ok(Self { gate, rule, precision: LogitsPrecision::default(), correction: None })
    }

    /// Sets [`RoutingRule::NoAuxTc`]'s score correction `[num_experts]` (DeepSeek-V3's
    /// `e_score_correction_bias`), added to the sigmoid scores to choose experts, not to weight
    /// them. Without one the correction is zero.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::{Router, RoutingRule};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let gate = Linear::new(Tensor::new(&[[1f32], [0.]], &dev).unwrap(), None); // logits 1 and 0
    /// let rule = RoutingRule::NoAuxTc { k: 1, groups: 1, topk_groups: 1, renormalize: false, scale: 1.0 };
    /// let router = Router::new(gate, rule).unwrap().with_score_correction(Tensor::new(&[0f32, 1.], &dev).unwrap()).unwrap();
    /// let routing = router.route(&Tensor::new(&[[[1f32]]], &dev).unwrap()).unwrap();
    /// // Expert 1 is chosen by σ(0) + 1 > σ(1), and gated by its own σ(0) = 0.5.
    /// assert_eq!(routing.experts.flatten_all().unwrap().to_vec1::<u32>().unwrap(), [1]);
    /// assert_eq!(routing.gates.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.5]);
    /// ```
    pub fn with_score_correction(mut self, correction: Tensor) -> Result<Self> {
        if correction.dims() != [self.num_experts()] {
            candle_core::bail!(
                "router: score correction expected [{}], found {:?}",
                self.num_experts(),
                correction.dims()
            );
        }
        self.correction = Some(correction.to_dtype(DType::F32)?);
        Ok(self)
    }

    /// The score correction, if any.
    pub fn score_correction(&self) -> Option<&Tensor> {
        self.correction.as_ref()
    }

    /// Sets the dtype the logits are computed in (default [`LogitsPrecision::Input`]).
    pub fn with_precision(mut self, precision: LogitsPrecision) -> Self {
        self.precision = precision;
        self
    }

    /// The number of experts (the gate's output features).
    pub fn num_experts(&self) -> usize {
        self.gate.out_features()
    }

    /// The routing rule.
    pub fn rule(&self) -> RoutingRule {
        self.rule
    }

    /// The gate projection.
    pub fn gate(&self) -> &Linear {
        &self.gate
    }

    /// The logits' precision.
    pub fn precision(&self) -> LogitsPrecision {
        self.precision
    }

    /// The router logits for `x` `[.., hidden]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let hidden = x.dims().last().copied().unwrap_or(0);
        if x.rank() < 2 || hidden != self.gate.in_features() {
            candle_core::bail!("router: input expected [.., seq, {}], found {:?}", self.gate.in_features(), x.dims());
        }
        match self.precision {
            LogitsPrecision::Input => self.gate.forward(x),
            LogitsPrecision::F32 if x.dtype() == DType::F32 => self.gate.forward(x),
            LogitsPrecision::F32 => widened(&self.gate)?.forward(&x.to_dtype(DType::F32)?),
        }
    }

    /// Routes the tokens of `x` `[.., seq, hidden]`; under [`RoutingRule::Top1Capacity`] each
    /// `[seq]` row is one group. Computed on `x`'s device without host transfers.
    pub fn route(&self, x: &Tensor) -> Result<Routing> {
        let logits = self.logits(x)?;
        let dims = logits.dims().to_vec();
        let (seq, num_experts) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let tokens = dims.iter().rev().skip(1).product::<usize>();
        if tokens == 0 {
            candle_core::bail!("router: input expected at least one token, found shape {:?}", x.dims());
        }
        let flat = logits.reshape((tokens, num_experts))?.to_dtype(DType::F32)?;
        let probs = if self.rule.sigmoid_scores() {
            candle_nn::ops::sigmoid(&flat)?
        } else {
            candle_nn::ops::softmax_last_dim(&flat)?
        };
        let (experts, gates) = match self.rule {
            RoutingRule::TopK { k, renormalize } => {
                let experts = probs.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?;
                let gates = probs.gather(&experts, 1)?;
                let gates = if renormalize { gates.broadcast_div(&gates.sum_keepdim(1)?)? } else { gates };
                (experts, gates)
            }
            RoutingRule::Top1Capacity { capacity } => {
                // Switch picks from the probabilities cast back to the input dtype.
                let rounded = probs.to_dtype(x.dtype())?.to_dtype(DType::F32)?;
                let experts = rounded.argmax_keepdim(1)?;
                let gates = rounded.max_keepdim(1)?;
                let capacity = capacity.for_group(seq, num_experts);
                let kept = within_capacity(&experts, tokens / seq.max(1), seq, num_experts, capacity)?;
                let dropped = Tensor::full(num_experts as u32, (tokens, 1), probs.device())?;
                (kept.where_cond(&experts, &dropped)?, (gates * kept.to_dtype(DType::F32)?)?)
            }
            RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, scale } => {
                let per_group = num_experts / groups;
                let group_scores = probs.reshape((tokens, groups, per_group))?.max(2)?;
                let keep = group_mask(&group_scores, topk_groups, per_group)?; // [tokens, E] u8
                let masked = keep.where_cond(&probs, &probs.zeros_like()?)?;
                let experts = masked.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?;
                (experts.clone(), (masked.gather(&experts, 1)? * scale)?)
            }
            RoutingRule::NoAuxTc { k, groups, topk_groups, renormalize, scale } => {
                let per_group = num_experts / groups;
                let choice = match &self.correction {
                    Some(c) => probs.broadcast_add(&c.to_device(probs.device())?.unsqueeze(0)?)?,
                    None => probs.clone(),
                };
                let top2 = choice.reshape((tokens, groups, per_group))?.sort_last_dim(false)?.0.narrow(2, 0, 2)?;
                let keep = group_mask(&top2.sum(2)?, topk_groups, per_group)?;
                let masked =
                    keep.where_cond(&choice, &Tensor::full(f32::NEG_INFINITY, choice.shape(), choice.device())?)?;
                let experts = masked.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?;
                let gates = probs.gather(&experts, 1)?;
                let gates = if renormalize { gates.broadcast_div(&(gates.sum_keepdim(1)? + 1e-20)?)? } else { gates };
                (experts, (gates * scale)?)
            }
        };
        let mut shape = dims.clone();
        let k = self.rule.experts_per_token();
        *shape.last_mut().expect("rank checked") = k;
        Ok(Routing {
            logits,
            probs: probs.reshape(dims.as_slice())?,
            experts: experts.reshape(shape.as_slice())?,
            gates: gates.reshape(shape.as_slice())?,
        })
    }
}

/// `[tokens, groups · per_group]` u8: whether each expert's group is among the `topk_groups`
/// highest of `group_scores` `[tokens, groups]`.
fn group_mask(group_scores: &Tensor, topk_groups: usize, per_group: usize) -> Result<Tensor> {
    let (tokens, groups) = group_scores.dims2()?;
    let chosen = group_scores.arg_sort_last_dim(false)?.narrow(1, 0, topk_groups)?.contiguous()?; // [t, tg]
    let ids = Tensor::arange(0u32, groups as u32, group_scores.device())?;
    let kept = chosen.unsqueeze(2)?.broadcast_eq(&ids.reshape((1, 1, groups))?)?.to_dtype(DType::F32)?.sum(1)?; // [t, g]
    kept.unsqueeze(2)?.broadcast_as((tokens, groups, per_group))?.reshape((tokens, groups * per_group))?.ne(0f32)
}

/// The gate with its weight (and bias) in f32; a quantized gate stays as it is (its kernels
/// already compute in f32).
fn widened(gate: &Linear) -> Result<Linear> {
    match gate.weight() {
        Some(w) => {
            let bias = gate.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
            Ok(Linear::new(w.to_dtype(DType::F32)?, bias))
        }
        None => Ok(gate.clone()),
    }
}

/// `[tokens, 1]` u8: whether each token's top-1 expert still has room, counting the tokens of its
/// group (`groups × seq`) in order (transformers' `cumsum(one_hot) <= expert_capacity`).
fn within_capacity(experts: &Tensor, groups: usize, seq: usize, num_experts: usize, capacity: usize) -> Result<Tensor> {
    let device = experts.device();
    let one_hot = one_hot_f32(&experts.squeeze(1)?, num_experts, device)?; // [tokens, E]
    let by_expert = one_hot.reshape((groups, seq, num_experts))?.transpose(1, 2)?.contiguous()?;
    let position = prefix_sum(&by_expert.reshape((groups * num_experts, seq))?)?
        .reshape((groups, num_experts, seq))?
        .transpose(1, 2)?
        .reshape((groups * seq, num_experts))?;
    let own = (position * one_hot)?.sum_keepdim(1)?; // 1-based place in the expert's queue
    own.le(capacity as f64)
}

/// `[n, classes]` f32 one-hot rows of the u32 `ids` `[n]`.
fn one_hot_f32(ids: &Tensor, classes: usize, device: &Device) -> Result<Tensor> {
    let classes = Tensor::arange(0u32, classes as u32, device)?;
    ids.unsqueeze(1)?.broadcast_eq(&classes.unsqueeze(0)?)?.to_dtype(DType::F32)
}

/// What a routed forward reports beside its output: routing, load and auxiliary losses.
#[derive(Debug, Clone)]
pub struct RouterOutput {
    /// The routing rule the losses follow.
    pub rule: RoutingRule,
    /// Router logits `[.., seq, num_experts]`.
    pub logits: Tensor,
    /// Router probabilities, f32 `[.., seq, num_experts]`.
    pub probs: Tensor,
    /// Chosen experts, u32 `[.., seq, k]` (`num_experts` for a dropped token).
    pub experts: Tensor,
    /// Gates, f32 `[.., seq, k]`.
    pub gates: Tensor,
    /// f32 `[num_experts]`: the fraction of tokens each expert processed (sums to `k` under
    /// top-k, to the kept fraction under a capacity).
    pub load: Tensor,
    /// f32 scalar: this call's load-balancing loss ([`load_balancing_loss`] over this layer).
    pub aux_loss: Tensor,
    /// f32 scalar: the router z-loss, `mean(logsumexp(logits)²)` (Zoph et al. 2022, eq. 5;
    /// transformers' `router_z_loss_func`).
    pub z_loss: Tensor,
}

impl RouterOutput {
    fn new(routing: Routing, rule: RoutingRule, num_experts: usize) -> Result<Self> {
        let tokens = routing.probs.elem_count() / num_experts;
        let device = routing.probs.device().clone();
        let processed = one_hot_f32(&routing.experts.flatten_all()?, num_experts, &device)?;
        let load = (processed.sum(0)? / tokens as f64)?;
        let z = routing.logits.to_dtype(DType::F32)?.log_sum_exp(D::Minus1)?;
        let z_loss = z.sqr()?.mean_all()?;
        let mut out = Self {
            rule,
            logits: routing.logits,
            probs: routing.probs,
            experts: routing.experts,
            gates: routing.gates,
            load,
            aux_loss: Tensor::new(0f32, &device)?,
            z_loss,
        };
        out.aux_loss = load_balancing_loss(std::slice::from_ref(&out))?;
        Ok(out)
    }

    /// The number of experts.
    pub fn num_experts(&self) -> usize {
        self.probs.dims().last().copied().unwrap_or(0)
    }
}

/// The load-balancing loss over one or more layers' [`RouterOutput`]s (all of one rule, with the
/// same leading shape), computed as transformers computes it from the layers' concatenated logits:
///
/// - [`RoutingRule::TopK`] (`modeling_mixtral.load_balancing_loss_func`, no attention mask):
///   `E · Σ_e f_e · P_e`, `f_e` the fraction of tokens (over all layers) whose top-k includes
///   `e`, `P_e` the mean probability of `e`.
/// - [`RoutingRule::Top1Capacity`] (`modeling_switch_transformers.load_balancing_loss_func`,
///   Switch eq. 4–6): `E² · mean_{g,e} f_{g,e} · P_{g,e}` over groups `g` (sequences); `f`
///   counts each token's argmax expert before the capacity (transformers 5 takes the argmax of
///   the raw router logits, so a dropped token counts for the expert it chose).
///
/// Returns an f32 scalar on the layers' device.
pub fn load_balancing_loss(layers: &[RouterOutput]) -> Result<Tensor> {
    load_balancing_loss_inner(layers, None)
}

/// [`load_balancing_loss`] over the real tokens of a padded batch only, as transformers'
/// Mixtral computes it when given the attention mask: `keep` `[batch, seq]` (non-zero for real
/// tokens) weights each token's expert counts and probabilities, and the means divide by the
/// number of real tokens. Top-k routing only (transformers' Switch loss takes no mask).
pub fn masked_load_balancing_loss(layers: &[RouterOutput], keep: &Tensor) -> Result<Tensor> {
    load_balancing_loss_inner(layers, Some(keep))
}

fn load_balancing_loss_inner(layers: &[RouterOutput], keep: Option<&Tensor>) -> Result<Tensor> {
    let Some(first) = layers.first() else { candle_core::bail!("load_balancing_loss: no router outputs") };
    let num_experts = first.num_experts();
    let device = first.probs.device().clone();
    if let Some((i, l)) =
        layers.iter().enumerate().find(|(_, l)| l.rule != first.rule || l.probs.dims() != first.probs.dims())
    {
        candle_core::bail!(
            "load_balancing_loss: layer {i} has rule {:?} and probs {:?}, expected {:?} and {:?} (layer 0)",
            l.rule,
            l.probs.dims(),
            first.rule,
            first.probs.dims()
        );
    }
    let dims = first.probs.dims();
    let seq = dims[dims.len() - 2];
    let groups = first.probs.elem_count() / (seq * num_experts).max(1);
    let e = num_experts as f64;
    match first.rule {
        RoutingRule::TopK { .. } | RoutingRule::GroupLimitedGreedy { .. } | RoutingRule::NoAuxTc { .. } => {
            let tokens_per_layer = groups * seq;
            // One weight per token: 1, or the mask (real tokens only).
            let weights = match keep {
                None => Tensor::ones(tokens_per_layer, DType::F32, &device)?,
                Some(keep) => {
                    if keep.elem_count() != tokens_per_layer {
                        candle_core::bail!(
                            "load-balancing mask has {} entries for {tokens_per_layer} routed tokens",
                            keep.elem_count()
                        );
                    }
                    keep.flatten_all()?.ne(0u32)?.to_dtype(DType::F32)?
                }
            };
            let mut counts = Tensor::zeros(num_experts, DType::F32, &device)?;
            let mut probs = Tensor::zeros(num_experts, DType::F32, &device)?;
            for l in layers {
                let k = l.experts.dim(D::Minus1)?;
                let one_hot = one_hot_f32(&l.experts.flatten_all()?, num_experts, &device)?
                    .reshape((tokens_per_layer, k, num_experts))?
                    .sum(1)?;
                counts = (counts + one_hot.broadcast_mul(&weights.unsqueeze(1)?)?.sum(0)?)?;
                let p = l.probs.reshape((tokens_per_layer, num_experts))?.to_dtype(DType::F32)?;
                probs = (probs + p.broadcast_mul(&weights.unsqueeze(1)?)?.sum(0)?)?;
            }
            let tokens = (weights.sum_all()? * layers.len() as f64)?;
            (counts.broadcast_div(&tokens)? * probs.broadcast_div(&tokens)?)?.sum_all()? * e
        }
        RoutingRule::Top1Capacity { .. } if keep.is_some() => {
            candle_core::bail!("the masked load-balancing loss is defined for top-k routing (Mixtral) only")
        }
        RoutingRule::Top1Capacity { .. } => {
            let mut counts = Tensor::zeros((groups, num_experts), DType::F32, &device)?;
            let mut probs = Tensor::zeros((groups, num_experts), DType::F32, &device)?;
            for l in layers {
                // transformers 5: the argmax of the raw router logits, before the capacity.
                let ids = l.logits.to_dtype(DType::F32)?.argmax(D::Minus1)?.flatten_all()?;
                let one_hot = one_hot_f32(&ids, num_experts, &device)?.reshape((groups, seq, num_experts))?;
                counts = (counts + one_hot.sum(1)?)?;
                probs = (probs + l.probs.reshape((groups, seq, num_experts))?.sum(1)?)?;
            }
            let tokens = (seq * layers.len()) as f64;
            ((counts / tokens)? * (probs / tokens)?)?.mean_all()? * (e * e)
        }
    }
}

/// A shared expert that sees every token (Qwen2-MoE), optionally scaled by a sigmoid gate.
#[derive(Debug, Clone)]
struct SharedExpert {
    expert: FeedForward,
    gate: Option<Linear>,
}

/// A mixture-of-experts feed-forward block: a [`Router`] over `num_experts` [`FeedForward`]
/// experts (plain or gated), and an optional shared expert.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_blocks::{Activation, FeedForward, MoeFeedForward, Router, RoutingRule};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let lin = |o: usize, i: usize| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
/// let experts = (0..4).map(|_| FeedForward::gated(lin(16, 8), lin(16, 8), lin(8, 16), Activation::Silu)).collect();
/// let moe = MoeFeedForward::new(Router::new(lin(4, 8), RoutingRule::MIXTRAL).unwrap(), experts).unwrap();
/// let x = Tensor::randn(0f32, 1., (2, 5, 8), &dev).unwrap();
/// let (y, stats) = moe.forward_with_router(&x).unwrap();
/// assert_eq!(y.dims(), &[2, 5, 8]);
/// let load = stats.load.sum_all().unwrap().to_scalar::<f32>().unwrap();
/// assert!((load - 2.0).abs() < 1e-5); // two experts a token
/// let reference = moe.forward_reference(&x).unwrap();
/// let diff: f32 = (y - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
/// assert!(diff < 1e-4); // float rounding only: a different expert choice would differ by far more
/// ```
#[derive(Debug, Clone)]
pub struct MoeFeedForward {
    router: Router,
    experts: Vec<FeedForward>,
    shared: Option<SharedExpert>,
}

/// Largest number of `(token, expert)` pairs one call routes: the dispatch counts in f32, exact
/// below 2²⁴.
const MAX_ASSIGNMENTS: usize = 1 << 24;

impl MoeFeedForward {
    /// A block from its router and one expert per router output. Errors when the counts differ.
    pub fn new(router: Router, experts: Vec<FeedForward>) -> Result<Self> {
        if experts.len() != router.num_experts() {
            candle_core::bail!(
                "moe: the router has {} experts (gate out_features), found {} expert networks",
                router.num_experts(),
                experts.len()
            );
        }
        Ok(Self { router, experts, shared: None })
    }

    /// Adds a shared expert run on every token, its output scaled by `sigmoid(gate(x))` when a
    /// `[1, hidden]` gate is given (Qwen2-MoE's `shared_expert` and `shared_expert_gate`).
    pub fn with_shared_expert(mut self, expert: FeedForward, gate: Option<Linear>) -> Result<Self> {
        if let Some(g) =
            gate.as_ref().filter(|g| g.out_features() != 1 || g.in_features() != self.router.gate.in_features())
        {
            candle_core::bail!(
                "moe: shared expert gate expected [1, {}], found [{}, {}]",
                self.router.gate.in_features(),
                g.out_features(),
                g.in_features()
            );
        }
        self.shared = Some(SharedExpert { expert, gate });
        Ok(self)
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The experts, in router order.
    pub fn experts(&self) -> &[FeedForward] {
        &self.experts
    }

    /// The number of experts.
    pub fn num_experts(&self) -> usize {
        self.experts.len()
    }

    /// Applies the block to `x` `[.., seq, hidden]` (rank 2 or more; under a capacity each
    /// `[seq]` row is one group).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_router(x)?.0)
    }

    /// Applies the block and returns the router's statistics and losses beside the output.
    pub fn forward_with_router(&self, x: &Tensor) -> Result<(Tensor, RouterOutput)> {
        let routing = self.router.route(x)?;
        let dims = x.dims().to_vec();
        let hidden = dims[dims.len() - 1];
        let tokens = x.elem_count() / hidden.max(1);
        let x2 = x.reshape((tokens, hidden))?;
        let k = self.router.rule.experts_per_token();
        let num_experts = self.num_experts();
        if tokens * k >= MAX_ASSIGNMENTS {
            candle_core::bail!(
                "moe: {tokens} tokens × {k} experts exceed the {MAX_ASSIGNMENTS} routed pairs of one call"
            );
        }
        let routed =
            self.dispatch(&x2, &routing.experts.reshape((tokens, k))?, &routing.gates.reshape((tokens, k))?)?;
        let out = match &self.shared {
            Some(shared) => (routed + shared_output(shared, &x2)?)?,
            None => routed,
        };
        let stats = RouterOutput::new(routing, self.router.rule, num_experts)?;
        Ok((out.reshape(dims)?, stats))
    }

    /// Groups the `(token, slot)` pairs by expert on the device, runs each active expert once
    /// over its tokens and sums the gated outputs back per token.
    fn dispatch(&self, x: &Tensor, experts: &Tensor, gates: &Tensor) -> Result<Tensor> {
        let device = x.device();
        let (tokens, k) = experts.dims2()?;
        let n = tokens * k;
        let num_experts = self.num_experts();
        let hidden = x.dim(1)?;
        let ids = experts.flatten_all()?;
        // One-hot over the experts and a last "dropped" class.
        let one_hot = one_hot_f32(&ids, num_experts + 1, device)?; // [n, E + 1]
        let counts = one_hot.sum(0)?; // [E + 1]
        // Stable sort by expert: destination = the expert's offset + the pair's rank within it.
        let rank = (prefix_sum(&one_hot.t()?.contiguous()?)?.t()? * &one_hot)?.sum(1)?; // 1-based
        let offsets = (prefix_sum(&counts.unsqueeze(0)?)?.squeeze(0)? - &counts)?; // exclusive
        let dest = ((rank - 1.)? + one_hot.matmul(&offsets.unsqueeze(1)?)?.squeeze(1)?)?.to_dtype(DType::U32)?;
        let order = Tensor::arange(0u32, n as u32, device)?;
        let perm = Tensor::zeros(n, DType::U32, device)?.scatter(&dest, &order, 0)?; // sorted slot → pair
        let token_of_pair = Tensor::arange(0u32, tokens as u32, device)?
            .unsqueeze(1)?
            .broadcast_as((tokens, k))?
            .contiguous()?
            .flatten_all()?;
        let sorted_tokens = token_of_pair.index_select(&perm, 0)?;
        let sorted_gates = gates.flatten_all()?.index_select(&perm, 0)?;
        // The one host transfer: each expert's batch size is a shape.
        let counts: Vec<usize> = counts.to_vec1::<f32>()?.into_iter().map(|c| c as usize).collect();
        let kept = n - counts[num_experts];
        let mut out = Tensor::zeros((tokens, hidden), x.dtype(), device)?;
        if kept == 0 {
            return Ok(out);
        }
        let mut outputs = Vec::with_capacity(num_experts);
        let mut start = 0;
        for (expert, &count) in self.experts.iter().zip(&counts) {
            if count > 0 {
                let index = sorted_tokens.narrow(0, start, count)?;
                outputs.push(expert.forward(&x.index_select(&index, 0)?)?);
            }
            start += count;
        }
        let gated = Tensor::cat(&outputs, 0)?
            .broadcast_mul(&sorted_gates.narrow(0, 0, kept)?.to_dtype(x.dtype())?.unsqueeze(1)?)?;
        out = out.index_add(&sorted_tokens.narrow(0, 0, kept)?, &gated, 0)?;
        Ok(out)
    }

    /// The plain reference: token by token on the host, softmax, the rule's choice (with the
    /// capacity counted per sequence), each chosen expert run on the token alone and the gated
    /// outputs summed. Slow; for tests and for reading.
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.len() < 2 {
            candle_core::bail!("moe: input expected [.., seq, hidden], found {dims:?}");
        }
        let (seq, hidden) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let tokens = x.elem_count() / hidden.max(1);
        let num_experts = self.num_experts();
        let logits: Vec<Vec<f32>> =
            self.router.logits(x)?.to_dtype(DType::F32)?.reshape((tokens, num_experts))?.to_vec2()?;
        let x2 = x.reshape((tokens, hidden))?;
        let mut taken = vec![0usize; num_experts];
        let mut rows = Vec::with_capacity(tokens);
        for (t, logits) in logits.iter().enumerate() {
            if t % seq.max(1) == 0 {
                taken.iter_mut().for_each(|c| *c = 0); // a new group
            }
            let probs: Vec<f64> = if self.router.rule.sigmoid_scores() {
                logits.iter().map(|&l| 1.0 / (1.0 + (-l as f64).exp())).collect()
            } else {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
                let sum: f64 = exp.iter().sum();
                exp.iter().map(|e| e / sum).collect()
            };
            let chosen: Vec<(usize, f64)> = match self.router.rule {
                RoutingRule::TopK { k, renormalize } => {
                    let mut order: Vec<usize> = (0..num_experts).collect();
                    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                    let top: Vec<(usize, f64)> = order[..k].iter().map(|&e| (e, probs[e])).collect();
                    let total: f64 = top.iter().map(|(_, p)| p).sum();
                    top.into_iter().map(|(e, p)| (e, if renormalize { p / total } else { p })).collect()
                }
                RoutingRule::Top1Capacity { capacity } => {
                    // Switch picks from the probabilities rounded to the input dtype; the first
                    // of equal ones wins (torch.argmax).
                    let f32s: Vec<f32> = probs.iter().map(|&p| p as f32).collect();
                    let rounded: Vec<f32> =
                        Tensor::new(f32s, x.device())?.to_dtype(x.dtype())?.to_dtype(DType::F32)?.to_vec1()?;
                    let best = (0..num_experts).fold(0, |b, e| if rounded[e] > rounded[b] { e } else { b });
                    taken[best] += 1;
                    let kept = taken[best] <= capacity.for_group(seq, num_experts);
                    if kept { vec![(best, rounded[best] as f64)] } else { vec![] }
                }
                RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, scale } => {
                    // A group's score is its best probability; the others' experts count as 0.
                    let per_group = num_experts / groups;
                    let best_of =
                        |g: usize| probs[g * per_group..(g + 1) * per_group].iter().copied().fold(0., f64::max);
                    let kept = top_indices(&(0..groups).map(best_of).collect::<Vec<_>>(), topk_groups);
                    let masked: Vec<f64> =
                        (0..num_experts).map(|e| if kept.contains(&(e / per_group)) { probs[e] } else { 0. }).collect();
                    top_indices(&masked, k).into_iter().map(|e| (e, masked[e] * scale)).collect()
                }
                RoutingRule::NoAuxTc { k, groups, topk_groups, renormalize, scale } => {
                    let per_group = num_experts / groups;
                    let correction: Vec<f32> = match &self.router.correction {
                        Some(c) => c.to_vec1()?,
                        None => vec![0.; num_experts],
                    };
                    let choice: Vec<f64> = (0..num_experts).map(|e| (probs[e] as f32 + correction[e]) as f64).collect();
                    let group_score = |g: usize| {
                        let members = &choice[g * per_group..(g + 1) * per_group];
                        top_indices(members, 2).iter().map(|&i| members[i]).sum::<f64>()
                    };
                    let kept = top_indices(&(0..groups).map(group_score).collect::<Vec<_>>(), topk_groups);
                    let masked: Vec<f64> = (0..num_experts)
                        .map(|e| if kept.contains(&(e / per_group)) { choice[e] } else { f64::NEG_INFINITY })
                        .collect();
                    let chosen = top_indices(&masked, k);
                    let total: f64 = chosen.iter().map(|&e| probs[e]).sum::<f64>() + 1e-20;
                    chosen.into_iter().map(|e| (e, probs[e] / if renormalize { total } else { 1. } * scale)).collect()
                }
            };
            let token = x2.narrow(0, t, 1)?;
            let mut y = Tensor::zeros((1, hidden), DType::F32, x.device())?;
            for (e, gate) in chosen {
                y = (y + (self.experts[e].forward(&token)?.to_dtype(DType::F32)? * gate)?)?;
            }
            if let Some(shared) = &self.shared {
                y = (y + shared_output(shared, &token)?.to_dtype(DType::F32)?)?;
            }
            rows.push(y);
        }
        Tensor::cat(&rows, 0)?.to_dtype(x.dtype())?.reshape(dims)
    }
}

/// The indices of the `k` largest `values`, largest first (the earlier of equal ones first).
fn top_indices(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    order
}

/// The shared expert's output for `x` `[tokens, hidden]`.
fn shared_output(shared: &SharedExpert, x: &Tensor) -> Result<Tensor> {
    let y = shared.expert.forward(x)?;
    match &shared.gate {
        Some(g) => y.broadcast_mul(&candle_nn::ops::sigmoid(&g.forward(x)?)?),
        None => Ok(y),
    }
}

/// [`MoeFeedForward::forward`] as a candle [`Module`].
impl Module for MoeFeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        MoeFeedForward::forward(self, x)
    }
}

/// Weight names of a [`MoeFeedForward`] under its `VarBuilder` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoeNames {
    /// The router's gate (Mixtral `gate`, Switch `router.classifier`).
    pub router: String,
    /// The experts' prefix; expert `i` is `{experts}.{i}` (Mixtral `experts`).
    pub experts: String,
    /// The shared expert (Qwen2-MoE `shared_expert`).
    pub shared_expert: String,
    /// The shared expert's gate (Qwen2-MoE `shared_expert_gate`).
    pub shared_expert_gate: String,
}

impl Default for MoeNames {
    /// Mixtral's and Qwen2-MoE's names: `gate`, `experts`, `shared_expert`, `shared_expert_gate`.
    fn default() -> Self {
        Self {
            router: "gate".into(),
            experts: "experts".into(),
            shared_expert: "shared_expert".into(),
            shared_expert_gate: "shared_expert_gate".into(),
        }
    }
}

/// A mixture-of-experts block's configuration (defaults: Mixtral's top-2 renormalised, logits in
/// the input dtype, no router bias, no shared expert, Mixtral's names).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::VarBuilder;
/// use tcat_blocks::{Activation, FeedForwardConfig, FeedForwardKind, FeedForwardNames, MoeConfig, MoeFeedForward};
/// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
/// let expert = FeedForwardConfig::new(16, 32)
///     .with_kind(FeedForwardKind::Gated)
///     .with_activation(Activation::Silu)
///     .with_names(FeedForwardNames { gate: "w1".into(), up: "w3".into(), down: "w2".into() });
/// let moe = MoeFeedForward::load(vb.pp("block_sparse_moe"), &MoeConfig::new(expert, 8)).unwrap();
/// assert_eq!(moe.num_experts(), 8);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Every expert's network.
    pub expert: FeedForwardConfig,
    /// The number of experts.
    pub num_experts: usize,
    /// The routing rule (default [`RoutingRule::MIXTRAL`]).
    pub rule: RoutingRule,
    /// Whether the router's gate has a bias (Switch's `router_bias`; default false).
    pub router_bias: bool,
    /// The logits' dtype (default [`LogitsPrecision::Input`]).
    pub precision: LogitsPrecision,
    /// A shared expert's network, if any (default none).
    pub shared_expert: Option<FeedForwardConfig>,
    /// Whether the shared expert has a sigmoid gate (Qwen2-MoE; default true when there is one).
    pub shared_expert_gate: bool,
    /// Weight names (default [`MoeNames::default`]).
    pub names: MoeNames,
}

impl MoeConfig {
    /// `num_experts` experts configured as `expert`, with the defaults.
    pub fn new(expert: FeedForwardConfig, num_experts: usize) -> Self {
        Self {
            expert,
            num_experts,
            rule: RoutingRule::MIXTRAL,
            router_bias: false,
            precision: LogitsPrecision::Input,
            shared_expert: None,
            shared_expert_gate: true,
            names: MoeNames::default(),
        }
    }

    /// Sets the routing rule.
    pub fn with_rule(mut self, rule: RoutingRule) -> Self {
        self.rule = rule;
        self
    }

    /// Sets whether the router's gate has a bias.
    pub fn with_router_bias(mut self, bias: bool) -> Self {
        self.router_bias = bias;
        self
    }

    /// Sets the logits' precision.
    pub fn with_precision(mut self, precision: LogitsPrecision) -> Self {
        self.precision = precision;
        self
    }

    /// Adds a shared expert, with or without its sigmoid gate.
    pub fn with_shared_expert(mut self, expert: FeedForwardConfig, gated: bool) -> Self {
        self.shared_expert = Some(expert);
        self.shared_expert_gate = gated;
        self
    }

    /// Sets the weight names.
    pub fn with_names(mut self, names: MoeNames) -> Self {
        self.names = names;
        self
    }
}

impl MoeFeedForward {
    /// Loads the router and experts named by `config.names` under `vb`.
    pub fn load(vb: VarBuilder, config: &MoeConfig) -> Result<Self> {
        let hidden = config.expert.hidden_size;
        let names = &config.names;
        let gate = Linear::load(
            vb.pp(&names.router),
            hidden,
            config.num_experts,
            config.router_bias,
            config.expert.weight_layout,
        )?;
        let router = Router::new(gate, config.rule)?.with_precision(config.precision);
        let experts = (0..config.num_experts)
            .map(|i| FeedForward::load(vb.pp(&names.experts).pp(i.to_string()), &config.expert))
            .collect::<Result<Vec<_>>>()?;
        let moe = Self::new(router, experts)?;
        match &config.shared_expert {
            None => Ok(moe),
            Some(shared) => {
                let expert = FeedForward::load(vb.pp(&names.shared_expert), shared)?;
                let gate = if config.shared_expert_gate {
                    Some(Linear::load(vb.pp(&names.shared_expert_gate), hidden, 1, false, shared.weight_layout)?)
                } else {
                    None
                };
                moe.with_shared_expert(expert, gate)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, Norm, Residual, TransformerLayer};
    use tcat_attention::{AttentionMask, MultiHeadAttention, QkvProjection};

    const HIDDEN: usize = 8;

    fn lin(o: usize, i: usize, bias: bool, dev: &Device) -> Linear {
        let w = Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap();
        Linear::new(w, bias.then(|| Tensor::randn(0f32, 0.1, o, dev).unwrap()))
    }

    /// Plain (GELU) and gated (SwiGLU) experts alternating.
    fn experts(n: usize, dev: &Device) -> Vec<FeedForward> {
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    FeedForward::gated(
                        lin(12, HIDDEN, false, dev),
                        lin(12, HIDDEN, false, dev),
                        lin(HIDDEN, 12, false, dev),
                        Activation::Silu,
                    )
                } else {
                    FeedForward::new(lin(16, HIDDEN, true, dev), lin(HIDDEN, 16, true, dev), Activation::Gelu)
                }
            })
            .collect()
    }

    fn moe(num_experts: usize, rule: RoutingRule, shared: bool, dev: &Device) -> MoeFeedForward {
        // A large router scale makes clear choices (no near-ties between the fast and reference paths).
        let gate = Linear::new(Tensor::randn(0f32, 2., (num_experts, HIDDEN), dev).unwrap(), None);
        let m = MoeFeedForward::new(Router::new(gate, rule).unwrap(), experts(num_experts, dev)).unwrap();
        if shared {
            m.with_shared_expert(experts(1, dev).remove(0), Some(lin(1, HIDDEN, false, dev))).unwrap()
        } else {
            m
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
        d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    fn rules() -> Vec<RoutingRule> {
        let mut rules = vec![];
        for k in [1, 2] {
            for renormalize in [true, false] {
                rules.push(RoutingRule::TopK { k, renormalize });
            }
        }
        rules.push(RoutingRule::Top1Capacity { capacity: ExpertCapacity::Fixed(2) });
        rules.push(RoutingRule::Top1Capacity { capacity: ExpertCapacity::Factor { factor: 1.0, min: 1 } });
        rules.push(RoutingRule::GroupLimitedGreedy { k: 2, groups: 1, topk_groups: 1, scale: 1.0 });
        rules.push(RoutingRule::GroupLimitedGreedy { k: 2, groups: 2, topk_groups: 1, scale: 1.5 });
        rules.push(RoutingRule::NoAuxTc { k: 2, groups: 2, topk_groups: 1, renormalize: true, scale: 2.5 });
        rules.push(RoutingRule::NoAuxTc { k: 3, groups: 2, topk_groups: 2, renormalize: false, scale: 1.0 });
        rules
    }

    /// Router logits `[1, 1, experts]` equal to `logits` (identity gate over a one-hot input).
    fn route_logits(rule: RoutingRule, logits: &[f32], correction: Option<&[f32]>) -> Routing {
        let dev = Device::Cpu;
        let n = logits.len();
        let gate = Linear::new(Tensor::new(logits, &dev).unwrap().reshape((n, 1)).unwrap(), None);
        let mut router = Router::new(gate, rule).unwrap();
        if let Some(c) = correction {
            router = router.with_score_correction(Tensor::new(c, &dev).unwrap()).unwrap();
        }
        router.route(&Tensor::ones((1, 1, 1), DType::F32, &dev).unwrap()).unwrap()
    }

    fn chosen(r: &Routing) -> (Vec<u32>, Vec<f32>) {
        (r.experts.flatten_all().unwrap().to_vec1().unwrap(), r.gates.flatten_all().unwrap().to_vec1().unwrap())
    }

    #[test]
    fn group_limited_greedy_keeps_the_groups_of_the_best_experts() {
        // Groups {0,1}, {2,3}, {4,5}: best probabilities in groups 0 and 2 (experts 0 and 5), but
        // expert 3 beats expert 1; with one group kept only group 0 (expert 0, then expert 1).
        let logits = [3f32, 0.5, 0., 1., -1., 2.];
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let p = |e: usize| logits[e].exp() / z;
        let rule = RoutingRule::GroupLimitedGreedy { k: 2, groups: 3, topk_groups: 1, scale: 2.0 };
        let (experts, gates) = chosen(&route_logits(rule, &logits, None));
        assert_eq!(experts, [0, 1]);
        assert!((gates[0] - 2. * p(0)).abs() < 1e-6 && (gates[1] - 2. * p(1)).abs() < 1e-6, "{gates:?}");
        // Two groups kept: 0 and 2 (best 0.47 and 0.17 beat group 1's 0.06); top-2 is 0 and 5.
        let rule = RoutingRule::GroupLimitedGreedy { k: 2, groups: 3, topk_groups: 2, scale: 1.0 };
        assert_eq!(chosen(&route_logits(rule, &logits, None)).0, [0, 5]);
    }

    #[test]
    fn noaux_tc_chooses_with_the_correction_and_gates_without_it() {
        let sigmoid = |l: f32| 1. / (1. + (-l).exp());
        // Groups {0,1}, {2,3}. Uncorrected group scores (sum of the top two): group 0 wins; the
        // correction lifts expert 3 so group 1 wins, and inside it expert 3 then expert 2.
        let logits = [1f32, 0.5, 0., -0.5];
        let correction = [0f32, 0., 0., 2.];
        let rule = RoutingRule::NoAuxTc { k: 2, groups: 2, topk_groups: 1, renormalize: false, scale: 1.5 };
        let (experts, gates) = chosen(&route_logits(rule, &logits, None));
        assert_eq!(experts, [0, 1]);
        assert!((gates[0] - 1.5 * sigmoid(1.)).abs() < 1e-6, "{gates:?}");
        let (experts, gates) = chosen(&route_logits(rule, &logits, Some(&correction)));
        assert_eq!(experts, [3, 2]);
        assert!((gates[0] - 1.5 * sigmoid(-0.5)).abs() < 1e-6 && (gates[1] - 1.5 * sigmoid(0.)).abs() < 1e-6);
        // Renormalised: the two gates sum to the scale.
        let rule = RoutingRule::NoAuxTc { k: 2, groups: 2, topk_groups: 1, renormalize: true, scale: 1.5 };
        let (_, gates) = chosen(&route_logits(rule, &logits, Some(&correction)));
        assert!((gates[0] + gates[1] - 1.5).abs() < 1e-6, "{gates:?}");
    }

    #[test]
    fn noaux_tc_fast_equals_reference_with_a_correction() {
        let dev = Device::Cpu;
        let rule = RoutingRule::NoAuxTc { k: 2, groups: 4, topk_groups: 2, renormalize: true, scale: 2.5 };
        let gate = Linear::new(Tensor::randn(0f32, 2., (8, HIDDEN), &dev).unwrap(), None);
        let correction = Tensor::randn(0f32, 0.5, 8, &dev).unwrap();
        let router = Router::new(gate, rule).unwrap().with_score_correction(correction).unwrap();
        let m = MoeFeedForward::new(router, experts(8, &dev)).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 9, HIDDEN), &dev).unwrap();
        let d = max_diff(&m.forward(&x).unwrap(), &m.forward_reference(&x).unwrap());
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn group_rules_that_do_not_fit_are_refused() {
        let gate = || Linear::new(Tensor::zeros((6, HIDDEN), DType::F32, &Device::Cpu).unwrap(), None);
        let err = |rule| Router::new(gate(), rule).unwrap_err().to_string();
        let glg = |k, groups, topk_groups| RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, scale: 1. };
        assert!(err(glg(2, 4, 1)).contains("6 experts do not split into 4 equal groups"));
        assert!(err(glg(2, 3, 4)).contains("topk_group expected in 1..=3"));
        assert!(err(glg(3, 3, 1)).contains("expected k in 1..=2"));
        let tc = RoutingRule::NoAuxTc { k: 1, groups: 6, topk_groups: 1, renormalize: true, scale: 1. };
        assert!(err(tc).contains("two best experts"));
    }

    #[test]
    fn fast_dispatch_equals_the_token_loop() {
        let dev = Device::Cpu;
        let mut dropped_somewhere = false;
        for num_experts in [4, 8] {
            for rule in rules() {
                for (batch, seq) in [(1, 1), (1, 7), (2, 5), (3, 33), (1, 33), (2, 16)] {
                    let shared = seq % 2 == 1;
                    let m = moe(num_experts, rule, shared, &dev);
                    let x = Tensor::randn(0f32, 1., (batch, seq, HIDDEN), &dev).unwrap();
                    let (fast, stats) = m.forward_with_router(&x).unwrap();
                    let reference = m.forward_reference(&x).unwrap();
                    let d = max_diff(&fast, &reference);
                    assert!(d < 1e-5, "{num_experts} experts, {rule:?}, [{batch}, {seq}]: {d}");
                    let ids: Vec<u32> = stats.experts.flatten_all().unwrap().to_vec1().unwrap();
                    dropped_somewhere |= ids.contains(&(num_experts as u32));
                    // Rank 2 input: one group, same as the batch of one.
                    if batch == 1 {
                        let flat = m.forward(&x.squeeze(0).unwrap()).unwrap();
                        assert!(max_diff(&flat, &fast.squeeze(0).unwrap()) < 1e-6);
                    }
                }
            }
        }
        assert!(dropped_somewhere, "the capacity cases must drop tokens");
    }

    #[test]
    fn dropped_tokens_get_zero_output() {
        let dev = Device::Cpu;
        // Every token prefers expert 2: with capacity 3, tokens 4.. of each sequence are dropped.
        let w = vec![0f32; 4 * HIDDEN];
        let gate = Linear::new(
            Tensor::from_vec(w, (4, HIDDEN), &dev).unwrap(),
            Some(Tensor::new(&[0f32, 0., 5., 0.], &dev).unwrap()),
        );
        let rule = RoutingRule::Top1Capacity { capacity: ExpertCapacity::Fixed(3) };
        let m = MoeFeedForward::new(Router::new(gate, rule).unwrap(), experts(4, &dev)).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 6, HIDDEN), &dev).unwrap();
        let (y, stats) = m.forward_with_router(&x).unwrap();
        assert_eq!(
            stats.experts.flatten_all().unwrap().to_vec1::<u32>().unwrap(),
            [2, 2, 2, 4, 4, 4, 2, 2, 2, 4, 4, 4]
        );
        let dropped = y.narrow(1, 3, 3).unwrap();
        assert_eq!(max_diff(&dropped, &dropped.zeros_like().unwrap()), 0.0);
        let kept = y.narrow(1, 0, 3).unwrap();
        assert!(max_diff(&kept, &kept.zeros_like().unwrap()) > 0.0);
        assert_eq!(stats.load.to_vec1::<f32>().unwrap(), [0., 0., 0.5, 0.]);
    }

    /// Equal probabilities: the lowest expert index wins, as torch's `argmax` and `topk` on the CPU.
    #[test]
    fn ties_go_to_the_first_expert() {
        let dev = Device::Cpu;
        let gate = || Linear::new(Tensor::zeros((4, HIDDEN), DType::F32, &dev).unwrap(), None);
        let x = Tensor::randn(0f32, 1., (1, 3, HIDDEN), &dev).unwrap();
        let switch = Router::new(gate(), RoutingRule::Top1Capacity { capacity: ExpertCapacity::Fixed(8) }).unwrap();
        assert_eq!(switch.route(&x).unwrap().experts.flatten_all().unwrap().to_vec1::<u32>().unwrap(), [0, 0, 0]);
        let top2 = Router::new(gate(), RoutingRule::MIXTRAL).unwrap();
        assert_eq!(
            top2.route(&x).unwrap().experts.flatten_all().unwrap().to_vec1::<u32>().unwrap(),
            [0, 1, 0, 1, 0, 1]
        );
    }

    /// `[tokens][experts]` softmax in f64 of the logits.
    fn softmax64(logits: &Tensor) -> Vec<Vec<f64>> {
        let e = logits.dims().last().copied().unwrap();
        let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32).unwrap().reshape(((), e)).unwrap().to_vec2().unwrap();
        rows.iter()
            .map(|r| {
                let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let ex: Vec<f64> = r.iter().map(|&l| (l as f64 - m).exp()).collect();
                let s: f64 = ex.iter().sum();
                ex.iter().map(|v| v / s).collect()
            })
            .collect()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_scalar::<f32>().unwrap() as f64
    }

    #[test]
    fn auxiliary_losses_follow_the_formulas() {
        let dev = Device::Cpu;
        for num_experts in [4, 8] {
            // The group rules' loss is top-k's over their scores (not a formula of their own).
            let plain = |r: &RoutingRule| matches!(r, RoutingRule::TopK { .. } | RoutingRule::Top1Capacity { .. });
            for rule in rules().into_iter().filter(plain) {
                let (batch, seq) = (3, 11);
                let m = moe(num_experts, rule, false, &dev);
                let x = Tensor::randn(0f32, 1., (batch, seq, HIDDEN), &dev).unwrap();
                let (_, out) = m.forward_with_router(&x).unwrap();
                let probs = softmax64(&out.logits);
                let ne = num_experts as f64;
                // z-loss: mean over tokens of logsumexp².
                let lse: Vec<f64> = out
                    .logits
                    .reshape(((), num_experts))
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap()
                    .iter()
                    .map(|r| r.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln())
                    .collect();
                let z = lse.iter().map(|l| l * l).sum::<f64>() / lse.len() as f64;
                assert!((scalar(&out.z_loss) - z).abs() < 1e-4 * z.max(1.), "{z}");
                let want = match rule {
                    RoutingRule::TopK { k, .. } => {
                        // E · Σ_e (tokens choosing e / T) · mean p_e, top-k from the f64 probs.
                        let t = probs.len() as f64;
                        let mut f = vec![0f64; num_experts];
                        let mut p = vec![0f64; num_experts];
                        for row in &probs {
                            let mut order: Vec<usize> = (0..num_experts).collect();
                            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                            order[..k].iter().for_each(|&e| f[e] += 1. / t);
                            row.iter().enumerate().for_each(|(e, v)| p[e] += v / t);
                        }
                        let load: Vec<f32> = out.load.to_vec1().unwrap();
                        for e in 0..num_experts {
                            assert!((load[e] as f64 - f[e]).abs() < 1e-6);
                        }
                        ne * (0..num_experts).map(|e| f[e] * p[e]).sum::<f64>()
                    }
                    RoutingRule::GroupLimitedGreedy { .. } | RoutingRule::NoAuxTc { .. } => unreachable!("filtered"),
                    RoutingRule::Top1Capacity { .. } => {
                        // E² · mean over groups and experts of f_{g,e} · P_{g,e}, f counting each
                        // token's argmax expert whether or not the capacity drops it.
                        let mut total = 0f64;
                        for g in 0..batch {
                            let mut f = vec![0f64; num_experts];
                            let mut p = vec![0f64; num_experts];
                            for row in &probs[g * seq..(g + 1) * seq] {
                                let best = (0..num_experts).fold(0, |b, e| if row[e] > row[b] { e } else { b });
                                f[best] += 1. / seq as f64;
                                row.iter().enumerate().for_each(|(e, v)| p[e] += v / seq as f64);
                            }
                            total += (0..num_experts).map(|e| f[e] * p[e]).sum::<f64>();
                        }
                        ne * ne * total / (batch as f64 * ne)
                    }
                };
                let got = scalar(&out.aux_loss);
                assert!((got - want).abs() < 1e-5 * want.max(1.), "{num_experts} experts, {rule:?}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn loss_over_layers_is_the_loss_of_their_concatenation() {
        let dev = Device::Cpu;
        // Top-k: the layers' tokens pooled, as transformers concatenates the layers' logits.
        let m = moe(4, RoutingRule::MIXTRAL, false, &dev);
        let (a, b) = (
            Tensor::randn(0f32, 1., (2, 5, HIDDEN), &dev).unwrap(),
            Tensor::randn(0f32, 1., (2, 5, HIDDEN), &dev).unwrap(),
        );
        let (_, la) = m.forward_with_router(&a).unwrap();
        let (_, lb) = m.forward_with_router(&b).unwrap();
        let both = Tensor::cat(&[&a, &b], 0).unwrap();
        let (_, lab) = m.forward_with_router(&both).unwrap();
        let two = load_balancing_loss(&[la.clone(), lb.clone()]).unwrap();
        assert!((scalar(&two) - scalar(&lab.aux_loss)).abs() < 1e-6);
        // Mismatched rules are refused by name.
        let switch = moe(4, RoutingRule::Top1Capacity { capacity: ExpertCapacity::Fixed(64) }, false, &dev);
        let (_, ls) = switch.forward_with_router(&a).unwrap();
        let err = load_balancing_loss(&[la, ls]).unwrap_err().to_string();
        assert!(err.contains("layer 1"), "{err}");
        // Switch: the layers' sequences concatenated along seq, per group (no capacity reached).
        let (_, sa) = switch.forward_with_router(&a).unwrap();
        let (_, sb) = switch.forward_with_router(&b).unwrap();
        let (_, sab) = switch.forward_with_router(&Tensor::cat(&[&a, &b], 1).unwrap()).unwrap();
        let two = load_balancing_loss(&[sa, sb]).unwrap();
        assert!((scalar(&two) - scalar(&sab.aux_loss)).abs() < 1e-6);
    }

    #[test]
    fn f32_routing_of_half_precision_inputs() {
        let dev = Device::Cpu;
        for dtype in [DType::F16, DType::BF16] {
            for rule in [RoutingRule::MIXTRAL, RoutingRule::Top1Capacity { capacity: ExpertCapacity::Fixed(3) }] {
                for precision in [LogitsPrecision::F32, LogitsPrecision::Input] {
                    let m32 = moe(8, rule, true, &dev);
                    let cast = |f: &Linear| {
                        Linear::new(
                            f.weight().unwrap().to_dtype(dtype).unwrap(),
                            f.bias().map(|b| b.to_dtype(dtype).unwrap()),
                        )
                    };
                    let router = Router::new(cast(m32.router().gate()), rule).unwrap().with_precision(precision);
                    let experts = (0..8)
                        .map(|i| {
                            let l = |o, i_| lin(o, i_, false, &dev);
                            let _ = i;
                            FeedForward::gated(
                                cast(&l(12, HIDDEN)),
                                cast(&l(12, HIDDEN)),
                                cast(&l(HIDDEN, 12)),
                                Activation::Silu,
                            )
                        })
                        .collect();
                    let m = MoeFeedForward::new(router, experts).unwrap();
                    let x = Tensor::randn(0f32, 1., (2, 9, HIDDEN), &dev).unwrap().to_dtype(dtype).unwrap();
                    let (y, out) = m.forward_with_router(&x).unwrap();
                    assert_eq!(y.dtype(), dtype);
                    assert_eq!(out.probs.dtype(), DType::F32);
                    let logits_dtype = if precision == LogitsPrecision::F32 { DType::F32 } else { dtype };
                    assert_eq!(out.logits.dtype(), logits_dtype);
                    let reference = m.forward_reference(&x).unwrap();
                    let scale = max_diff(&reference, &reference.zeros_like().unwrap());
                    let d = max_diff(&y, &reference);
                    assert!(d <= 1e-2 * scale.max(1.), "{dtype:?} {rule:?} {precision:?}: {d} (scale {scale})");
                }
            }
        }
    }

    #[test]
    fn errors_name_what_was_expected() {
        let dev = Device::Cpu;
        let gate = || lin(4, HIDDEN, false, &dev);
        let err = Router::new(gate(), RoutingRule::TopK { k: 5, renormalize: true }).unwrap_err().to_string();
        assert!(err.contains("1..=4") && err.contains("found 5"), "{err}");
        let err = Router::new(gate(), RoutingRule::TopK { k: 0, renormalize: true }).unwrap_err().to_string();
        assert!(err.contains("found 0"), "{err}");
        let bad = RoutingRule::Top1Capacity { capacity: ExpertCapacity::Factor { factor: -1., min: 0 } };
        assert!(Router::new(gate(), bad).unwrap_err().to_string().contains("capacity factor"));
        let router = Router::new(gate(), RoutingRule::MIXTRAL).unwrap();
        let err = MoeFeedForward::new(router.clone(), experts(3, &dev)).unwrap_err().to_string();
        assert!(err.contains("4 experts") && err.contains("found 3"), "{err}");
        let m = MoeFeedForward::new(router, experts(4, &dev)).unwrap();
        let err = m.forward(&Tensor::zeros((1, 2, 5), DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(err.contains("[.., seq, 8]") && err.contains("[1, 2, 5]"), "{err}");
        assert!(m.forward(&Tensor::zeros(8, DType::F32, &dev).unwrap()).is_err());
        let err = m.forward(&Tensor::zeros((2, 0, 8), DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(err.contains("at least one token") && err.contains("[2, 0, 8]"), "{err}");
        let err =
            m.clone().with_shared_expert(experts(1, &dev).remove(0), Some(lin(2, HIDDEN, false, &dev))).unwrap_err();
        assert!(err.to_string().contains("[1, 8]"), "{err}");
    }

    #[test]
    fn loaded_names_and_shared_expert() {
        use std::collections::HashMap;
        let dev = Device::Cpu;
        let expert = FeedForwardConfig::new(HIDDEN, 12)
            .with_kind(crate::FeedForwardKind::Gated)
            .with_activation(Activation::Silu)
            .with_names(crate::FeedForwardNames {
                gate: "gate_proj".into(),
                up: "up_proj".into(),
                down: "down_proj".into(),
            });
        let config = MoeConfig::new(expert.clone(), 4)
            .with_rule(RoutingRule::TopK { k: 2, renormalize: false })
            .with_shared_expert(expert, true);
        let mut tensors = HashMap::new();
        let mut put = |name: String, dims: (usize, usize)| {
            tensors.insert(name, Tensor::randn(0f32, 0.3, dims, &dev).unwrap());
        };
        put("gate.weight".into(), (4, HIDDEN));
        for p in (0..4).map(|i| format!("experts.{i}")).chain(["shared_expert".to_string()]) {
            put(format!("{p}.gate_proj.weight"), (12, HIDDEN));
            put(format!("{p}.up_proj.weight"), (12, HIDDEN));
            put(format!("{p}.down_proj.weight"), (HIDDEN, 12));
        }
        put("shared_expert_gate.weight".into(), (1, HIDDEN));
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let m = MoeFeedForward::load(vb, &config).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, HIDDEN), &dev).unwrap();
        assert!(max_diff(&m.forward(&x).unwrap(), &m.forward_reference(&x).unwrap()) < 1e-5);
        // The shared expert is in the output: the same block without it differs.
        let bare = MoeFeedForward::new(m.router().clone(), m.experts().to_vec()).unwrap();
        assert!(max_diff(&m.forward(&x).unwrap(), &bare.forward(&x).unwrap()) > 1e-3);
    }

    /// One expert with top-1 routing has gate 1: the MoE layer equals the dense layer.
    #[test]
    fn layer_with_one_expert_equals_the_dense_layer() {
        let dev = Device::Cpu;
        let norm = || {
            Norm::layer_norm(
                Tensor::randn(1f32, 0.1, HIDDEN, &dev).unwrap(),
                Tensor::randn(0f32, 0.1, HIDDEN, &dev).unwrap(),
                1e-5,
            )
        };
        let qkv = QkvProjection::Fused(lin(3 * HIDDEN, HIDDEN, true, &dev));
        let attention = MultiHeadAttention::new(qkv, lin(HIDDEN, HIDDEN, true, &dev), 2, 2, HIDDEN / 2).unwrap();
        let ffn = experts(1, &dev).remove(0);
        let router = Router::new(lin(1, HIDDEN, true, &dev), RoutingRule::TopK { k: 1, renormalize: false }).unwrap();
        let moe = MoeFeedForward::new(router, vec![ffn.clone()]).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 5, HIDDEN), &dev).unwrap();
        let mask = AttentionMask::causal();
        for residual in [Residual::PreNorm, Residual::PostNorm, Residual::Parallel] {
            let (n1, n2) = (norm(), norm());
            let dense = TransformerLayer::new(attention.clone(), n1.clone(), ffn.clone(), n2.clone(), residual);
            let routed = TransformerLayer::with_experts(attention.clone(), n1, moe.clone(), n2, residual);
            let want = dense.forward(&x, &mask, None, None).unwrap();
            let (got, router) = routed.forward_with_router(&x, &mask, None, None).unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "{residual:?}");
            assert_eq!(router.unwrap().load.to_vec1::<f32>().unwrap(), [1.0]);
            assert!(dense.forward_with_router(&x, &mask, None, None).unwrap().1.is_none());
            assert!(routed.parts().1.as_experts().is_some() && dense.parts().1.as_dense().is_some());
            // Rebuilding from parts (as around another attention) keeps the experts.
            let (an, f, fnorm, r) = routed.parts();
            let rebuilt = TransformerLayer::new(attention.clone(), an.clone(), f.clone(), fnorm.clone(), r);
            assert!(max_diff(&rebuilt.forward(&x, &mask, None, None).unwrap(), &got) < 1e-6);
        }
    }
}
