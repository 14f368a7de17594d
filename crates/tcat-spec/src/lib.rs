//! Transformer architectures as data.
//!
//! An [`ArchSpec`] is the shape of a model written as numbers and enums: its stacks
//! ([`Stacks`]: encoder, decoder, encoder-decoder with cross-attention, dual or
//! vision-language towers), each tower's embeddings, position scheme, attention (heads,
//! grouping, scale rule and a per-layer schedule of dense, local and sparse patterns), norm and
//! residual placement, feed-forward (plain, gated, or a mixture of experts with its router),
//! layer sharing, and the heads on top. It carries no weights: a family module maps a
//! Hugging Face `config.json` (or GGUF metadata) onto a spec, a preset writes one by hand at a
//! paper's size, and one builder (in `tcat-models`) turns any spec plus a weight source into a
//! runnable model. Parameter counts come from the spec alone ([`ArchSpec::param_count`]),
//! without allocating a tensor.
//!
//! Every row of the Transformer catalog can be described, including those whose blocks are not
//! built yet; building such a spec fails with a clear "not implemented yet" error naming the
//! part, never silently.
//!
//! ```
//! use tcat_spec::*;
//! let tower = TowerSpec::decoder(1000, 64, 2, 4, 128)
//!     .with_positions(PositionSpec::Rotary(RotarySpec::full(10000.0)))
//!     .with_norm(NormSpec::RmsNorm { eps: 1e-6 })
//!     .with_feed_forward(FeedForwardSpec::gated(172, ActivationKind::Silu));
//! let spec = ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false });
//! assert_eq!(spec.kind(), ModelKind::Decoder);
//! let json = serde_json::to_string(&spec).unwrap();
//! assert_eq!(serde_json::from_str::<ArchSpec>(&json).unwrap(), spec);
//! ```

mod attention;
mod feed_forward;
mod heads;
mod params;
mod position;
mod tower;

pub use attention::{AttentionPattern, AttentionSpec, LatentSpec, Masking, QkNormSpec, ScaleRule};
pub use feed_forward::{
    ActivationKind, FeedForwardKind, FeedForwardSpec, MoeSpec, RouterSpec, RoutingRule, SharedExpertSpec,
};
pub use heads::{ConditioningSpec, HeadSpec};
pub use params::ParamCount;
pub use position::{
    DisentangledTerms, PositionIdRule, PositionSpec, RopeScalingSpec, RotaryLayoutSpec, RotarySpec,
    SinusoidalLayoutSpec, XlBiases,
};
pub use tower::{
    EmbeddingProjection, EmbeddingScale, EmbeddingSpec, EntityFusionSpec, InputKind, LayerSharing, NormSpec,
    ResidualSpec, SegmentEncoding, TokenConvolutionSpec, TowerSpec,
};

use serde::{Deserialize, Serialize};

/// What a model computes, by the shape of its stacks (the catalog's `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A bidirectional text encoder (BERT and its descendants).
    Encoder,
    /// A causal language model (GPT and its descendants).
    Decoder,
    /// An encoder whose output a decoder reads through cross-attention (T5, BART, Marian).
    Seq2seq,
    /// An encoder over image patches (ViT).
    Vision,
    /// Text and image towers together (CLIP, CoCa, PaLM-E, DALL-E's text-and-image decoder is a
    /// [`Decoder`](Self::Decoder)).
    Multimodal,
}

impl ModelKind {
    /// The lowercase name used in the catalog and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Encoder => "encoder",
            ModelKind::Decoder => "decoder",
            ModelKind::Seq2seq => "seq2seq",
            ModelKind::Vision => "vision",
            ModelKind::Multimodal => "multimodal",
        }
    }
}

/// How a vision tower feeds a text decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum VisionConnection {
    /// The image tokens, projected to the decoder's width, are prepended to its input sequence
    /// (PaLM-E's multimodal sentences, Driess et al. 2023, §3).
    PrefixEmbeddings,
    /// Attentional pooling of the image tokens into `queries` vectors, read by the decoder's
    /// cross-attention layers (CoCa, Yu et al. 2022, §3.2).
    AttentionalPooling {
        /// Learned pooling queries.
        queries: usize,
        /// Layers of the decoder before cross-attention starts (CoCa's unimodal text layers).
        unimodal_layers: usize,
    },
}

/// The stacks of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Stacks {
    /// One bidirectional tower.
    Encoder {
        /// The tower.
        tower: TowerSpec,
    },
    /// One causal tower.
    Decoder {
        /// The tower.
        tower: TowerSpec,
    },
    /// An encoder and a decoder whose layers cross-attend to the encoder output (Vaswani et al.
    /// 2017, §3.2.3); the decoder tower has [`TowerSpec::cross_attention`] set.
    EncoderDecoder {
        /// The encoder tower.
        encoder: TowerSpec,
        /// The decoder tower.
        decoder: TowerSpec,
        /// Whether both towers share one token table (T5, BART, Marian as configured).
        shared_embeddings: bool,
    },
    /// Text and image towers trained contrastively, each with a projection to a joint space
    /// (CLIP, Radford et al. 2021, §2.3).
    DualEncoder {
        /// The (causal) text tower.
        text: TowerSpec,
        /// The image tower.
        vision: TowerSpec,
        /// Width of the joint embedding space.
        projection_dim: usize,
    },
    /// An image tower feeding a text decoder (CoCa, PaLM-E).
    VisionLanguage {
        /// The image tower.
        vision: TowerSpec,
        /// The text decoder.
        decoder: TowerSpec,
        /// How the image tokens reach the decoder.
        connection: VisionConnection,
    },
}

/// Token ids with a meaning for generation and batching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Ids that end generation.
    #[serde(default)]
    pub eos: Vec<u32>,
    /// The id used to pad batches.
    #[serde(default)]
    pub pad: u32,
    /// The first decoder token of encoder-decoders.
    #[serde(default)]
    pub decoder_start: Option<u32>,
}

/// A whole model: its stacks, its heads and its special tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchSpec {
    /// The stacks.
    pub stacks: Stacks,
    /// The heads on the final hidden states (an LM head, a pooler, an MLM head, ...).
    #[serde(default)]
    pub heads: Vec<HeadSpec>,
    /// Special token ids.
    #[serde(default)]
    pub tokens: SpecialTokens,
}

impl ArchSpec {
    /// A decoder-only model with one head.
    pub fn decoder(tower: TowerSpec, head: HeadSpec) -> Self {
        Self { stacks: Stacks::Decoder { tower }, heads: vec![head], tokens: SpecialTokens::default() }
    }

    /// An encoder-only model with its heads.
    pub fn encoder(tower: TowerSpec, heads: Vec<HeadSpec>) -> Self {
        Self { stacks: Stacks::Encoder { tower }, heads, tokens: SpecialTokens::default() }
    }

    /// Sets the special tokens.
    pub fn with_tokens(mut self, tokens: SpecialTokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// What the model computes.
    pub fn kind(&self) -> ModelKind {
        match &self.stacks {
            Stacks::Encoder { tower } if tower.embeddings.input != InputKind::Tokens => ModelKind::Vision,
            Stacks::Encoder { .. } => ModelKind::Encoder,
            Stacks::Decoder { .. } => ModelKind::Decoder,
            Stacks::EncoderDecoder { .. } => ModelKind::Seq2seq,
            Stacks::DualEncoder { .. } | Stacks::VisionLanguage { .. } => ModelKind::Multimodal,
        }
    }

    /// The towers, in order (encoder before decoder, vision before text).
    pub fn towers(&self) -> Vec<&TowerSpec> {
        match &self.stacks {
            Stacks::Encoder { tower } | Stacks::Decoder { tower } => vec![tower],
            Stacks::EncoderDecoder { encoder, decoder, .. } => vec![encoder, decoder],
            Stacks::DualEncoder { text, vision, .. } => vec![vision, text],
            Stacks::VisionLanguage { vision, decoder, .. } => vec![vision, decoder],
        }
    }

    /// The tower a single-stack builder runs (the only one of an encoder or decoder).
    pub fn single_tower(&self) -> Option<&TowerSpec> {
        match &self.stacks {
            Stacks::Encoder { tower } | Stacks::Decoder { tower } => Some(tower),
            _ => None,
        }
    }

    /// Checks that the numbers fit together (heads divide widths, schedules are not empty,
    /// routers pick fewer experts than exist, ...), naming the first field that does not.
    pub fn validate(&self) -> Result<(), String> {
        for (i, tower) in self.towers().into_iter().enumerate() {
            tower.validate().map_err(|e| if i == 0 { e } else { format!("tower {i}: {e}") })?;
        }
        Ok(())
    }
}
