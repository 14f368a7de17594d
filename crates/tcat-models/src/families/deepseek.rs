//! DeepSeek-V2 (DeepSeek-AI 2024, "DeepSeek-V2: A Strong, Economical, and Efficient
//! Mixture-of-Experts Language Model", arXiv 2405.04434) and DeepSeek-V3 (DeepSeek-AI 2024,
//! "DeepSeek-V3 Technical Report", arXiv 2412.19437): a pre-RMSNorm decoder whose attention is
//! multi-head latent attention (§2.1: keys and values from one `kv_lora_rank` latent per token,
//! queries directly or from a `q_lora_rank` latent, rotary positions on a decoupled
//! `qk_rope_head_dim` part), and whose feed-forward is DeepSeekMoE (§2.2) after
//! `first_k_dense_replace` dense layers: `n_shared_experts` always-active experts (one network
//! `n_shared_experts × moe_intermediate_size` wide) plus `num_experts_per_tok` of
//! `n_routed_experts` routed ones, gated times `routed_scaling_factor`.
//!
//! V2 routes with softmax scores, greedily or group-limited (`topk_method`
//! `group_limited_greedy`: the `topk_group` best of `n_group` groups by their best expert); V3
//! with sigmoid scores and a stored correction that only chooses (`noaux_tc`, groups scored by
//! their two best), gates renormalised when `norm_topk_prob`. Rotary pairs are interleaved
//! (V2's complex rotation; V3's `rope_interleave`, whose de-interleaving permutes queries and keys
//! alike and so leaves every score unchanged), or half-split when V3's `rope_interleave` is
//! false. Hugging Face `model_type` `deepseek_v2` and `deepseek_v3`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::{
    ArchSpec, AttentionSpec, FeedForwardKind, FeedForwardSpec, HeadSpec, LatentSpec, Masking, MoeSpec, NormSpec,
    PositionSpec, RopeScalingSpec, RotaryLayoutSpec, RouterSpec, RoutingRule, ScaleRule, SharedExpertSpec,
    SpecialTokens, TowerSpec,
};

use crate::ConfigFile;
use crate::build::{ExpertNames, QkvNames, SharedExpertNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;
use crate::rope_config::rotary_spec;

/// The fields of a DeepSeek-V2 or V3 `config.json` that shape the network; `None` takes the
/// version's transformers default.
#[derive(Debug, Clone, Deserialize)]
struct DeepseekConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default = "silu")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    eos_token_id: TokenIds,
    #[serde(default)]
    pad_token_id: Option<u32>,
    kv_lora_rank: usize,
    #[serde(default)]
    q_lora_rank: Option<usize>,
    qk_nope_head_dim: usize,
    qk_rope_head_dim: usize,
    v_head_dim: usize,
    #[serde(alias = "num_local_experts")]
    n_routed_experts: usize,
    #[serde(default)]
    n_shared_experts: Option<usize>,
    num_experts_per_tok: usize,
    moe_intermediate_size: usize,
    #[serde(default)]
    first_k_dense_replace: Option<usize>,
    #[serde(default)]
    moe_layer_freq: Option<usize>,
    #[serde(default)]
    routed_scaling_factor: Option<f64>,
    #[serde(default)]
    topk_method: Option<String>,
    #[serde(default)]
    scoring_func: Option<String>,
    #[serde(default)]
    n_group: Option<usize>,
    #[serde(default)]
    topk_group: Option<usize>,
    #[serde(default)]
    norm_topk_prob: Option<bool>,
    #[serde(default)]
    rope_interleave: Option<bool>,
}

fn silu() -> String {
    "silu".into()
}
fn eps() -> f64 {
    1e-6
}

/// Hugging Face's DeepSeek-V2 and V3 names: LLaMA's layout with the latent attention's
/// projections, the router (`mlp.gate`, with V3's `e_score_correction_bias` beside its weight),
/// routed experts `mlp.experts.{e}` and the shared experts `mlp.shared_experts` (no gate).
pub const NAMES: WeightNames = WeightNames {
    qkv: QkvNames::Latent {
        q: "self_attn.q_proj",
        q_down: "self_attn.q_a_proj",
        q_norm: "self_attn.q_a_layernorm",
        q_up: "self_attn.q_b_proj",
        kv_down: "self_attn.kv_a_proj_with_mqa",
        kv_norm: "self_attn.kv_a_layernorm",
        kv_up: "self_attn.kv_b_proj",
        k_up: "",
        v_up: "",
    },
    router: "mlp.gate",
    experts: ExpertNames::PerExpert { prefix: "mlp.experts.{e}", gate: "gate_proj", up: "up_proj", down: "down_proj" },
    shared_expert: Some(SharedExpertNames {
        gate: "mlp.shared_experts.gate_proj",
        up: "mlp.shared_experts.up_proj",
        down: "mlp.shared_experts.down_proj",
        sigmoid_gate: "",
    }),
    ..crate::families::llama::NAMES
};

/// The spec of a DeepSeek-V2 (`deepseek_v2`) or V3 (`deepseek_v3`) `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let v3 = config.model_type()? == "deepseek_v3";
    let c: DeepseekConfig = config.parse()?;
    for (field, value) in [
        ("vocab_size", c.vocab_size),
        ("hidden_size", c.hidden_size),
        ("num_attention_heads", c.num_attention_heads),
        ("max_position_embeddings", c.max_position_embeddings),
        ("kv_lora_rank", c.kv_lora_rank),
        ("qk_rope_head_dim", c.qk_rope_head_dim),
        ("v_head_dim", c.v_head_dim),
        ("n_routed_experts", c.n_routed_experts),
        ("moe_intermediate_size", c.moe_intermediate_size),
    ] {
        config.require_positive(field, value)?;
    }
    let heads = c.num_attention_heads;
    if let Some(kv) = c.num_key_value_heads.filter(|&kv| kv != heads) {
        return Err(config.error(format!(
            "`num_key_value_heads` ({kv}) must equal `num_attention_heads` ({heads}): latent attention expands \
             its keys and values per query head"
        )));
    }
    if c.qk_rope_head_dim % 2 == 1 {
        return Err(config.error(format!("`qk_rope_head_dim` ({}) must be even (rotated pairs)", c.qk_rope_head_dim)));
    }
    if c.q_lora_rank == Some(0) {
        return Err(config.error("`q_lora_rank` must be positive or null (direct query projection)"));
    }
    if let Some(freq) = c.moe_layer_freq.filter(|&f| f != 1) {
        return Err(tcat_core::Error::NotImplemented {
            what: format!(
                "`moe_layer_freq` {freq}: transformers makes every layer from `first_k_dense_replace` on sparse"
            ),
        });
    }
    let activation = config.activation("hidden_act", &c.hidden_act)?;
    let layout = if !v3 || c.rope_interleave.unwrap_or(true) {
        RotaryLayoutSpec::Interleaved
    } else {
        RotaryLayoutSpec::HalfSplit
    };
    let rotary = rotary_spec(config, 1.0, layout)?;
    let k = c.num_experts_per_tok;
    let scale = c.routed_scaling_factor.unwrap_or(if v3 { 2.5 } else { 1.0 });
    if !scale.is_finite() {
        return Err(config.error(format!("`routed_scaling_factor` ({scale}) must be finite")));
    }
    let rule = if v3 {
        if let Some(m) = c.topk_method.as_deref().filter(|m| *m != "noaux_tc") {
            return Err(config.error(format!("`topk_method` `{m}`: transformers' DeepSeek-V3 routes with `noaux_tc`")));
        }
        if let Some(f) = c.scoring_func.as_deref().filter(|f| *f != "sigmoid") {
            return Err(config.error(format!("`scoring_func` `{f}`: DeepSeek-V3 scores experts with a sigmoid")));
        }
        RoutingRule::NoAuxTc {
            k,
            groups: c.n_group.unwrap_or(8),
            topk_groups: c.topk_group.unwrap_or(4),
            renormalize: c.norm_topk_prob.unwrap_or(true),
            scale,
        }
    } else {
        if let Some(f) = c.scoring_func.as_deref().filter(|f| *f != "softmax") {
            return Err(config.error(format!("`scoring_func` `{f}`: DeepSeek-V2 scores experts with a softmax")));
        }
        if c.norm_topk_prob == Some(true) {
            return Err(tcat_core::Error::NotImplemented {
                what: "`norm_topk_prob` true in a DeepSeek-V2 config (transformers ignores it, DeepSeek's own code \
                       renormalises)"
                    .into(),
            });
        }
        match c.topk_method.as_deref().unwrap_or("greedy") {
            "greedy" => RoutingRule::GroupLimitedGreedy { k, groups: 1, topk_groups: 1, scale },
            "group_limited_greedy" => {
                let field = |name: &str, v: Option<usize>| {
                    v.filter(|&n| n > 0).ok_or_else(|| {
                        config.error(format!("`topk_method` `group_limited_greedy` needs a positive `{name}`"))
                    })
                };
                RoutingRule::GroupLimitedGreedy {
                    k,
                    groups: field("n_group", c.n_group)?,
                    topk_groups: field("topk_group", c.topk_group)?,
                    scale,
                }
            }
            other => {
                return Err(config.error(format!(
                    "`topk_method` `{other}` is not a DeepSeek-V2 routing (greedy, group_limited_greedy)"
                )));
            }
        }
    };
    check_groups(config, rule, c.n_routed_experts)?;
    let shared = c.n_shared_experts.unwrap_or(if v3 { 1 } else { 2 });
    let latent = LatentSpec {
        q_rank: c.q_lora_rank,
        kv_rank: c.kv_lora_rank,
        nope_dim: c.qk_nope_head_dim,
        rope_dim: c.qk_rope_head_dim,
        value_dim: c.v_head_dim,
        norm_eps: 1e-6,
    };
    // Under a rope scaling, transformers' `yarn_apply_mscale` multiplies the softmax scale
    // 1/√(nope + rope) by yarn_mscale(factor, mscale_all_dim)² when `mscale_all_dim` is set.
    let scale_rule = match rotary.scaling {
        RopeScalingSpec::None => ScaleRule::InverseSqrtHeadDim,
        _ => {
            let json = &config.json;
            let block = json.get("rope_parameters").filter(|v| v.is_object()).or_else(|| json.get("rope_scaling"));
            let get = |name: &str| block.and_then(|b| b.get(name)).and_then(serde_json::Value::as_f64);
            match (get("mscale_all_dim").filter(|m| *m != 0.0), get("factor")) {
                (Some(all_dim), Some(factor)) => {
                    let m = tcat_position::yarn_mscale(factor, all_dim);
                    ScaleRule::Fixed { scale: m * m / (latent_qk_dim(&c) as f64).sqrt() }
                }
                _ => ScaleRule::InverseSqrtHeadDim,
            }
        }
    };
    let mut tower =
        TowerSpec::decoder(c.vocab_size, c.hidden_size, c.num_hidden_layers, heads, c.max_position_embeddings)
            .with_positions(PositionSpec::Rotary(rotary))
            .with_norm(NormSpec::RmsNorm { eps: c.rms_norm_eps })
            .with_attention(AttentionSpec {
                num_heads: heads,
                num_kv_heads: heads,
                head_dim: c.qk_rope_head_dim,
                qkv_bias: c.attention_bias,
                out_bias: c.attention_bias,
                scale: scale_rule,
                masking: Masking::Causal,
                schedule: Vec::new(),
                qk_norm: None,
                logit_softcap: None,
                local_rotary: None,
                latent: Some(latent),
            });
    tower.feed_forward = FeedForwardSpec {
        bias: c.mlp_bias,
        experts: Some(MoeSpec {
            num_experts: c.n_routed_experts,
            expert_kind: FeedForwardKind::Gated,
            expert_inner: c.moe_intermediate_size,
            router: RouterSpec { rule, bias: false, float32: true, jitter: 0.0 },
            every: 1,
            offset: 0,
            shared_expert: (shared > 0)
                .then(|| SharedExpertSpec { inner: shared * c.moe_intermediate_size, sigmoid_gate: false }),
            first_dense: c.first_k_dense_replace.unwrap_or(if v3 { 3 } else { 0 }),
        }),
        ..FeedForwardSpec::gated(c.intermediate_size, activation)
    };
    let (eos, pad) = special_ids(&c.eos_token_id, c.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: c.tie_word_embeddings, bias: false }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}

fn latent_qk_dim(c: &DeepseekConfig) -> usize {
    c.qk_nope_head_dim + c.qk_rope_head_dim
}

/// Names what does not fit in a group rule before the builder's generic router error.
fn check_groups(config: &ConfigFile, rule: RoutingRule, experts: usize) -> Result<()> {
    let (k, groups, topk_groups) = match rule {
        RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, .. }
        | RoutingRule::NoAuxTc { k, groups, topk_groups, .. } => (k, groups, topk_groups),
        _ => return Ok(()),
    };
    if groups == 0 || !experts.is_multiple_of(groups) {
        return Err(config.error(format!("`n_routed_experts` ({experts}) must split into `n_group` ({groups}) groups")));
    }
    if topk_groups == 0 || topk_groups > groups {
        return Err(config.error(format!("`topk_group` ({topk_groups}) must be between 1 and `n_group` ({groups})")));
    }
    if k == 0 || k > topk_groups * (experts / groups) {
        return Err(config.error(format!(
            "`num_experts_per_tok` ({k}) must be between 1 and the {} experts of `topk_group` groups",
            topk_groups * (experts / groups)
        )));
    }
    Ok(())
}
