//! GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"):
//! pre-norm decoder with a final LayerNorm, `gelu_new`, learned positions, fused QKV stored as
//! `Conv1D` (`[in, out]`), LM head tied to the token embeddings. Hugging Face `model_type`
//! `gpt2`; and `gpt_bigcode` (SantaCoder / StarCoder, Allal et al. 2023), GPT-2 with
//! `nn.Linear` weights and multi-query attention.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::AbsolutePositions;

use crate::config::TokenIds;
use crate::decoder::{lm_head_or_tied, special_ids};
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// The fields of a GPT-2 `config.json` that shape the network.
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

/// The two checkpoint layouts of the GPT-2 architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// OpenAI's GPT-2: `Conv1D` weights stored `[in, out]`, multi-head attention.
    Gpt2,
    /// GPT-BigCode: `nn.Linear` weights, multi-query attention when `multi_query` (the
    /// default), otherwise multi-head attention with a per-head fused `c_attn`.
    BigCode,
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

/// Loads a GPT-2 language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    load_variant(config, ckpt, Variant::Gpt2)
}

/// Loads a GPT-BigCode language model.
pub fn load_bigcode(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    load_variant(config, ckpt, Variant::BigCode)
}

pub(crate) fn load_variant(config: &ConfigFile, ckpt: &Checkpoint, variant: Variant) -> Result<DecoderModel> {
    let cfg: Gpt2Config = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    let act =
        cfg.activation_function.parse::<Activation>().map_err(|e| config.error(format!("activation_function: {e}")))?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["transformer", ""], "wte.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.n_embd;
        let word = vb.get((cfg.vocab_size, h), "wte.weight")?;
        let embeddings = Embeddings::new(
            word.clone(),
            Some(AbsolutePositions::load(vb.pp("wpe"), cfg.n_positions, h, 0)?),
            None,
            None,
        );
        let layers = (0..cfg.n_layer)
            .map(|i| layer(vb.pp(format!("h.{i}")), &cfg, act, i, variant))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = Norm::load_layer_norm(vb.pp("ln_f"), h, cfg.layer_norm_epsilon)?;
        let head = lm_head_or_tied(&root, &word)?;
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
        Ok(DecoderModel::new(embeddings, Stack::new(layers, Some(final_norm)), head, cfg.n_positions, eos, pad))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(
    vb: VarBuilder,
    cfg: &Gpt2Config,
    act: Activation,
    index: usize,
    variant: Variant,
) -> candle_core::Result<TransformerLayer> {
    let h = cfg.n_embd;
    let inner = cfg.n_inner.unwrap_or(4 * h);
    let layout = match variant {
        Variant::Gpt2 => WeightLayout::InOut,
        Variant::BigCode => WeightLayout::OutIn,
    };
    let conv1d = |name: &str, i, o| Linear::load(vb.pp(name), i, o, true, layout);
    let head_dim = h / cfg.n_head;
    let kv_heads = if variant == Variant::BigCode && cfg.multi_query { 1 } else { cfg.n_head };
    let mut scale = if cfg.scale_attn_weights { 1.0 / (head_dim as f64).sqrt() } else { 1.0 };
    if cfg.scale_attn_by_inverse_layer_idx {
        scale /= (index + 1) as f64;
    }
    let c_attn = conv1d("attn.c_attn", h, h + 2 * kv_heads * head_dim)?;
    // GPT-2 and multi-query GPT-BigCode split `c_attn`'s output as [Q | K | V]; multi-head
    // GPT-BigCode views it per head as (heads, 3 · head_dim) and splits each head [q_h | k_h | v_h].
    let qkv = match variant {
        Variant::BigCode if !cfg.multi_query => QkvProjection::FusedPerHead(c_attn),
        _ => QkvProjection::Fused(c_attn),
    };
    let attention =
        MultiHeadAttention::new(qkv, conv1d("attn.c_proj", h, h)?, cfg.n_head, kv_heads, head_dim)?.with_scale(scale);
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("ln_1"), h, cfg.layer_norm_epsilon)?,
        FeedForward::new(conv1d("mlp.c_fc", h, inner)?, conv1d("mlp.c_proj", inner, h)?, act),
        Norm::load_layer_norm(vb.pp("ln_2"), h, cfg.layer_norm_epsilon)?,
        Residual::PreNorm,
    ))
}
