//! DistilBERT (Sanh et al. 2019, "DistilBERT, a distilled version of BERT"): a 6-layer BERT
//! without token types or pooler, post-norm, GELU. Hugging Face `model_type` `distilbert`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, MlmHead, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::AbsolutePositions;

use crate::{Checkpoint, ConfigFile, EncoderModel, PositionRule};

/// DistilBERT's LayerNorm ε, fixed in the reference implementation.
const EPS: f64 = 1e-12;

/// The fields of a DistilBERT `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct DistilBertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub dim: usize,
    /// Number of layers.
    pub n_layers: usize,
    /// Attention heads per layer.
    pub n_heads: usize,
    /// Width of the feed-forward layer.
    pub hidden_dim: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub activation: String,
    /// Rows of the position table (sinusoidal tables are stored in the weights too).
    pub max_position_embeddings: usize,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}

/// Loads a DistilBERT encoder (and its MLM head when present).
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<EncoderModel> {
    let cfg: DistilBertConfig = config.parse()?;
    config.require_heads("dim", cfg.dim, "n_heads", cfg.n_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("hidden_dim", cfg.hidden_dim)?;
    config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
    let act = cfg.activation.parse::<Activation>().map_err(|e| config.error(format!("activation: {e}")))?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["distilbert", ""], "embeddings.word_embeddings.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<EncoderModel> {
        let h = cfg.dim;
        let emb = vb.pp("embeddings");
        let word = emb.pp("word_embeddings").get((cfg.vocab_size, h), "weight")?;
        let embeddings = Embeddings::new(
            word.clone(),
            Some(AbsolutePositions::load(emb.pp("position_embeddings"), cfg.max_position_embeddings, h, 0)?),
            None,
            Some(Norm::load_layer_norm(emb.pp("LayerNorm"), h, EPS)?),
        );
        let layers = (0..cfg.n_layers)
            .map(|i| layer(vb.pp(format!("transformer.layer.{i}")), &cfg, act))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mlm = if root.contains_tensor("vocab_transform.weight") {
            let decoder = if root.contains_tensor("vocab_projector.weight") {
                root.get((cfg.vocab_size, h), "vocab_projector.weight")?
            } else {
                word.clone()
            };
            Some(MlmHead::new(
                Linear::load(root.pp("vocab_transform"), h, h, true, WeightLayout::OutIn)?,
                act,
                Norm::load_layer_norm(root.pp("vocab_layer_norm"), h, EPS)?,
                Linear::new(decoder, Some(root.get(cfg.vocab_size, "vocab_projector.bias")?)),
            ))
        } else {
            None
        };
        Ok(EncoderModel::new(
            embeddings,
            Stack::new(layers, None),
            None,
            mlm,
            PositionRule::Sequential,
            0,
            cfg.pad_token_id.unwrap_or(0),
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(vb: VarBuilder, cfg: &DistilBertConfig, act: Activation) -> candle_core::Result<TransformerLayer> {
    let h = cfg.dim;
    let lin = |name: &str, i, o| Linear::load(vb.pp(name), i, o, true, WeightLayout::OutIn);
    let qkv = QkvProjection::stacked(
        lin("attention.q_lin", h, h)?,
        lin("attention.k_lin", h, h)?,
        lin("attention.v_lin", h, h)?,
    );
    let attention =
        MultiHeadAttention::new(qkv, lin("attention.out_lin", h, h)?, cfg.n_heads, cfg.n_heads, h / cfg.n_heads)?;
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("sa_layer_norm"), h, EPS)?,
        FeedForward::new(lin("ffn.lin1", h, cfg.hidden_dim)?, lin("ffn.lin2", cfg.hidden_dim, h)?, act),
        Norm::load_layer_norm(vb.pp("output_layer_norm"), h, EPS)?,
        Residual::PostNorm,
    ))
}
