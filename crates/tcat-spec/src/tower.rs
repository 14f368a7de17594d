//! One tower (a stack of layers with its embeddings) as data: embeddings (Devlin et al. 2018,
//! §3.2; ALBERT's factorised table, Lan et al. 2019, §3.1; ViT's patches, Dosovitskiy et al.
//! 2020, §3.1), norm kind and residual placement (post-norm, Vaswani et al. 2017; pre-norm,
//! Xiong et al. 2020; parallel, Wang & Komatsuzaki 2021 / Chowdhery et al. 2022; sandwich,
//! Ding et al. 2021), layer sharing (ALBERT §3.1), and ERNIE-THU's entity fusion (Zhang et al.
//! 2019, §3.3).

use serde::{Deserialize, Serialize};

use crate::{ActivationKind, AttentionSpec, FeedForwardKind, FeedForwardSpec, Masking, PositionIdRule, PositionSpec};

/// What the tower reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "input")]
pub enum InputKind {
    /// Token ids.
    Tokens,
    /// Images cut into `patch × patch` squares, each projected to the hidden width (the
    /// convolution as one matmul over unfolded patches), with a class token in front.
    Patches {
        /// Image side in pixels.
        image_size: usize,
        /// Patch side in pixels.
        patch_size: usize,
        /// Colour channels.
        channels: usize,
    },
}

/// Embeddings narrower than the hidden states and their projection to the hidden width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "projection")]
pub enum EmbeddingProjection {
    /// Every table is as wide as the hidden states.
    None,
    /// All embedding tables are `width` wide and their normalised sum is projected to the
    /// hidden width (ALBERT's factorised embeddings, ELECTRA's small generator).
    Summed {
        /// Embedding width E.
        width: usize,
    },
    /// All embedding tables are `width` wide and their sum is projected (without a bias) to the
    /// hidden width before the norm, which normalises hidden-wide vectors (DeBERTa's
    /// `embed_proj`, when its `embedding_size` differs from `hidden_size`).
    SummedBeforeNorm {
        /// Embedding width E.
        width: usize,
    },
    /// Only the word table is `width` wide: word vectors are projected in before the
    /// (hidden-wide) positions are added, and the final states projected back out before a
    /// tied head (OPT-350m's `word_embed_proj_dim`).
    Words {
        /// Word-vector width.
        width: usize,
    },
}

/// How the word vectors are scaled before positions are added.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scale")]
pub enum EmbeddingScale {
    /// Unscaled.
    None,
    /// By `√hidden` (Vaswani et al. 2017, §3.4; CTRL, BART's `scale_embedding`, Marian).
    SqrtHidden,
}

/// The input embedding of a tower.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingSpec {
    /// Tokens or patches.
    pub input: InputKind,
    /// A token table narrower than the hidden states, and where it is projected.
    pub projection: EmbeddingProjection,
    /// Rows of the segment (token-type) table; 0 for none.
    pub token_types: usize,
    /// Rows of the language table (XLM); 0 for none.
    pub languages: usize,
    /// Word-vector scaling.
    pub scale: EmbeddingScale,
    /// Whether a norm follows the sum (BERT, BLOOM, BART).
    pub norm: bool,
    /// How token types (segments) reach the model.
    #[serde(default)]
    pub segments: SegmentEncoding,
}

/// How a tower encodes token types (segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentEncoding {
    /// A table of [`EmbeddingSpec::token_types`] rows added to the embeddings (BERT), when it
    /// has rows.
    #[default]
    Absolute,
    /// XLNet's relative segment encodings (Yang et al. 2019, §2.5): no table; every attention
    /// layer adds `(q_i + b)·s_±` by whether query and key share a token type.
    Relative,
}

impl EmbeddingSpec {
    /// Token embeddings with nothing else.
    pub fn tokens() -> Self {
        Self {
            input: InputKind::Tokens,
            projection: EmbeddingProjection::None,
            token_types: 0,
            languages: 0,
            scale: EmbeddingScale::None,
            norm: false,
            segments: SegmentEncoding::Absolute,
        }
    }
}

/// Norm kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "norm")]
pub enum NormSpec {
    /// LayerNorm (Ba et al. 2016), with or without bias.
    LayerNorm {
        /// ε.
        eps: f64,
        /// Whether the norm has a bias.
        bias: bool,
    },
    /// RMSNorm (Zhang & Sennrich 2019): no mean, no bias (T5's LayerNorm, LLaMA, Gopher).
    RmsNorm {
        /// ε.
        eps: f64,
    },
    /// RMSNorm whose gain is `1 + w`, computed in f32 and cast back (Gemma: Gemma Team 2024,
    /// "Gemma: Open Models Based on Gemini Research and Technology"; Gemma 2 and 3): the stored
    /// weights are offsets from one, so a zero weight is the identity gain. Query/key norms of
    /// such a tower ([`AttentionSpec::qk_norm`](crate::AttentionSpec)) use the same convention.
    RmsNormPlusOne {
        /// ε.
        eps: f64,
    },
}

impl NormSpec {
    /// The norm's ε.
    ///
    /// ```
    /// assert_eq!(tcat_spec::NormSpec::RmsNormPlusOne { eps: 1e-6 }.eps(), 1e-6);
    /// ```
    pub fn eps(self) -> f64 {
        match self {
            NormSpec::LayerNorm { eps, .. } | NormSpec::RmsNorm { eps } | NormSpec::RmsNormPlusOne { eps } => eps,
        }
    }
}

/// Where the norms sit relative to the residual additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualSpec {
    /// `x = norm(x + f(x))`.
    Post,
    /// `x = x + f(norm(x))`.
    Pre,
    /// `x = x + attn(norm₁(x)) + ffn(norm₂(x))` (GPT-NeoX).
    Parallel,
    /// Parallel with one norm for both branches (GPT-J, PaLM).
    ParallelSharedNorm,
    /// `x = x + norm₂(f(norm₁(x)))` (CogView's sandwich norm; Gemma 2 and 3 around both the
    /// attention and the feed-forward branch: `input_layernorm` / `post_attention_layernorm`,
    /// `pre_feedforward_layernorm` / `post_feedforward_layernorm`).
    Sandwich,
}

/// Whether layers share weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "sharing")]
pub enum LayerSharing {
    /// Each layer has its own weights.
    None,
    /// `groups` sets of weights reused in turn by all layers (ALBERT: one group).
    Groups {
        /// Distinct weight sets.
        groups: usize,
    },
}

/// ERNIE-THU's knowledgeable encoder: after the text layers, `layers` fusion layers mix entity
/// embeddings (width `entity_dim`, aligned to the first token of their mention) into the token
/// states.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntityFusionSpec {
    /// Fusion layers (K in the paper).
    pub layers: usize,
    /// Entity embedding width (TransE vectors, 100 in the paper).
    pub entity_dim: usize,
    /// Entities in the table.
    pub entity_vocab: usize,
    /// Attention heads over the entity sequence.
    pub entity_heads: usize,
}

/// A convolution over the tokens beside the first layer (DeBERTa-v2's n-gram induced input
/// encoding): `LayerNorm(first output + act(conv(first input)))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenConvolutionSpec {
    /// Kernel width in tokens (odd).
    pub kernel: usize,
    /// Channel groups.
    pub groups: usize,
    /// Activation after the convolution.
    pub activation: ActivationKind,
}

/// One tower: embeddings, positions, and a stack of layers of one shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TowerSpec {
    /// Token table rows (0 for patch towers).
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Layers.
    pub num_layers: usize,
    /// Longest sequence the positions cover.
    pub max_positions: usize,
    /// Input embedding.
    pub embeddings: EmbeddingSpec,
    /// Position scheme.
    pub positions: PositionSpec,
    /// Self-attention.
    pub attention: AttentionSpec,
    /// Cross-attention to another tower's output (encoder-decoder decoders), if any.
    #[serde(default)]
    pub cross_attention: Option<AttentionSpec>,
    /// Feed-forward.
    pub feed_forward: FeedForwardSpec,
    /// Norm kind.
    pub norm: NormSpec,
    /// Residual placement.
    pub residual: ResidualSpec,
    /// Whether a norm follows the last layer (pre-norm models).
    pub final_norm: bool,
    /// Weight sharing across layers.
    pub sharing: LayerSharing,
    /// A convolution beside the first layer, if any (DeBERTa-v2).
    #[serde(default)]
    pub convolution: Option<TokenConvolutionSpec>,
    /// Whether the first layer's attention branch has no norm of its own (its input passes
    /// unchanged): ModernBERT (Warner et al. 2024, §2.1.1), whose embeddings end in a norm, so
    /// `layers.0.attn_norm` is the identity. The other norms keep their places.
    #[serde(default)]
    pub skip_first_attention_norm: bool,
    /// ERNIE-THU's entity fusion, if any.
    #[serde(default)]
    pub entity_fusion: Option<EntityFusionSpec>,
}

impl TowerSpec {
    /// A GPT-2-like causal tower: learned positions, pre-LayerNorm with a final norm, GELU
    /// (tanh) feed-forward of 4× width, biases everywhere; refine with the `with_*` methods.
    pub fn decoder(vocab_size: usize, hidden: usize, layers: usize, heads: usize, max_positions: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: hidden,
            num_layers: layers,
            max_positions,
            embeddings: EmbeddingSpec::tokens(),
            positions: PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } },
            attention: AttentionSpec::multi_head(hidden, heads, Masking::Causal),
            cross_attention: None,
            feed_forward: FeedForwardSpec::plain(4 * hidden, ActivationKind::GeluTanh),
            norm: NormSpec::LayerNorm { eps: 1e-5, bias: true },
            residual: ResidualSpec::Pre,
            final_norm: true,
            sharing: LayerSharing::None,
            entity_fusion: None,
            convolution: None,
            skip_first_attention_norm: false,
        }
    }

    /// A BERT-like bidirectional tower: learned positions, two token types, an embedding
    /// LayerNorm, post-norm layers, exact-GELU feed-forward of 4× width.
    pub fn encoder(vocab_size: usize, hidden: usize, layers: usize, heads: usize, max_positions: usize) -> Self {
        Self {
            embeddings: EmbeddingSpec { token_types: 2, norm: true, ..EmbeddingSpec::tokens() },
            attention: AttentionSpec::multi_head(hidden, heads, Masking::Bidirectional),
            feed_forward: FeedForwardSpec::plain(4 * hidden, ActivationKind::Gelu),
            norm: NormSpec::LayerNorm { eps: 1e-12, bias: true },
            residual: ResidualSpec::Post,
            final_norm: false,
            ..Self::decoder(vocab_size, hidden, layers, heads, max_positions)
        }
    }

    /// Replaces the position scheme.
    pub fn with_positions(mut self, positions: PositionSpec) -> Self {
        self.positions = positions;
        self
    }

    /// Replaces the norm kind.
    pub fn with_norm(mut self, norm: NormSpec) -> Self {
        self.norm = norm;
        self
    }

    /// Replaces the feed-forward network.
    pub fn with_feed_forward(mut self, feed_forward: FeedForwardSpec) -> Self {
        self.feed_forward = feed_forward;
        self
    }

    /// Replaces the self-attention.
    pub fn with_attention(mut self, attention: AttentionSpec) -> Self {
        self.attention = attention;
        self
    }

    /// Replaces the residual placement.
    pub fn with_residual(mut self, residual: ResidualSpec) -> Self {
        self.residual = residual;
        self
    }

    /// Width of the token table (the factorised width when there is one).
    pub fn embedding_width(&self) -> usize {
        match self.embeddings.projection {
            EmbeddingProjection::None => self.hidden_size,
            EmbeddingProjection::Summed { width }
            | EmbeddingProjection::SummedBeforeNorm { width }
            | EmbeddingProjection::Words { width } => width,
        }
    }

    /// Width of the position, segment and language tables.
    pub fn side_table_width(&self) -> usize {
        match self.embeddings.projection {
            EmbeddingProjection::Summed { width } | EmbeddingProjection::SummedBeforeNorm { width } => width,
            EmbeddingProjection::None | EmbeddingProjection::Words { .. } => self.hidden_size,
        }
    }

    /// Width of the norm after the embeddings: the table width when the normalised sum is
    /// projected ([`EmbeddingProjection::Summed`]), else the hidden width.
    pub fn embedding_norm_width(&self) -> usize {
        match self.embeddings.projection {
            EmbeddingProjection::Summed { width } => width,
            _ => self.hidden_size,
        }
    }

    /// Whether layer `layer` runs a mixture of experts.
    pub fn is_sparse_layer(&self, layer: usize) -> bool {
        self.feed_forward.experts.is_some_and(|moe| moe.is_sparse(layer))
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let positive = |field: &str, v: usize| if v == 0 { Err(format!("`{field}` must be positive")) } else { Ok(()) };
        positive("hidden_size", self.hidden_size)?;
        positive("num_layers", self.num_layers)?;
        positive("max_positions", self.max_positions)?;
        positive("feed_forward.inner", self.feed_forward.inner)?;
        if self.embeddings.input == InputKind::Tokens {
            positive("vocab_size", self.vocab_size)?;
        }
        self.attention.validate()?;
        if let Some(cross) = &self.cross_attention {
            cross.validate().map_err(|e| format!("cross_attention: {e}"))?;
        }
        if let Some(moe) = &self.feed_forward.experts {
            positive("experts.num_experts", moe.num_experts)?;
            positive("experts.every", moe.every)?;
            if moe.active_experts() == 0 || moe.active_experts() > moe.num_experts {
                return Err(format!(
                    "experts: a router choosing {} of {} experts",
                    moe.active_experts(),
                    moe.num_experts
                ));
            }
        }
        if let LayerSharing::Groups { groups } = self.sharing
            && (groups == 0 || groups > self.num_layers)
        {
            return Err(format!("layer sharing: {groups} groups for {} layers", self.num_layers));
        }
        if let Some(local) = self.attention.local_rotary
            && !matches!(self.positions, PositionSpec::Rotary(_))
        {
            return Err(format!("attention.local_rotary {local:?} is set, but the tower's positions are not rotary"));
        }
        let rotaries = match self.positions {
            PositionSpec::Rotary(rotary) => [Some(rotary), self.attention.local_rotary],
            _ => [None, None],
        };
        for rotary in rotaries.into_iter().flatten() {
            let d = rotary.rotary_dim(self.attention.head_dim);
            if d == 0 || d > self.attention.head_dim {
                return Err(format!(
                    "rotary fraction {} of head_dim {} rotates {d} features; expected 2..={}",
                    rotary.fraction, self.attention.head_dim, self.attention.head_dim
                ));
            }
        }
        if self.feed_forward.kind == FeedForwardKind::Gated && self.feed_forward.inner == 0 {
            return Err("gated feed-forward needs a positive inner width".into());
        }
        Ok(())
    }
}
