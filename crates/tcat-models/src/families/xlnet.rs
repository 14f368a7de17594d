//! XLNet (Yang et al. 2019, "XLNet: Generalized Autoregressive Pretraining for Language
//! Understanding"): a Transformer-XL backbone (relative sinusoids with per-layer biases `u`,
//! `v`, distances clamped to `clamp_len`; Dai et al. 2019, §3.3) run bidirectionally, relative
//! segment encodings instead of a segment table (§2.5), post-norm layers, and an output layer
//! tied to the token table with a bias. `XLNetModel`'s content stream: without a permutation
//! mask or target mapping the query stream is not used. Hugging Face `model_type` `xlnet`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames, XlNames};

/// The fields of an XLNet `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct XlnetConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub d_model: usize,
    /// Number of layers.
    pub n_layer: usize,
    /// Attention heads per layer.
    pub n_head: usize,
    /// Width of one head (`d_model / n_head` when absent).
    #[serde(default)]
    pub d_head: Option<usize>,
    /// Width of the feed-forward layer.
    pub d_inner: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub ff_activation: String,
    /// `bi` (bidirectional) is built; `uni` is refused.
    #[serde(default = "default_attn_type")]
    pub attn_type: String,
    /// Relative distances clamped to this (< 1: no clamp).
    #[serde(default = "minus_one")]
    pub clamp_len: i64,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default = "default_pad")]
    pub pad_token_id: Option<u32>,
    /// End-of-sequence token id.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_attn_type() -> String {
    "bi".into()
}
fn minus_one() -> i64 {
    -1
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pad() -> Option<u32> {
    Some(5)
}

/// XLNet's names: `transformer.` (or bare) base model, einsum attention parameters under
/// `rel_attn`, the feed-forward under `ff`, and the output bias `lm_loss.bias`.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "word_embedding",
    layer: "layer.{i}",
    qkv: QkvNames::Einsum { q: "rel_attn.q", k: "rel_attn.k", v: "rel_attn.v" },
    attention_out: "rel_attn.o",
    attention_norm: "rel_attn.layer_norm",
    ffn_up: "ff.layer_1",
    ffn_down: "ff.layer_2",
    ffn_norm: "ff.layer_norm",
    lm_head: "lm_loss",
    xl: XlNames {
        projection: "rel_attn.r",
        content_bias: "rel_attn.r_w_bias",
        position_bias: "rel_attn.r_r_bias",
        segment_bias: "rel_attn.r_s_bias",
        segment_embeddings: "rel_attn.seg_embed",
    },
    ..WeightNames::EMPTY
};

/// The spec of an XLNet `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: XlnetConfig = config.parse()?;
    config.require_positive("n_head", cfg.n_head)?;
    config.require_positive("d_model", cfg.d_model)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("d_inner", cfg.d_inner)?;
    let head_dim = cfg.d_head.unwrap_or(cfg.d_model / cfg.n_head);
    if head_dim * cfg.n_head != cfg.d_model {
        return Err(config.error(format!(
            "`d_head` {head_dim} × `n_head` {} must equal `d_model` {} (XLNet's einsum projections)",
            cfg.n_head, cfg.d_model
        )));
    }
    if !cfg.d_model.is_multiple_of(2) {
        return Err(config.error(format!("`d_model` {} must be even (the relative sinusoids)", cfg.d_model)));
    }
    if cfg.attn_type != "bi" {
        return Err(config.error(format!(
            "`attn_type` `{}` is not supported: XLNetModel runs bidirectionally (`bi`)",
            cfg.attn_type
        )));
    }
    config.refuse("bi_data", "the bidirectional data pipeline's doubled positions are not built")?;
    if config.json.get("untie_r").and_then(serde_json::Value::as_bool) == Some(false) {
        return Err(config.error("`untie_r` false is not supported: transformers' XLNet keeps biases per layer"));
    }
    let clamp_len = if cfg.clamp_len > 0 { cfg.clamp_len as usize } else { 0 };
    // Relative positions need no table: any length runs (the 512 only sizes presets' memory).
    let mut tower = TowerSpec::encoder(cfg.vocab_size, cfg.d_model, cfg.n_layer, cfg.n_head, 512)
        .with_positions(PositionSpec::TransformerXl { mem_len: 0, clamp_len, biases: XlBiases::PerLayer })
        .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_eps, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(
            cfg.d_inner,
            config.activation("ff_activation", &cfg.ff_activation)?,
        ));
    tower.embeddings.token_types = 0;
    tower.embeddings.norm = false;
    tower.embeddings.segments = SegmentEncoding::Relative;
    tower.attention.qkv_bias = false;
    tower.attention.out_bias = false;
    tower.attention.head_dim = head_dim;
    let tokens = SpecialTokens {
        eos: cfg.eos_token_id.into_iter().collect(),
        pad: cfg.pad_token_id.unwrap_or(5),
        decoder_start: None,
    };
    Ok(ArchSpec::encoder(tower, vec![HeadSpec::Lm { tied: true, bias: true }]).with_tokens(tokens))
}
