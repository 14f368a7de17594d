//! GPT-J (Wang & Komatsuzaki 2021): attention and feed-forward in parallel from one LayerNorm,
//! interleaved ("rotate every two") rotary on the first `rotary_dim` features of each head, no
//! attention biases, an LM head with a bias. Hugging Face `model_type` `gptj`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// The fields of the `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct GptjConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence.
    pub n_positions: usize,
    /// Width of the hidden states.
    pub n_embd: usize,
    /// Number of layers.
    pub n_layer: usize,
    /// Attention heads per layer.
    pub n_head: usize,
    /// Width of the feed-forward layer (`4 · n_embd` when null).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Rotated features per head (all when null).
    #[serde(default)]
    pub rotary_dim: Option<usize>,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}

/// GPT-J's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "wte",
    layer: "h.{i}",
    qkv: QkvNames::Separate { q: "attn.q_proj", k: "attn.k_proj", v: "attn.v_proj" },
    attention_out: "attn.out_proj",
    attention_norm: "ln_1",
    ffn_up: "mlp.fc_in",
    ffn_down: "mlp.fc_out",
    final_norm: "ln_f",
    ..WeightNames::EMPTY
};

/// The spec of a GPT-J `config.json`: attention and feed-forward in parallel from one
/// LayerNorm, interleaved rotary on the first `rotary_dim` features, an LM head with a bias.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: GptjConfig = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    let h = cfg.n_embd;
    let head_dim = h / cfg.n_head;
    let rotary_dim = cfg.rotary_dim.unwrap_or(head_dim);
    if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) || rotary_dim > head_dim {
        return Err(
            config.error(format!("`rotary_dim` ({rotary_dim}) must be even and at most the head dim {head_dim}"))
        );
    }
    let rotary = RotarySpec {
        fraction: rotary_dim as f64 / head_dim as f64,
        base: 10000.0,
        layout: RotaryLayoutSpec::Interleaved,
        scaling: RopeScalingSpec::None,
    };
    let mut tower = TowerSpec::decoder(cfg.vocab_size, h, cfg.n_layer, cfg.n_head, cfg.n_positions)
        .with_positions(PositionSpec::Rotary(rotary))
        .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_epsilon, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(
            cfg.n_inner.unwrap_or(h.saturating_mul(4)),
            config.activation("activation_function", &cfg.activation_function)?,
        ))
        .with_residual(ResidualSpec::ParallelSharedNorm);
    tower.attention.qkv_bias = false;
    tower.attention.out_bias = false;
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: false, bias: true }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}
