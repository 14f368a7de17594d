//! Named configurations and `load(vb, &config)` constructors for the blocks (the tone of burn's
//! `*Config` structs and candle-nn's `linear(in, out, vb)`): norms (Ba et al. 2016; Zhang &
//! Sennrich 2019), feed-forward networks (Vaswani et al. 2017, §3.3; Shazeer 2020), embeddings
//! (Devlin et al. 2018, §3.2) and whole layers. Every weight name is a field with a documented
//! default; construction errors name the field.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use tcat_attention::{AttentionConfig, MultiHeadAttention};
use tcat_core::{Linear, WeightLayout};
use tcat_position::AbsolutePositions;

use crate::{Activation, Embeddings, FeedForward, Norm, Residual, TransformerLayer};

/// Which normalisation a [`NormConfig`] loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormKind {
    /// LayerNorm with gain and bias (`weight`, `bias`; `gamma`, `beta` accepted).
    LayerNorm,
    /// RMSNorm with gain only (`weight`). The default.
    #[default]
    RmsNorm,
}

/// A norm over `dim` features: RMSNorm with ε = 1e-6 by default.
///
/// ```
/// use candle_core::{DType, Device};
/// use candle_nn::VarBuilder;
/// use tcat_blocks::{Norm, NormConfig, NormKind};
/// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
/// let norm = Norm::load(vb.pp("ln"), &NormConfig::new(8).with_kind(NormKind::LayerNorm).with_eps(1e-5)).unwrap();
/// assert!(matches!(norm, Norm::LayerNorm { .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormConfig {
    /// Features normalised.
    pub dim: usize,
    /// LayerNorm or RMSNorm (default RMSNorm).
    pub kind: NormKind,
    /// ε (default 1e-6).
    pub eps: f64,
}

impl NormConfig {
    /// RMSNorm over `dim` features with ε = 1e-6.
    pub fn new(dim: usize) -> Self {
        Self { dim, kind: NormKind::RmsNorm, eps: 1e-6 }
    }

    /// Sets the kind.
    pub fn with_kind(mut self, kind: NormKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
}

impl Norm {
    /// Loads the norm's tensors under `vb`.
    pub fn load(vb: VarBuilder, config: &NormConfig) -> Result<Self> {
        if config.dim == 0 || !(config.eps >= 0.0 && config.eps.is_finite()) {
            candle_core::bail!("norm config: `dim` must be positive and `eps` finite and ≥ 0, found {config:?}");
        }
        match config.kind {
            NormKind::LayerNorm => Self::load_layer_norm(vb, config.dim, config.eps),
            NormKind::RmsNorm => Self::load_rms_norm(vb, config.dim, config.eps),
        }
    }
}

/// Plain or gated feed-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedForwardKind {
    /// `down(act(up(x)))`.
    Plain,
    /// `down(act(gate(x)) ⊙ up(x))` (SwiGLU, GeGLU). The default.
    #[default]
    Gated,
}

/// Whether the feed-forward projections carry biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedForwardBias {
    /// No biases (LLaMA). The default.
    #[default]
    None,
    /// Every projection (BERT, GPT-2).
    All,
}

/// Weight names of a feed-forward network under the `VarBuilder` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedForwardNames {
    /// `hidden → inner` (the value path of a gated network).
    pub up: String,
    /// The gate of a gated network.
    pub gate: String,
    /// `inner → hidden`.
    pub down: String,
}

impl Default for FeedForwardNames {
    /// LLaMA's `up_proj`, `gate_proj`, `down_proj`.
    fn default() -> Self {
        Self { up: "up_proj".into(), gate: "gate_proj".into(), down: "down_proj".into() }
    }
}

/// A feed-forward network: by default LLaMA's SwiGLU (gated, SiLU, no biases, `up_proj`,
/// `gate_proj`, `down_proj` stored `[out, in]`).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::VarBuilder;
/// use tcat_blocks::{FeedForward, FeedForwardConfig};
/// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
/// let ffn = FeedForward::load(vb.pp("mlp"), &FeedForwardConfig::new(8, 32)).unwrap();
/// let y = ffn.forward(&Tensor::ones((1, 2, 8), DType::F32, &Device::Cpu).unwrap()).unwrap();
/// assert_eq!(y.dims(), &[1, 2, 8]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForwardConfig {
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the inner layer.
    pub intermediate_size: usize,
    /// Plain or gated (default gated).
    pub kind: FeedForwardKind,
    /// Activation (default SiLU).
    pub activation: Activation,
    /// Biases (default none).
    pub bias: FeedForwardBias,
    /// Orientation of the stored weights (default `[out, in]`).
    pub weight_layout: WeightLayout,
    /// Weight names (default LLaMA's).
    pub names: FeedForwardNames,
}

impl FeedForwardConfig {
    /// SwiGLU from `hidden_size` through `intermediate_size`.
    pub fn new(hidden_size: usize, intermediate_size: usize) -> Self {
        Self {
            hidden_size,
            intermediate_size,
            kind: FeedForwardKind::Gated,
            activation: Activation::Silu,
            bias: FeedForwardBias::None,
            weight_layout: WeightLayout::OutIn,
            names: FeedForwardNames::default(),
        }
    }

    /// Sets plain or gated.
    pub fn with_kind(mut self, kind: FeedForwardKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the biases.
    pub fn with_bias(mut self, bias: FeedForwardBias) -> Self {
        self.bias = bias;
        self
    }

    /// Sets the weight orientation.
    pub fn with_weight_layout(mut self, layout: WeightLayout) -> Self {
        self.weight_layout = layout;
        self
    }

    /// Sets the weight names.
    pub fn with_names(mut self, names: FeedForwardNames) -> Self {
        self.names = names;
        self
    }
}

impl FeedForward {
    /// Loads the projections named by `config.names` under `vb`.
    pub fn load(vb: VarBuilder, config: &FeedForwardConfig) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        if h == 0 || i == 0 {
            candle_core::bail!(
                "feed-forward config: `hidden_size` and `intermediate_size` must be positive, found {h} and {i}"
            );
        }
        let bias = config.bias == FeedForwardBias::All;
        let lin = |name: &str, i, o| Linear::load(vb.pp(name), i, o, bias, config.weight_layout);
        let (up, down) = (lin(&config.names.up, h, i)?, lin(&config.names.down, i, h)?);
        Ok(match config.kind {
            FeedForwardKind::Plain => Self::new(up, down, config.activation),
            FeedForwardKind::Gated => Self::gated(lin(&config.names.gate, h, i)?, up, down, config.activation),
        })
    }
}

/// Weight names of [`Embeddings`] under the `VarBuilder` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingNames {
    /// The word table (`weight` under it).
    pub word: String,
    /// The position table.
    pub position: String,
    /// The token-type table.
    pub token_type: String,
    /// The norm.
    pub norm: String,
}

impl Default for EmbeddingNames {
    /// BERT's `word_embeddings`, `position_embeddings`, `token_type_embeddings`, `LayerNorm`.
    fn default() -> Self {
        Self {
            word: "word_embeddings".into(),
            position: "position_embeddings".into(),
            token_type: "token_type_embeddings".into(),
            norm: "LayerNorm".into(),
        }
    }
}

/// The input embedding: a word table, and optionally learned positions, token types and a
/// norm (none by default: LLaMA's embedding).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::VarBuilder;
/// use tcat_blocks::{EmbeddingsConfig, Embeddings, NormConfig, NormKind};
/// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
/// let bert_like = EmbeddingsConfig::new(100, 8)
///     .with_positions(64)
///     .with_token_types(2)
///     .with_norm(NormConfig::new(8).with_kind(NormKind::LayerNorm).with_eps(1e-12));
/// let emb = Embeddings::load(vb.pp("embeddings"), &bert_like).unwrap();
/// assert_eq!((emb.vocab_size(), emb.max_positions()), (100, Some(64)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsConfig {
    /// Rows of the word table.
    pub vocab_size: usize,
    /// Width of the vectors.
    pub hidden_size: usize,
    /// Rows of a learned position table (default none).
    pub max_positions: Option<usize>,
    /// Rows of a token-type table (default 0: none).
    pub token_types: usize,
    /// The norm after the sum (default none).
    pub norm: Option<NormConfig>,
    /// Weight names (default BERT's).
    pub names: EmbeddingNames,
}

impl EmbeddingsConfig {
    /// A word table alone.
    pub fn new(vocab_size: usize, hidden_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size,
            max_positions: None,
            token_types: 0,
            norm: None,
            names: EmbeddingNames::default(),
        }
    }

    /// A learned position table of `max_positions` rows.
    pub fn with_positions(mut self, max_positions: usize) -> Self {
        self.max_positions = Some(max_positions);
        self
    }

    /// A token-type table of `token_types` rows.
    pub fn with_token_types(mut self, token_types: usize) -> Self {
        self.token_types = token_types;
        self
    }

    /// A norm after the sum.
    pub fn with_norm(mut self, norm: NormConfig) -> Self {
        self.norm = Some(norm);
        self
    }

    /// Sets the weight names.
    pub fn with_names(mut self, names: EmbeddingNames) -> Self {
        self.names = names;
        self
    }
}

impl Embeddings {
    /// Loads the tables named by `config.names` under `vb`.
    pub fn load(vb: VarBuilder, config: &EmbeddingsConfig) -> Result<Self> {
        let (v, h) = (config.vocab_size, config.hidden_size);
        if v == 0 || h == 0 {
            candle_core::bail!("embeddings config: `vocab_size` and `hidden_size` must be positive, found {v} and {h}");
        }
        let names = &config.names;
        let word = vb.pp(&names.word).get((v, h), "weight")?;
        let position =
            config.max_positions.map(|rows| AbsolutePositions::load(vb.pp(&names.position), rows, h, 0)).transpose()?;
        let token_type: Option<Tensor> = match config.token_types {
            0 => None,
            rows => Some(vb.pp(&names.token_type).get((rows, h), "weight")?),
        };
        let norm = config.norm.as_ref().map(|n| Norm::load(vb.pp(&names.norm), n)).transpose()?;
        Ok(Self::new(word, position, token_type, norm))
    }
}

/// Weight names of a [`TransformerLayer`]'s four parts under the `VarBuilder` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerNames {
    /// The self-attention.
    pub attention: String,
    /// The norm of the attention branch.
    pub attention_norm: String,
    /// The feed-forward network.
    pub feed_forward: String,
    /// The norm of the feed-forward branch.
    pub feed_forward_norm: String,
}

impl Default for LayerNames {
    /// LLaMA's `self_attn`, `input_layernorm`, `mlp`, `post_attention_layernorm`.
    fn default() -> Self {
        Self {
            attention: "self_attn".into(),
            attention_norm: "input_layernorm".into(),
            feed_forward: "mlp".into(),
            feed_forward_norm: "post_attention_layernorm".into(),
        }
    }
}

/// One Transformer layer: attention, feed-forward, their norms and the residual placement
/// (default pre-norm and LLaMA's names).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::VarBuilder;
/// use tcat_attention::{AttentionConfig, AttentionMask};
/// use tcat_blocks::{FeedForwardConfig, LayerConfig, NormConfig, TransformerLayer};
/// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
/// let config = LayerConfig::new(
///     AttentionConfig::new(16, 4).with_kv_heads(2).with_rotary(128),
///     FeedForwardConfig::new(16, 48),
///     NormConfig::new(16),
/// );
/// let layer = TransformerLayer::load(vb.pp("model.layers.0"), &config).unwrap();
/// let x = Tensor::ones((1, 3, 16), DType::F32, &Device::Cpu).unwrap();
/// assert_eq!(layer.forward(&x, &AttentionMask::causal(), None, None).unwrap().dims(), &[1, 3, 16]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConfig {
    /// The self-attention.
    pub attention: AttentionConfig,
    /// The feed-forward network.
    pub feed_forward: FeedForwardConfig,
    /// Both norms.
    pub norm: NormConfig,
    /// Where the norms sit (default pre-norm).
    pub residual: Residual,
    /// Weight names (default LLaMA's).
    pub names: LayerNames,
}

impl LayerConfig {
    /// A pre-norm layer from its parts.
    pub fn new(attention: AttentionConfig, feed_forward: FeedForwardConfig, norm: NormConfig) -> Self {
        Self { attention, feed_forward, norm, residual: Residual::PreNorm, names: LayerNames::default() }
    }

    /// Sets the residual placement.
    pub fn with_residual(mut self, residual: Residual) -> Self {
        self.residual = residual;
        self
    }

    /// Sets the weight names.
    pub fn with_names(mut self, names: LayerNames) -> Self {
        self.names = names;
        self
    }
}

impl TransformerLayer {
    /// Loads the four parts named by `config.names` under `vb`.
    pub fn load(vb: VarBuilder, config: &LayerConfig) -> Result<Self> {
        let names = &config.names;
        Ok(Self::new(
            MultiHeadAttention::load(vb.pp(&names.attention), &config.attention)?,
            Norm::load(vb.pp(&names.attention_norm), &config.norm)?,
            FeedForward::load(vb.pp(&names.feed_forward), &config.feed_forward)?,
            Norm::load(vb.pp(&names.feed_forward_norm), &config.norm)?,
            config.residual,
        ))
    }
}
