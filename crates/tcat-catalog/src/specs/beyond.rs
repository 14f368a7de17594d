//! Models beyond `CATALOG.md` whose checkpoint families tcat loads: the decoders Qwen2, Qwen3,
//! OLMoE, Gemma 2, Gemma 3, Phi-3, DeepSeek-V2 and V3 and the encoder ModernBERT, each at a
//! published size, the numbers from the reference checkpoint's
//! `config.json` (as transformers reads it).

use tcat_spec::{
    ActivationKind, ArchSpec, AttentionPattern, AttentionSpec, EmbeddingScale, FeedForwardKind, FeedForwardSpec,
    HeadSpec, LatentSpec, Masking, MoeSpec, NormSpec, PositionSpec, QkNormSpec, ResidualSpec, RopeScalingSpec,
    RotaryLayoutSpec, RotarySpec, RouterSpec, RoutingRule, ScaleRule, SharedExpertSpec, SpecialTokens, TowerSpec,
};

use super::attention;

const UNTIED: HeadSpec = HeadSpec::Lm { tied: false, bias: false };

/// A LLaMA-shaped decoder: pre-RMSNorm, SwiGLU, half-split rotary with base `theta`.
#[allow(clippy::too_many_arguments)]
fn llama_like(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inner: usize,
    max_positions: usize,
    theta: f64,
    eps: f64,
) -> TowerSpec {
    TowerSpec::decoder(vocab, hidden, layers, heads, max_positions)
        .with_attention(attention(heads, kv_heads, head_dim, Masking::Causal))
        .with_positions(PositionSpec::Rotary(RotarySpec::full(theta)))
        .with_norm(NormSpec::RmsNorm { eps })
        .with_feed_forward(FeedForwardSpec::gated(inner, ActivationKind::Silu))
}

/// Qwen2-7B (Qwen Team 2024, "Qwen2 Technical Report", Table 1; `Qwen/Qwen2-7B` config): 28
/// layers, 3584 wide, 28 query heads sharing 4 key/value heads, SwiGLU of 18944, biases on the
/// query, key and value projections only, RoPE θ = 1e6, vocabulary 152064, untied head.
pub(crate) fn qwen2_7b() -> ArchSpec {
    let mut tower = llama_like(152_064, 3584, 28, 28, 4, 128, 18_944, 131_072, 1e6, 1e-6);
    tower.attention.qkv_bias = true;
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens {
        eos: vec![151_643],
        pad: 151_643,
        decoder_start: None,
    })
}

/// Qwen3-8B (Qwen Team 2025, "Qwen3 Technical Report", Table 1; `Qwen/Qwen3-8B` config): 36
/// layers, 4096 wide, 32 query heads of 128 sharing 8 key/value heads, each head's queries and
/// keys RMS-normalised, SwiGLU of 12288, no biases, RoPE θ = 1e6, vocabulary 151936, untied head.
pub(crate) fn qwen3_8b() -> ArchSpec {
    let mut tower = llama_like(151_936, 4096, 36, 32, 8, 128, 12_288, 40_960, 1e6, 1e-6);
    tower.attention.qk_norm = Some(QkNormSpec::Head);
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens {
        eos: vec![151_645],
        pad: 151_643,
        decoder_start: None,
    })
}

/// OLMoE-1B-7B (Muennighoff et al. 2024, "OLMoE: Open Mixture-of-Experts Language Models",
/// Table 1; `allenai/OLMoE-1B-7B-0924` config): 16 layers, 2048 wide, 16 heads, queries and keys
/// RMS-normalised over their whole projections, 64 SwiGLU experts of 1024 in every layer with
/// top-8 routing (gates not renormalised), RoPE θ = 10000, vocabulary 50304, untied head.
pub(crate) fn olmoe_1b_7b() -> ArchSpec {
    let mut tower = llama_like(50_304, 2048, 16, 16, 16, 128, 1024, 4096, 10_000.0, 1e-5);
    tower.attention.qk_norm = Some(QkNormSpec::Projection);
    tower.feed_forward.experts = Some(MoeSpec {
        num_experts: 64,
        expert_kind: FeedForwardKind::Gated,
        expert_inner: 1024,
        router: RouterSpec {
            rule: RoutingRule::TopK { k: 8, renormalize: false },
            bias: false,
            float32: false,
            jitter: 0.0,
        },
        every: 1,
        offset: 0,
        first_dense: 0,
        shared_expert: None,
    });
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens { eos: vec![50_279], pad: 1, decoder_start: None })
}

/// A Gemma 2 / Gemma 3 decoder: GeGLU (tanh GELU), `1 + w` RMSNorms in sandwich placement,
/// embeddings scaled by √hidden, scores scaled by `query_pre_attn_scalar^-½` (256), tied head.
#[allow(clippy::too_many_arguments)]
fn gemma(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    inner: usize,
    max_positions: usize,
    schedule: Vec<AttentionPattern>,
    theta: f64,
) -> TowerSpec {
    let mut tower = TowerSpec::decoder(vocab, hidden, layers, heads, max_positions)
        .with_attention(tcat_spec::AttentionSpec {
            scale: ScaleRule::Fixed { scale: 1.0 / 16.0 },
            schedule,
            ..attention(heads, kv_heads, 256, Masking::Causal)
        })
        .with_positions(PositionSpec::Rotary(RotarySpec::full(theta)))
        .with_norm(NormSpec::RmsNormPlusOne { eps: 1e-6 })
        .with_residual(ResidualSpec::Sandwich)
        .with_feed_forward(FeedForwardSpec::gated(inner, ActivationKind::GeluTanh));
    tower.embeddings.scale = EmbeddingScale::SqrtHidden;
    tower
}

/// Gemma 2 2B (Gemma Team 2024, "Gemma 2", Tables 1–2; `google/gemma-2-2b` config): 26 layers,
/// 2304 wide, 8 query heads of 256 sharing 4 key/value heads, GeGLU of 9216, sliding-window
/// (4096) and global layers alternating, scores soft-capped at 50 and logits at 30, vocabulary
/// 256000, 8192 positions, tied head.
pub(crate) fn gemma2_2b() -> ArchSpec {
    let schedule = vec![AttentionPattern::Local { window: 4096 }, AttentionPattern::Dense];
    let mut tower = gemma(256_000, 2304, 26, 8, 4, 9216, 8192, schedule, 10_000.0);
    tower.attention.logit_softcap = Some(50.0);
    ArchSpec::decoder(tower, HeadSpec::SoftcappedLm { tied: true, cap: 30.0 }).with_tokens(SpecialTokens {
        eos: vec![1],
        pad: 0,
        decoder_start: None,
    })
}

/// Gemma 3 1B (Gemma Team 2025, "Gemma 3 Technical Report", Table 1; `google/gemma-3-1b-pt`
/// config): 26 layers, 1152 wide, 4 query heads of 256 sharing one key/value head, per-head
/// `1 + w` query/key norms, GeGLU of 6912, five local layers (window 512, RoPE base 10,000) for
/// every global one (RoPE base 1,000,000), no soft-caps, vocabulary 262144, 32768 positions,
/// tied head.
pub(crate) fn gemma3_1b() -> ArchSpec {
    let mut schedule = vec![AttentionPattern::Local { window: 512 }; 5];
    schedule.push(AttentionPattern::Dense);
    let mut tower = gemma(262_144, 1152, 26, 4, 1, 6912, 32_768, schedule, 1e6);
    tower.attention.qk_norm = Some(QkNormSpec::Head);
    tower.attention.local_rotary = Some(RotarySpec::full(10_000.0));
    ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false }).with_tokens(SpecialTokens {
        eos: vec![1],
        pad: 0,
        decoder_start: None,
    })
}

/// Phi-3-mini (Abdin et al. 2024, "Phi-3 Technical Report", §2; `microsoft/Phi-3-mini-4k-instruct`
/// config): 32 layers, 3072 wide, 32 heads of 96, SwiGLU of 8192 (stored as one `gate_up_proj`,
/// with one `qkv_proj`), no biases, RoPE θ = 10000 over 4096 positions, a 2047-token sliding
/// window, vocabulary 32064, untied head. The 128k-context variant adds LongRoPE.
pub(crate) fn phi3_mini() -> ArchSpec {
    let mut tower = llama_like(32_064, 3072, 32, 32, 32, 96, 8192, 4096, 10_000.0, 1e-5);
    tower.attention.schedule = vec![AttentionPattern::Local { window: 2047 }];
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens { eos: vec![32_000], pad: 32_000, decoder_start: None })
}

/// A DeepSeek decoder (DeepSeek-AI 2024, §2.1): multi-head latent attention with interleaved
/// rotary and YaRN (factor 40 over 4096 positions; the softmax scale times `m²`, `m = 0.1 ·
/// mscale_all_dim · ln 40 + 1`, the rotary itself unscaled since `mscale` equals
/// `mscale_all_dim` in the published configs), and DeepSeekMoE after `first_dense` dense layers.
#[allow(clippy::too_many_arguments)]
fn deepseek(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    latent: LatentSpec,
    dense_inner: usize,
    moe: MoeSpec,
    mscale_all_dim: f64,
) -> TowerSpec {
    let rotary = RotarySpec {
        layout: RotaryLayoutSpec::Interleaved,
        scaling: RopeScalingSpec::Yarn {
            factor: 40.0,
            original_max_positions: 4096,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: 1.0,
            truncate: true,
        },
        ..RotarySpec::full(10_000.0)
    };
    let mscale = 0.1 * mscale_all_dim * 40f64.ln() + 1.0;
    let mut tower = TowerSpec::decoder(vocab, hidden, layers, heads, 163_840)
        .with_positions(PositionSpec::Rotary(rotary))
        .with_norm(NormSpec::RmsNorm { eps: 1e-6 });
    tower.attention = AttentionSpec {
        head_dim: latent.rope_dim,
        qkv_bias: false,
        out_bias: false,
        scale: ScaleRule::Fixed { scale: mscale * mscale / (latent.qk_dim() as f64).sqrt() },
        latent: Some(latent),
        ..attention(heads, heads, latent.rope_dim, Masking::Causal)
    };
    tower.feed_forward =
        FeedForwardSpec { experts: Some(moe), ..FeedForwardSpec::gated(dense_inner, ActivationKind::Silu) };
    tower
}

/// DeepSeek-V2-Lite (DeepSeek-AI 2024, Appendix B; `deepseek-ai/DeepSeek-V2-Lite` config): 27
/// layers, 2048 wide, 16 heads; a 512-wide key/value latent, queries projected directly,
/// 128 + 64 query/key and 128 value features per head; the first layer dense (10944), then 64
/// routed experts of 1408 (6 per token, greedy) and 2 shared; vocabulary 102400, untied head.
pub(crate) fn deepseek_v2_lite() -> ArchSpec {
    let latent = LatentSpec { q_rank: None, kv_rank: 512, nope_dim: 128, rope_dim: 64, value_dim: 128, norm_eps: 1e-6 };
    let moe = MoeSpec {
        num_experts: 64,
        expert_kind: FeedForwardKind::Gated,
        expert_inner: 1408,
        router: RouterSpec {
            rule: RoutingRule::TopK { k: 6, renormalize: false },
            bias: false,
            float32: true,
            jitter: 0.0,
        },
        every: 1,
        offset: 0,
        shared_expert: Some(SharedExpertSpec { inner: 2 * 1408, sigmoid_gate: false }),
        first_dense: 1,
    };
    // `rope_scaling.mscale` = `mscale_all_dim` = 0.707 in its config.
    let tower = deepseek(102_400, 2048, 27, 16, latent, 10_944, moe, 0.707);
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens {
        eos: vec![100_001],
        pad: 100_001,
        decoder_start: None,
    })
}

/// DeepSeek-V3 (DeepSeek-AI 2024, "DeepSeek-V3 Technical Report", §4.2; `deepseek-ai/DeepSeek-V3`
/// config): 61 layers, 7168 wide, 128 heads; query latent 1536, key/value latent 512; the
/// first 3 layers dense (18432), then 256 routed experts of 2048 (8 per token from 4 of 8
/// groups, sigmoid scores with a selection-only bias, gates × 2.5) and one shared; vocabulary
/// 129280, untied head. The multi-token-prediction module is not counted (transformers drops it).
pub(crate) fn deepseek_v3() -> ArchSpec {
    let latent =
        LatentSpec { q_rank: Some(1536), kv_rank: 512, nope_dim: 128, rope_dim: 64, value_dim: 128, norm_eps: 1e-6 };
    let moe = MoeSpec {
        num_experts: 256,
        expert_kind: FeedForwardKind::Gated,
        expert_inner: 2048,
        router: RouterSpec {
            rule: RoutingRule::NoAuxTc { k: 8, groups: 8, topk_groups: 4, renormalize: true, scale: 2.5 },
            bias: false,
            float32: true,
            jitter: 0.0,
        },
        every: 1,
        offset: 0,
        shared_expert: Some(SharedExpertSpec { inner: 2048, sigmoid_gate: false }),
        first_dense: 3,
    };
    // `rope_scaling.mscale` = `mscale_all_dim` = 1.0 in its config.
    let tower = deepseek(129_280, 7168, 61, 128, latent, 18_432, moe, 1.0);
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens { eos: vec![1], pad: 1, decoder_start: None })
}

/// ModernBERT-base (Warner et al. 2024, "Smarter, Better, Faster, Longer: A Modern Bidirectional
/// Encoder", §2.1 and Table 3; `answerdotai/ModernBERT-base` config): 22 layers, 768 wide, 12
/// heads, GeGLU of 1152, LayerNorms (ε 1e-5) and linear layers without biases, a norm after the
/// token embeddings and none on the first layer's attention, a final norm; every third layer
/// global with RoPE base 160,000, the others a ±64 band (`local_attention` 128) with base 10,000;
/// 8192 positions, vocabulary 50368, masked-LM head (bias-free dense, GELU, norm, tied decoder
/// with a bias). 149,655,232 parameters as transformers counts `ModernBertForMaskedLM`.
pub(crate) fn modernbert_base() -> ArchSpec {
    let mut tower = TowerSpec::encoder(50_368, 768, 22, 12, 8192)
        .with_positions(PositionSpec::Rotary(RotarySpec::full(160_000.0)))
        .with_norm(NormSpec::LayerNorm { eps: 1e-5, bias: false })
        .with_residual(ResidualSpec::Pre)
        .with_feed_forward(FeedForwardSpec { bias: false, ..FeedForwardSpec::gated(1152, ActivationKind::Gelu) });
    tower.embeddings.token_types = 0;
    tower.attention.qkv_bias = false;
    tower.attention.out_bias = false;
    tower.attention.schedule =
        vec![AttentionPattern::Dense, AttentionPattern::Band { radius: 64 }, AttentionPattern::Band { radius: 64 }];
    tower.attention.local_rotary = Some(RotarySpec::full(10_000.0));
    tower.final_norm = true;
    tower.skip_first_attention_norm = true;
    let head =
        HeadSpec::MaskedLm { tied: true, transform_bias: false, activation: ActivationKind::Gelu, decoder_bias: true };
    ArchSpec::encoder(tower, vec![head]).with_tokens(SpecialTokens { eos: vec![], pad: 50_283, decoder_start: None })
}
