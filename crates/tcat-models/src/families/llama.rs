//! LLaMA (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"):
//! pre-RMSNorm decoder, SwiGLU feed-forward, half-split rotary positions, no biases, and
//! grouped-query attention from LLaMA 2 on. Hugging Face `model_type` `llama` (also Alpaca,
//! Koala, SmolLM), and `mistral` (Jiang et al. 2023), which is the same network with a sliding
//! attention window. GGUF files of the `llama` architecture map onto the same spec
//! ([`crate::gguf`]).

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::{
    ArchSpec, AttentionPattern, AttentionSpec, FeedForwardSpec, HeadSpec, Masking, NormSpec, PositionSpec, ScaleRule,
    SpecialTokens, TowerSpec,
};

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;
use crate::rope_config::rotary_spec;

/// The fields of a LLaMA `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the gated feed-forward layer.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention); all heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head (`hidden_size / num_attention_heads` when absent).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Gate activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence (rotary table size).
    pub max_position_embeddings: usize,
    /// RMSNorm ε.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Whether q/k/v/o projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the feed-forward projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Whether the LM head shares the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Keys each query sees (Mistral); all when absent.
    #[serde(default)]
    pub sliding_window: Option<usize>,
}

fn default_act() -> String {
    "silu".into()
}
fn default_eps() -> f64 {
    1e-6
}

/// Hugging Face's LLaMA weight names (`LlamaForCausalLM`, or a bare `LlamaModel`).
pub const NAMES: WeightNames = WeightNames {
    base: &["model", ""],
    word: "embed_tokens",
    layer: "layers.{i}",
    qkv: QkvNames::Separate { q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj" },
    attention_out: "self_attn.o_proj",
    attention_norm: "input_layernorm",
    ffn_gate: "mlp.gate_proj",
    ffn_up: "mlp.up_proj",
    ffn_down: "mlp.down_proj",
    ffn_norm: "post_attention_layernorm",
    final_norm: "norm",
    lm_head: "lm_head",
    ..WeightNames::EMPTY
};

/// The spec of a LLaMA-architecture `config.json` (`llama` or `mistral`).
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: LlamaConfig = config.parse()?;
    let schedule = match (config.model_type()?, cfg.sliding_window) {
        ("mistral", Some(window)) => vec![AttentionPattern::Local { window }],
        (_, None) => vec![],
        (family, Some(_)) => {
            return Err(config.error(format!(
                "`sliding_window` is set, but `{family}` models attend to every key (transformers ignores it; \
                 remove the field or use model_type `mistral`)"
            )));
        }
    };
    spec_with(config, &cfg, schedule)
}

/// The LLaMA-architecture spec of `cfg` with the per-layer attention `schedule` (for the
/// families that differ from LLaMA only in such settings: Mistral, Qwen2).
pub(crate) fn spec_with(config: &ConfigFile, cfg: &LlamaConfig, schedule: Vec<AttentionPattern>) -> Result<ArchSpec> {
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("num_attention_heads", cfg.num_attention_heads)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let heads = cfg.num_attention_heads;
    let kv_heads = cfg.num_key_value_heads.unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(config.error(format!(
            "`num_attention_heads` ({heads}) must be a multiple of `num_key_value_heads` ({kv_heads})"
        )));
    }
    let head_dim = match cfg.head_dim {
        Some(d) => d,
        None => {
            config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", heads)?;
            cfg.hidden_size / heads
        }
    };
    let activation = config.activation("hidden_act", &cfg.hidden_act)?;
    let rotary = rotary_spec(config, 1.0, tcat_spec::RotaryLayoutSpec::HalfSplit)?;
    let mut tower =
        TowerSpec::decoder(cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, heads, cfg.max_position_embeddings)
            .with_positions(PositionSpec::Rotary(rotary))
            .with_norm(NormSpec::RmsNorm { eps: cfg.rms_norm_eps })
            .with_attention(AttentionSpec {
                num_heads: heads,
                num_kv_heads: kv_heads,
                head_dim,
                qkv_bias: cfg.attention_bias,
                out_bias: cfg.attention_bias,
                scale: ScaleRule::InverseSqrtHeadDim,
                masking: Masking::Causal,
                schedule,
                qk_norm: None,
                logit_softcap: None,
                local_rotary: None,
                latent: None,
            });
    tower.feed_forward =
        FeedForwardSpec { bias: cfg.mlp_bias, ..FeedForwardSpec::gated(cfg.intermediate_size, activation) };
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: cfg.tie_word_embeddings, bias: false })
        .with_tokens(SpecialTokens { eos, pad, decoder_start: None }))
}
