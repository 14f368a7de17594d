//! BLOOM (BigScience 2022, "BLOOM: A 176B-Parameter Open-Access Multilingual Language Model"):
//! no position embeddings but ALiBi biases, a LayerNorm on the word embeddings, fused QKV
//! stored head by head, pre-LN, tanh-approximated GELU. Hugging Face `model_type` `bloom`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::Alibi;

use crate::config::TokenIds;
use crate::decoder::{lm_head_or_tied, special_ids};
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// The fields of a BLOOM `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct BloomConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    #[serde(alias = "n_embed")]
    pub hidden_size: usize,
    /// Number of layers.
    #[serde(alias = "num_hidden_layers")]
    pub n_layer: usize,
    /// Attention heads per layer.
    #[serde(alias = "num_attention_heads")]
    pub n_head: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Residuals taken after the norms (true only in some early checkpoints).
    #[serde(default)]
    pub apply_residual_connection_post_layernorm: bool,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-5
}

/// ALiBi extrapolates; this bounds the KV cache of one generation.
const MAX_POSITIONS: usize = 8192;

/// Loads a BLOOM language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: BloomConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    if cfg.apply_residual_connection_post_layernorm {
        return Err(config.error("`apply_residual_connection_post_layernorm` true is not supported yet"));
    }
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["transformer", ""], "word_embeddings.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.hidden_size;
        let word = vb.get((cfg.vocab_size, h), "word_embeddings.weight")?;
        let alibi = Alibi::new(cfg.n_head, word.dtype(), word.device())?;
        let embed_norm = Norm::load_layer_norm(vb.pp("word_embeddings_layernorm"), h, cfg.layer_norm_epsilon)?;
        let layers = (0..cfg.n_layer)
            .map(|i| layer(vb.pp(format!("h.{i}")), &cfg, &alibi))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = Norm::load_layer_norm(vb.pp("ln_f"), h, cfg.layer_norm_epsilon)?;
        let head = lm_head_or_tied(&root, &word)?;
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 3);
        Ok(DecoderModel::new(
            Embeddings::new(word, None, None, Some(embed_norm)),
            Stack::new(layers, Some(final_norm)),
            head,
            MAX_POSITIONS,
            eos,
            pad,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(vb: VarBuilder, cfg: &BloomConfig, alibi: &Alibi) -> candle_core::Result<TransformerLayer> {
    let h = cfg.hidden_size;
    let lin = |name: &str, i, o| Linear::load(vb.pp(name), i, o, true, WeightLayout::OutIn);
    let attention = MultiHeadAttention::new(
        QkvProjection::FusedPerHead(lin("self_attention.query_key_value", h, 3 * h)?),
        lin("self_attention.dense", h, h)?,
        cfg.n_head,
        cfg.n_head,
        h / cfg.n_head,
    )?
    .with_alibi(alibi.clone());
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("input_layernorm"), h, cfg.layer_norm_epsilon)?,
        FeedForward::new(
            lin("mlp.dense_h_to_4h", h, 4 * h)?,
            lin("mlp.dense_4h_to_h", 4 * h, h)?,
            Activation::GeluTanh,
        ),
        Norm::load_layer_norm(vb.pp("post_attention_layernorm"), h, cfg.layer_norm_epsilon)?,
        Residual::PreNorm,
    ))
}
