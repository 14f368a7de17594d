//! GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"):
//! pre-norm decoder with a final LayerNorm, `gelu_new`, learned positions, fused QKV stored as
//! `Conv1D` (`[in, out]`), LM head tied to the token embeddings. Hugging Face `model_type`
//! `gpt2`; and `gpt_bigcode` (SantaCoder / StarCoder, Allal et al. 2023), GPT-2 with
//! `nn.Linear` weights and multi-query attention.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// The fields of the `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Rows of the position table.
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
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Whether scores are divided by `√head_dim`.
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    /// Whether layer `i`'s scores are further divided by `i + 1`.
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// GPT-BigCode: one key/value head shared by all query heads (`true` when absent, as in
    /// `GPTBigCodeConfig`; GPT-2 ignores it).
    #[serde(default = "yes")]
    pub multi_query: bool,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

/// GPT-2's names: `Conv1D` weights stored `[in, out]`, fused `c_attn`.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "wte",
    positions: "wpe",
    layer: "h.{i}",
    qkv: QkvNames::Fused("attn.c_attn"),
    attention_out: "attn.c_proj",
    attention_norm: "ln_1",
    ffn_up: "mlp.c_fc",
    ffn_down: "mlp.c_proj",
    ffn_norm: "ln_2",
    final_norm: "ln_f",
    layout: tcat_core::WeightLayout::InOut,
    ..WeightNames::EMPTY
};

/// GPT-BigCode's names: GPT-2's, with `nn.Linear` weights; without multi-query, `c_attn`
/// holds `[q_h | k_h | v_h]` per head.
pub fn bigcode_names(config: &ConfigFile) -> Result<WeightNames> {
    let cfg: Gpt2Config = config.parse()?;
    let qkv = if cfg.multi_query { NAMES.qkv } else { QkvNames::FusedPerHead("attn.c_attn") };
    Ok(WeightNames { qkv, layout: tcat_core::WeightLayout::OutIn, ..NAMES })
}

/// The spec of a GPT-2 (`gpt2`) or GPT-BigCode (`gpt_bigcode`) `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: Gpt2Config = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    config.refuse("add_cross_attention", "GPT-2 with cross-attention layers is not built")?;
    let bigcode = config.model_type()? == "gpt_bigcode";
    let h = cfg.n_embd;
    let mut tower = TowerSpec::decoder(cfg.vocab_size, h, cfg.n_layer, cfg.n_head, cfg.n_positions)
        .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_epsilon, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(
            cfg.n_inner.unwrap_or(h.saturating_mul(4)),
            config.activation("activation_function", &cfg.activation_function)?,
        ));
    if bigcode && cfg.multi_query {
        tower.attention.num_kv_heads = 1;
    }
    tower.attention.scale = match (cfg.scale_attn_weights, cfg.scale_attn_by_inverse_layer_idx) {
        (true, false) => ScaleRule::InverseSqrtHeadDim,
        (true, true) => ScaleRule::InverseSqrtHeadDimOverLayer,
        (false, false) => ScaleRule::One,
        (false, true) => {
            return Err(config.error("`scale_attn_by_inverse_layer_idx` without `scale_attn_weights` is not supported"));
        }
    };
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}
