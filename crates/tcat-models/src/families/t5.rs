//! T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
//! Text-to-Text Transformer"): an encoder-decoder with pre-norm RMS layer norms (no bias, no
//! mean), a bucketed relative position bias kept by each stack's first layer and shared by its
//! layers, unscaled attention scores, and a ReLU (v1.0) or gated-GELU (v1.1, Flan-T5, mT5)
//! feed-forward. Hugging Face `model_type` `t5` and `mt5` (whose attention width
//! `num_heads × d_kv` may differ from `d_model`). As transformers 5 does, a `t5` model
//! rescales the decoder states by `d_model^-0.5` before the head unless `tie_word_embeddings`
//! is false (or `scale_decoder_outputs` says otherwise); `mt5` never rescales.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{CrossNames, QkvNames, Seq2seqNames, WeightNames};
use crate::config::TokenIds;

/// The fields of a T5 `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Width of the feed-forward layer.
    pub d_ff: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Decoder layers (`num_layers` when absent).
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    /// Attention heads.
    pub num_heads: usize,
    /// Relative position buckets.
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Distance beyond which offsets share the last bucket.
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    /// RMS norm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// `relu`, `gated-gelu`, or `[gated-]ACT`.
    #[serde(default = "default_ff")]
    pub feed_forward_proj: String,
    /// Whether the LM head is the token table (T5: and the states are rescaled before it).
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Whether the decoder states are rescaled by `d_model^-0.5` before the head (written by
    /// transformers 5; when absent, `tie_word_embeddings` decides).
    #[serde(default)]
    pub scale_decoder_outputs: Option<bool>,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// The first decoder token.
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_ff() -> String {
    "relu".into()
}

const ENCODER: WeightNames = WeightNames {
    base: &["encoder"],
    word: "embed_tokens",
    layer: "block.{i}",
    qkv: QkvNames::Separate {
        q: "layer.0.SelfAttention.q",
        k: "layer.0.SelfAttention.k",
        v: "layer.0.SelfAttention.v",
    },
    attention_out: "layer.0.SelfAttention.o",
    attention_norm: "layer.0.layer_norm",
    ffn_up: "layer.1.DenseReluDense.wi",
    ffn_down: "layer.1.DenseReluDense.wo",
    ffn_norm: "layer.1.layer_norm",
    final_norm: "final_layer_norm",
    relative_bias: "block.0.layer.0.SelfAttention.relative_attention_bias",
    ..WeightNames::EMPTY
};

/// The decoder: the feed-forward sub-layer is `layer.2`, after the cross-attention `layer.1`.
pub(crate) const DECODER: WeightNames = WeightNames {
    base: &["decoder"],
    ffn_up: "layer.2.DenseReluDense.wi",
    ffn_down: "layer.2.DenseReluDense.wo",
    ffn_norm: "layer.2.layer_norm",
    cross: Some(CrossNames {
        qkv: QkvNames::Separate {
            q: "layer.1.EncDecAttention.q",
            k: "layer.1.EncDecAttention.k",
            v: "layer.1.EncDecAttention.v",
        },
        out: "layer.1.EncDecAttention.o",
        norm: "layer.1.layer_norm",
    }),
    ..ENCODER
};

const SEQ2SEQ: Seq2seqNames = Seq2seqNames { decoder: DECODER, shared: &["shared"], final_logits_bias: "" };

/// T5's names with the plain feed-forward (`DenseReluDense.wi`, `wo`).
pub const NAMES: WeightNames = WeightNames { seq2seq: Some(&SEQ2SEQ), ..ENCODER };

/// T5's names with the gated feed-forward (`wi_0` activated, times `wi_1`, then `wo`).
pub const GATED_NAMES: WeightNames = WeightNames {
    ffn_gate: "layer.1.DenseReluDense.wi_0",
    ffn_up: "layer.1.DenseReluDense.wi_1",
    seq2seq: Some(&GATED_SEQ2SEQ),
    ..ENCODER
};

const GATED_SEQ2SEQ: Seq2seqNames = Seq2seqNames {
    decoder: WeightNames { ffn_gate: "layer.2.DenseReluDense.wi_0", ffn_up: "layer.2.DenseReluDense.wi_1", ..DECODER },
    ..SEQ2SEQ
};

/// The feed-forward shape `feed_forward_proj` names: `(gated, activation)`, as transformers
/// parses it (`gated-gelu` is the tanh approximation, `gelu_new`).
fn feed_forward(config: &ConfigFile, proj: &str) -> Result<(bool, ActivationKind)> {
    let parts: Vec<&str> = proj.split('-').collect();
    let (gated, act) = match parts.as_slice() {
        [act] => (false, *act),
        ["gated", act] => (true, *act),
        _ => {
            return Err(config.error(format!(
                "`feed_forward_proj` `{proj}` is not `ACT` or `gated-ACT` (e.g. `relu`, `gated-gelu`)"
            )));
        }
    };
    let act = if proj == "gated-gelu" { "gelu_new" } else { act };
    Ok((gated, config.activation("feed_forward_proj", act)?))
}

/// The names of a T5 `config.json`'s checkpoint (plain or gated feed-forward).
pub fn names(config: &ConfigFile) -> Result<WeightNames> {
    let cfg: T5Config = config.parse()?;
    Ok(if feed_forward(config, &cfg.feed_forward_proj)?.0 { GATED_NAMES } else { NAMES })
}

/// The spec of a T5 or mT5 `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: T5Config = config.parse()?;
    // transformers 5: T5 rescales unless `tie_word_embeddings` is false (an explicit
    // `scale_decoder_outputs` wins); mT5 never does.
    let rescale =
        config.model_type()? == "t5" && cfg.scale_decoder_outputs.unwrap_or(cfg.tie_word_embeddings.unwrap_or(true));
    spec_from(config, &cfg, rescale)
}

/// The spec of a T5-layout config (also Switch Transformers' dense skeleton); `rescale` says
/// whether the decoder states are multiplied by `d_model^-0.5` before the head.
pub(crate) fn spec_from(config: &ConfigFile, cfg: &T5Config, rescale: bool) -> Result<ArchSpec> {
    for (field, value) in [
        ("vocab_size", cfg.vocab_size),
        ("d_model", cfg.d_model),
        ("d_kv", cfg.d_kv),
        ("d_ff", cfg.d_ff),
        ("num_heads", cfg.num_heads),
        ("relative_attention_num_buckets", cfg.relative_attention_num_buckets),
    ] {
        config.require_positive(field, value)?;
    }
    let (gated, activation) = feed_forward(config, &cfg.feed_forward_proj)?;
    let ff = FeedForwardSpec {
        bias: false,
        ..if gated {
            FeedForwardSpec::gated(cfg.d_ff, activation)
        } else {
            FeedForwardSpec::plain(cfg.d_ff, activation)
        }
    };
    let attention = |masking| AttentionSpec {
        num_heads: cfg.num_heads,
        num_kv_heads: cfg.num_heads,
        head_dim: cfg.d_kv,
        qkv_bias: false,
        out_bias: false,
        scale: ScaleRule::One,
        masking,
        schedule: Vec::new(),
        qk_norm: None,
        logit_softcap: None,
        local_rotary: None,
        latent: None,
    };
    let tower = |layers: usize, masking| TowerSpec {
        embeddings: EmbeddingSpec::tokens(),
        positions: PositionSpec::T5Bias {
            num_buckets: cfg.relative_attention_num_buckets,
            max_distance: cfg.relative_attention_max_distance,
        },
        attention: attention(masking),
        cross_attention: (masking == Masking::Causal).then(|| attention(Masking::Bidirectional)),
        feed_forward: ff,
        norm: NormSpec::RmsNorm { eps: cfg.layer_norm_epsilon },
        residual: ResidualSpec::Pre,
        final_norm: true,
        // Relative positions: any length (the spec's number is only informative).
        ..TowerSpec::decoder(cfg.vocab_size, cfg.d_model, layers, cfg.num_heads, 512)
    };
    // A stored `lm_head.weight` is used when present, the token table otherwise.
    let tied = cfg.tie_word_embeddings.unwrap_or(true);
    let head = match rescale {
        true => HeadSpec::ScaledLm { tied, scale: (cfg.d_model as f64).powf(-0.5) },
        false => HeadSpec::Lm { tied, bias: false },
    };
    let pad = cfg.pad_token_id.unwrap_or(0);
    let tokens = SpecialTokens {
        eos: match cfg.eos_token_id.to_vec() {
            ids if ids.is_empty() => vec![1],
            ids => ids,
        },
        pad,
        decoder_start: Some(cfg.decoder_start_token_id.unwrap_or(pad)),
    };
    Ok(ArchSpec {
        stacks: Stacks::EncoderDecoder {
            encoder: tower(cfg.num_layers, Masking::Bidirectional),
            decoder: tower(cfg.num_decoder_layers.unwrap_or(cfg.num_layers), Masking::Causal),
            shared_embeddings: true,
        },
        heads: vec![head],
        tokens,
    })
}
