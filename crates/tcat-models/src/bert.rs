//! BERT (Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers"):
//! post-norm encoder, GELU, learned absolute positions, segment embeddings, tanh pooler and
//! masked-LM head. Also RoBERTa's and XLM-RoBERTa's layout, which differ only in names and the
//! position rule (see [`crate::roberta`]). Hugging Face `model_type` `bert`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, MlmHead, Norm, Pooler, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::AbsolutePositions;

use crate::{Checkpoint, ConfigFile, EncoderModel, PositionRule};

/// The fields of a BERT-family `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Rows of the position table.
    pub max_position_embeddings: usize,
    /// Rows of the segment table.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Only `absolute` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Parses and validates `config.json`.
    pub fn from_config(config: &ConfigFile) -> Result<(Self, Activation)> {
        let cfg: BertConfig = config.parse()?;
        config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
        config.require_positive("vocab_size", cfg.vocab_size)?;
        config.require_positive("intermediate_size", cfg.intermediate_size)?;
        config.require_positive("max_position_embeddings", cfg.max_position_embeddings)?;
        if cfg.position_embedding_type != "absolute" {
            return Err(config.error(format!(
                "position_embedding_type `{}` is not supported yet (only `absolute`)",
                cfg.position_embedding_type
            )));
        }
        let act = cfg.hidden_act.parse::<Activation>().map_err(|e| config.error(format!("hidden_act: {e}")))?;
        Ok((cfg, act))
    }
}

/// Weight names and position rule that distinguish BERT from RoBERTa.
pub(crate) struct Layout {
    pub base_prefixes: &'static [&'static str],
    pub mlm_prefix: &'static str,
    pub positions: fn(&BertConfig) -> PositionRule,
}

/// BERT's names: `bert.` (or bare) base model, `cls.predictions` head.
pub(crate) const BERT: Layout =
    Layout { base_prefixes: &["bert", ""], mlm_prefix: "cls.predictions", positions: |_| PositionRule::Sequential };

/// Loads a BERT-layout encoder (base model, pooler and MLM head when present).
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<EncoderModel> {
    load_with(config, ckpt, &BERT)
}

pub(crate) fn load_with(config: &ConfigFile, ckpt: &Checkpoint, layout: &Layout) -> Result<EncoderModel> {
    let (cfg, act) = BertConfig::from_config(config)?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(layout.base_prefixes, "embeddings.word_embeddings.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<EncoderModel> {
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let word = emb.pp("word_embeddings").get((cfg.vocab_size, h), "weight")?;
        let embeddings = Embeddings::new(
            word.clone(),
            Some(AbsolutePositions::load(emb.pp("position_embeddings"), cfg.max_position_embeddings, h, 0)?),
            match cfg.type_vocab_size {
                0 => None,
                n => Some(emb.pp("token_type_embeddings").get((n, h), "weight")?),
            },
            Some(Norm::load_layer_norm(emb.pp("LayerNorm"), h, cfg.layer_norm_eps)?),
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| layer(vb.pp(format!("encoder.layer.{i}")), &cfg, act))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooler = if vb.contains_tensor("pooler.dense.weight") {
            Some(Pooler::new(Linear::load(vb.pp("pooler.dense"), h, h, true, WeightLayout::OutIn)?))
        } else {
            None
        };
        let mlm = mlm_head(root.pp(layout.mlm_prefix), &cfg, act, &word)?;
        Ok(EncoderModel::new(
            embeddings,
            Stack::new(layers, None),
            pooler,
            mlm,
            (layout.positions)(&cfg),
            cfg.type_vocab_size,
            cfg.pad_token_id.unwrap_or(0),
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(vb: VarBuilder, cfg: &BertConfig, act: Activation) -> candle_core::Result<TransformerLayer> {
    let h = cfg.hidden_size;
    let lin = |name: &str, i, o| Linear::load(vb.pp(name), i, o, true, WeightLayout::OutIn);
    let qkv = QkvProjection::stacked(
        lin("attention.self.query", h, h)?,
        lin("attention.self.key", h, h)?,
        lin("attention.self.value", h, h)?,
    );
    let heads = cfg.num_attention_heads;
    let attention = MultiHeadAttention::new(qkv, lin("attention.output.dense", h, h)?, heads, heads, h / heads)?;
    let ffn = FeedForward::new(
        lin("intermediate.dense", h, cfg.intermediate_size)?,
        lin("output.dense", cfg.intermediate_size, h)?,
        act,
    );
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("attention.output.LayerNorm"), h, cfg.layer_norm_eps)?,
        ffn,
        Norm::load_layer_norm(vb.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
        Residual::PostNorm,
    ))
}

/// The masked-LM head under `vb` (BERT's `cls.predictions`, RoBERTa's `lm_head`), if present.
/// BERT nests the transform (`transform.dense`, `transform.LayerNorm`); RoBERTa does not
/// (`dense`, `layer_norm`). The decoder is tied to `word` unless stored.
fn mlm_head(
    vb: VarBuilder,
    cfg: &BertConfig,
    act: Activation,
    word: &candle_core::Tensor,
) -> candle_core::Result<Option<MlmHead>> {
    let h = cfg.hidden_size;
    let (dense, norm) = if vb.contains_tensor("transform.dense.weight") {
        ("transform.dense", "transform.LayerNorm")
    } else if vb.contains_tensor("dense.weight") {
        ("dense", "layer_norm")
    } else {
        return Ok(None);
    };
    let decoder_weight = if vb.contains_tensor("decoder.weight") {
        vb.get((cfg.vocab_size, h), "decoder.weight")?
    } else {
        word.clone()
    };
    let bias = if vb.contains_tensor("bias") {
        vb.get(cfg.vocab_size, "bias")?
    } else {
        vb.get(cfg.vocab_size, "decoder.bias")?
    };
    Ok(Some(MlmHead::new(
        Linear::load(vb.pp(dense), h, h, true, WeightLayout::OutIn)?,
        act,
        Norm::load_layer_norm(vb.pp(norm), h, cfg.layer_norm_eps)?,
        Linear::new(decoder_weight, Some(bias)),
    )))
}
