//! GPT-J (Wang & Komatsuzaki 2021): attention and feed-forward in parallel from one LayerNorm,
//! interleaved ("rotate every two") rotary on the first `rotary_dim` features of each head, no
//! attention biases, an LM head with a bias. Hugging Face `model_type` `gptj`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, LmHead, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::{RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout};

use crate::config::TokenIds;
use crate::decoder::special_ids;
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// The fields of a GPT-J `config.json` that shape the network.
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

/// Loads a GPT-J language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: GptjConfig = config.parse()?;
    config.require_heads("n_embd", cfg.n_embd, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("n_positions", cfg.n_positions)?;
    let act =
        cfg.activation_function.parse::<Activation>().map_err(|e| config.error(format!("activation_function: {e}")))?;
    let head_dim = cfg.n_embd / cfg.n_head;
    let rotary_dim = cfg.rotary_dim.unwrap_or(head_dim);
    if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) || rotary_dim > head_dim {
        return Err(
            config.error(format!("`rotary_dim` ({rotary_dim}) must be even and at most the head dim {head_dim}"))
        );
    }
    let rotary_cfg =
        RotaryConfig { rotary_dim, base: 10000.0, layout: RotaryLayout::Interleaved, scaling: RopeScaling::None };
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["transformer", ""], "wte.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.n_embd;
        let word = vb.get((cfg.vocab_size, h), "wte.weight")?;
        let rotary = RotaryEmbedding::new(rotary_cfg, cfg.n_positions, word.dtype(), word.device())?;
        let layers = (0..cfg.n_layer)
            .map(|i| layer(vb.pp(format!("h.{i}")), &cfg, act, &rotary))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = Norm::load_layer_norm(vb.pp("ln_f"), h, cfg.layer_norm_epsilon)?;
        let bias = root.contains_tensor("lm_head.bias");
        let head = LmHead::new(Linear::load(root.pp("lm_head"), h, cfg.vocab_size, bias, WeightLayout::OutIn)?);
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
        Ok(DecoderModel::new(
            Embeddings::new(word, None, None, None),
            Stack::new(layers, Some(final_norm)),
            head,
            cfg.n_positions,
            eos,
            pad,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(
    vb: VarBuilder,
    cfg: &GptjConfig,
    act: Activation,
    rotary: &RotaryEmbedding,
) -> candle_core::Result<TransformerLayer> {
    let h = cfg.n_embd;
    let inner = cfg.n_inner.unwrap_or(4 * h);
    let lin = |name: &str, i, o, bias| Linear::load(vb.pp(name), i, o, bias, WeightLayout::OutIn);
    let qkv = QkvProjection::stacked(
        lin("attn.q_proj", h, h, false)?,
        lin("attn.k_proj", h, h, false)?,
        lin("attn.v_proj", h, h, false)?,
    );
    let attention =
        MultiHeadAttention::new(qkv, lin("attn.out_proj", h, h, false)?, cfg.n_head, cfg.n_head, h / cfg.n_head)?
            .with_rotary(rotary.clone());
    let ffn = FeedForward::new(lin("mlp.fc_in", h, inner, true)?, lin("mlp.fc_out", inner, h, true)?, act);
    // One LayerNorm feeds both branches.
    let norm = Norm::load_layer_norm(vb.pp("ln_1"), h, cfg.layer_norm_epsilon)?;
    Ok(TransformerLayer::new(attention, norm.clone(), ffn, norm, Residual::Parallel))
}
