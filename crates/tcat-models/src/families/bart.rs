//! BART (Lewis et al. 2019, "BART: Denoising Sequence-to-Sequence Pre-training"), mBART (Liu et
//! al. 2020, "Multilingual Denoising Pre-training for Neural Machine Translation") and Marian
//! (Junczys-Dowmunt et al. 2018; the OPUS-MT models, the original Transformer of Vaswani et al.
//! 2017): one encoder-decoder layout with three placements of the norms and positions.
//! - `bart`: post-LN layers, a LayerNorm on the embeddings, learned positions offset by 2;
//! - `mbart`: pre-LN layers with a final LayerNorm on each stack, otherwise BART;
//! - `marian`: post-LN, no embedding norm, sinusoidal positions (sines in the first half of
//!   the features, cosines in the second), encoder and decoder tables shared or not.
//!
//! All three add `final_logits_bias` to the logits and scale word vectors by √d_model when
//! `scale_embedding` says so. Hugging Face `model_type` `bart`, `mbart`, `marian`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{CrossNames, QkvNames, Seq2seqNames, WeightNames};
use crate::config::TokenIds;

/// Which of the three layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// BART: post-LN, embedding LayerNorm, learned positions offset by 2.
    Bart,
    /// mBART: BART with pre-LN layers and a final LayerNorm per stack.
    MBart,
    /// Marian: post-LN, sinusoidal positions, no embedding LayerNorm.
    Marian,
}

/// The fields of a BART-layout `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct BartConfig {
    /// Vocabulary size (the encoder's, and the decoder's unless `decoder_vocab_size`).
    pub vocab_size: usize,
    /// Marian: the decoder's vocabulary size when its table is separate.
    #[serde(default)]
    pub decoder_vocab_size: Option<usize>,
    /// Width of the hidden states.
    pub d_model: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Encoder attention heads.
    pub encoder_attention_heads: usize,
    /// Decoder attention heads.
    pub decoder_attention_heads: usize,
    /// Encoder feed-forward width.
    pub encoder_ffn_dim: usize,
    /// Decoder feed-forward width.
    pub decoder_ffn_dim: usize,
    /// Feed-forward activation.
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// Rows of the position table (without BART's offset of 2).
    pub max_position_embeddings: usize,
    /// Whether word vectors are multiplied by √d_model.
    #[serde(default)]
    pub scale_embedding: bool,
    /// Marian: whether encoder and decoder share one token table.
    #[serde(default = "default_true")]
    pub share_encoder_decoder_embeddings: bool,
    /// Whether the LM head is the decoder's token table.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
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

fn default_act() -> String {
    "gelu".into()
}
fn default_true() -> bool {
    true
}

const ENCODER: WeightNames = WeightNames {
    base: &["model.encoder", "encoder"],
    word: "embed_tokens",
    positions: "embed_positions",
    embedding_norm: "layernorm_embedding",
    layer: "layers.{i}",
    qkv: QkvNames::Separate { q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj" },
    attention_out: "self_attn.out_proj",
    attention_norm: "self_attn_layer_norm",
    ffn_up: "fc1",
    ffn_down: "fc2",
    ffn_norm: "final_layer_norm",
    final_norm: "layer_norm",
    ..WeightNames::EMPTY
};

const SEQ2SEQ: Seq2seqNames = Seq2seqNames {
    decoder: WeightNames {
        base: &["model.decoder", "decoder"],
        cross: Some(CrossNames {
            qkv: QkvNames::Separate { q: "encoder_attn.q_proj", k: "encoder_attn.k_proj", v: "encoder_attn.v_proj" },
            out: "encoder_attn.out_proj",
            norm: "encoder_attn_layer_norm",
        }),
        ..ENCODER
    },
    shared: &["model.shared", "shared"],
    final_logits_bias: "final_logits_bias",
};

/// The names of BART, mBART and Marian checkpoints (`model.` prefixed or bare).
pub const NAMES: WeightNames = WeightNames { seq2seq: Some(&SEQ2SEQ), ..ENCODER };

/// The spec of a BART `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    spec_with(config, Variant::Bart)
}

/// The spec of an mBART `config.json`.
pub fn mbart_spec(config: &ConfigFile) -> Result<ArchSpec> {
    spec_with(config, Variant::MBart)
}

/// The spec of a Marian `config.json`.
pub fn marian_spec(config: &ConfigFile) -> Result<ArchSpec> {
    spec_with(config, Variant::Marian)
}

/// The spec of a BART-layout `config.json` in the given layout.
pub fn spec_with(config: &ConfigFile, variant: Variant) -> Result<ArchSpec> {
    let cfg: BartConfig = config.parse()?;
    config.require_heads("d_model", cfg.d_model, "encoder_attention_heads", cfg.encoder_attention_heads)?;
    config.require_heads("d_model", cfg.d_model, "decoder_attention_heads", cfg.decoder_attention_heads)?;
    for (field, value) in [
        ("vocab_size", cfg.vocab_size),
        ("encoder_ffn_dim", cfg.encoder_ffn_dim),
        ("decoder_ffn_dim", cfg.decoder_ffn_dim),
        ("max_position_embeddings", cfg.max_position_embeddings),
    ] {
        config.require_positive(field, value)?;
    }
    let shared = variant != Variant::Marian || cfg.share_encoder_decoder_embeddings;
    let decoder_vocab = match (variant, cfg.decoder_vocab_size) {
        (Variant::Marian, Some(n)) => n,
        _ => cfg.vocab_size,
    };
    if shared && decoder_vocab != cfg.vocab_size {
        return Err(config.error(format!(
            "`decoder_vocab_size` ({decoder_vocab}) differs from `vocab_size` ({}) but the embeddings are shared",
            cfg.vocab_size
        )));
    }
    let activation = config.activation("activation_function", &cfg.activation_function)?;
    let (positions, residual, embedding_norm) = match variant {
        Variant::Bart => {
            (PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 2 } }, ResidualSpec::Post, true)
        }
        Variant::MBart => {
            (PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 2 } }, ResidualSpec::Pre, true)
        }
        Variant::Marian => {
            (PositionSpec::Sinusoidal { layout: SinusoidalLayoutSpec::HalfSplit }, ResidualSpec::Post, false)
        }
    };
    let tower = |vocab: usize, layers: usize, heads: usize, ffn: usize, masking: Masking| {
        let mut tower = TowerSpec::decoder(vocab, cfg.d_model, layers, heads, cfg.max_position_embeddings)
            .with_positions(positions)
            .with_residual(residual)
            .with_norm(NormSpec::LayerNorm { eps: 1e-5, bias: true })
            .with_feed_forward(FeedForwardSpec::plain(ffn, activation))
            .with_attention(AttentionSpec::multi_head(cfg.d_model, heads, masking));
        tower.embeddings = EmbeddingSpec {
            norm: embedding_norm,
            scale: if cfg.scale_embedding { EmbeddingScale::SqrtHidden } else { EmbeddingScale::None },
            ..EmbeddingSpec::tokens()
        };
        tower.final_norm = variant == Variant::MBart;
        if masking == Masking::Causal {
            tower.cross_attention = Some(AttentionSpec::multi_head(cfg.d_model, heads, Masking::Bidirectional));
        }
        tower
    };
    let pad = cfg.pad_token_id.unwrap_or(1);
    let eos = cfg.eos_token_id.to_vec();
    let tokens = SpecialTokens {
        eos: if eos.is_empty() { vec![2] } else { eos },
        pad,
        decoder_start: cfg.decoder_start_token_id.or(match variant {
            Variant::Marian => Some(pad),
            Variant::Bart | Variant::MBart => None,
        }),
    };
    Ok(ArchSpec {
        stacks: Stacks::EncoderDecoder {
            encoder: tower(
                cfg.vocab_size,
                cfg.encoder_layers,
                cfg.encoder_attention_heads,
                cfg.encoder_ffn_dim,
                Masking::Bidirectional,
            ),
            decoder: tower(
                decoder_vocab,
                cfg.decoder_layers,
                cfg.decoder_attention_heads,
                cfg.decoder_ffn_dim,
                Masking::Causal,
            ),
            shared_embeddings: shared,
        },
        heads: vec![HeadSpec::Lm { tied: cfg.tie_word_embeddings, bias: true }],
        tokens,
    })
}
