//! Named configuration for [`MultiHeadAttention`] (Vaswani et al. 2017, §3.2.2; grouped-query
//! attention, Ainslie et al. 2023; multi-query attention, Shazeer 2019), with documented
//! defaults and a `VarBuilder` constructor, in the manner of burn's `MultiHeadAttentionConfig`
//! and candle-nn's `linear(in, out, vb)`.

use candle_core::{DType, Result};
use candle_nn::VarBuilder;
use tcat_core::{Linear, WeightLayout};
use tcat_position::{Alibi, RotaryConfig, RotaryEmbedding};

use crate::{AttentionKernel, Causality, MultiHeadAttention, QkvProjection, SparsePattern};

/// How the scores `q·k` are scaled before the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ScoreScale {
    /// `1/√head_dim` (Vaswani et al. 2017, eq. 1). The default.
    #[default]
    InverseSqrtHeadDim,
    /// No scaling (T5 folds it into the initialisation; GPT-Neo).
    One,
    /// A fixed factor.
    Fixed(f64),
}

impl ScoreScale {
    /// The factor for heads of width `head_dim`.
    pub fn factor(self, head_dim: usize) -> f64 {
        match self {
            Self::InverseSqrtHeadDim => 1.0 / (head_dim as f64).sqrt(),
            Self::One => 1.0,
            Self::Fixed(scale) => scale,
        }
    }
}

/// Which projections carry a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProjectionBias {
    /// No biases (LLaMA, Mistral). The default.
    #[default]
    None,
    /// Query, key and value projections only (Qwen2).
    QkvOnly,
    /// Every projection, the output included (BERT, GPT-2).
    All,
}

impl ProjectionBias {
    fn qkv(self) -> bool {
        matches!(self, Self::QkvOnly | Self::All)
    }

    fn out(self) -> bool {
        matches!(self, Self::All)
    }
}

/// How the query, key and value weights are stored in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QkvLayout {
    /// Three tensors, under [`AttentionNames::q`], `k` and `v`. The default.
    #[default]
    Separate,
    /// One tensor `[q | k | v]` under [`AttentionNames::qkv`] (GPT-2's `c_attn`).
    Fused,
    /// One tensor holding each head's `[q_h | k_h | v_h]` in turn under
    /// [`AttentionNames::qkv`] (GPT-NeoX's `query_key_value`).
    FusedPerHead,
}

/// The weight names read under the `VarBuilder` prefix (each a sub-prefix holding `weight` and,
/// with biases, `bias`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionNames {
    /// Query projection (separate layout).
    pub q: String,
    /// Key projection (separate layout).
    pub k: String,
    /// Value projection (separate layout).
    pub v: String,
    /// Stacked projection (fused layouts).
    pub qkv: String,
    /// Output projection.
    pub out: String,
}

impl Default for AttentionNames {
    /// LLaMA's names: `q_proj`, `k_proj`, `v_proj`, `o_proj` (and `qkv_proj` when fused).
    fn default() -> Self {
        Self::llama()
    }
}

impl AttentionNames {
    /// `q_proj`, `k_proj`, `v_proj`, `o_proj`; `qkv_proj` when fused (LLaMA, Mistral, Phi-3).
    pub fn llama() -> Self {
        Self::new("q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj")
    }

    /// `self.query`, `self.key`, `self.value`, `output.dense` (BERT's `attention` block).
    pub fn bert() -> Self {
        Self::new("self.query", "self.key", "self.value", "self.qkv", "output.dense")
    }

    /// `c_attn` (fused) and `c_proj` (GPT-2; its weights are `[in, out]`).
    pub fn gpt2() -> Self {
        Self::new("q_attn", "k_attn", "v_attn", "c_attn", "c_proj")
    }

    /// Names of your own.
    pub fn new(q: &str, k: &str, v: &str, qkv: &str, out: &str) -> Self {
        Self { q: q.into(), k: k.into(), v: v.into(), qkv: qkv.into(), out: out.into() }
    }
}

/// Configuration of a [`MultiHeadAttention`], with documented defaults; build the module with
/// [`MultiHeadAttention::load`] (weights from a `VarBuilder`) or
/// [`AttentionConfig::init`] (the same, spelled like candle-nn's constructors).
///
/// Defaults of [`AttentionConfig::new`]`(hidden_size, num_heads)`: `num_kv_heads = num_heads`
/// (multi-head attention), `head_dim = hidden_size / num_heads`, no biases, `1/√head_dim`
/// scaling, separate `q_proj` / `k_proj` / `v_proj` / `o_proj` weights stored `[out, in]`, no
/// position term, no window, the default [`AttentionKernel`] (fused, with its fallback rule).
/// There is no dropout: tcat runs inference.
///
/// Grouped-query attention with rotary positions and a sliding window, from a `VarBuilder`:
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// use tcat_attention::{AttentionConfig, AttentionMask, MultiHeadAttention};
/// let vars = VarMap::new();
/// let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
/// let config = AttentionConfig::new(64, 8).with_kv_heads(2).with_rotary(4096).with_sliding_window(256);
/// let attention = MultiHeadAttention::load(vb.pp("self_attn"), &config).unwrap();
/// let x = Tensor::randn(0f32, 1., (1, 10, 64), &Device::Cpu).unwrap();
/// let y = attention.forward(&x, &AttentionMask::causal(), None, None).unwrap();
/// assert_eq!(y.dims(), &[1, 10, 64]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionConfig {
    /// Width of the hidden states (input and output).
    pub hidden_size: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (default `num_heads`; 1 for multi-query attention).
    pub num_kv_heads: usize,
    /// Width of one head (default `hidden_size / num_heads`).
    pub head_dim: usize,
    /// Which projections have biases (default none).
    pub bias: ProjectionBias,
    /// Score scaling (default `1/√head_dim`).
    pub scale: ScoreScale,
    /// How q, k, v are stored (default separate).
    pub qkv_layout: QkvLayout,
    /// Orientation of the stored weights (default `[out, in]`).
    pub weight_layout: WeightLayout,
    /// Weight names (default LLaMA's).
    pub names: AttentionNames,
    /// Rotary positions and the longest position they cover (default none).
    pub rotary: Option<(RotaryConfig, usize)>,
    /// ALiBi biases (default off).
    pub alibi: Switch,
    /// The mask of the single-input [`Module`](candle_core::Module) forward (default
    /// bidirectional; the other forwards take the mask as an argument).
    pub causality: Causality,
    /// Sliding window of each query (default none).
    pub sliding_window: Option<usize>,
    /// The layer's own sparse pattern (default none).
    pub pattern: Option<SparsePattern>,
    /// The attention kernel (default [`AttentionKernel::default`]).
    pub kernel: AttentionKernel,
}

/// Whether a setting without parameters of its own (ALiBi's paper slopes) is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    /// Off. The default.
    #[default]
    Off,
    /// On.
    On,
}

impl AttentionConfig {
    /// A configuration with the defaults listed on [`AttentionConfig`].
    pub fn new(hidden_size: usize, num_heads: usize) -> Self {
        Self {
            hidden_size,
            num_heads,
            num_kv_heads: num_heads,
            head_dim: hidden_size.checked_div(num_heads).unwrap_or(0),
            bias: ProjectionBias::None,
            scale: ScoreScale::InverseSqrtHeadDim,
            qkv_layout: QkvLayout::Separate,
            weight_layout: WeightLayout::OutIn,
            names: AttentionNames::default(),
            rotary: None,
            alibi: Switch::Off,
            causality: Causality::Bidirectional,
            sliding_window: None,
            pattern: None,
            kernel: AttentionKernel::default(),
        }
    }

    /// Key/value heads: `num_heads` for multi-head, 1 for multi-query, a divisor of `num_heads`
    /// for grouped-query attention.
    pub fn with_kv_heads(mut self, num_kv_heads: usize) -> Self {
        self.num_kv_heads = num_kv_heads;
        self
    }

    /// Width of one head, when it is not `hidden_size / num_heads` (Gemma, mT5).
    pub fn with_head_dim(mut self, head_dim: usize) -> Self {
        self.head_dim = head_dim;
        self
    }

    /// Which projections have biases.
    pub fn with_bias(mut self, bias: ProjectionBias) -> Self {
        self.bias = bias;
        self
    }

    /// Score scaling.
    pub fn with_scale(mut self, scale: ScoreScale) -> Self {
        self.scale = scale;
        self
    }

    /// How q, k, v are stored.
    pub fn with_qkv_layout(mut self, layout: QkvLayout) -> Self {
        self.qkv_layout = layout;
        self
    }

    /// Orientation of the stored weights (GPT-2's `Conv1D` stores `[in, out]`).
    pub fn with_weight_layout(mut self, layout: WeightLayout) -> Self {
        self.weight_layout = layout;
        self
    }

    /// Weight names.
    pub fn with_names(mut self, names: AttentionNames) -> Self {
        self.names = names;
        self
    }

    /// Rotary positions with the defaults of [`RotaryConfig::new`] over the whole head (θ =
    /// 10000, half-split pairs, no scaling), for positions below `max_positions`.
    pub fn with_rotary(self, max_positions: usize) -> Self {
        let head_dim = self.head_dim;
        self.with_rotary_config(RotaryConfig::new(head_dim), max_positions)
    }

    /// Rotary positions with a configuration of your own.
    pub fn with_rotary_config(mut self, rotary: RotaryConfig, max_positions: usize) -> Self {
        self.rotary = Some((rotary, max_positions));
        self
    }

    /// ALiBi biases (Press et al. 2022) with the paper's slopes.
    pub fn with_alibi(mut self) -> Self {
        self.alibi = Switch::On;
        self
    }

    /// The mask of the single-input [`Module`](candle_core::Module) forward: causal for
    /// decoders (and sequential models), bidirectional for encoders.
    pub fn with_causality(mut self, causality: Causality) -> Self {
        self.causality = causality;
        self
    }

    /// A causal sliding window of `window` keys per query.
    pub fn with_sliding_window(mut self, window: usize) -> Self {
        self.sliding_window = Some(window);
        self
    }

    /// The layer's own sparse pattern.
    pub fn with_pattern(mut self, pattern: SparsePattern) -> Self {
        self.pattern = Some(pattern);
        self
    }

    /// The attention kernel.
    pub fn with_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Checks the numbers before anything is allocated; errors name the field and the expected
    /// versus found value.
    ///
    /// ```
    /// use tcat_attention::AttentionConfig;
    /// let err = AttentionConfig::new(64, 8).with_kv_heads(3).validate().unwrap_err().to_string();
    /// assert!(err.contains("num_kv_heads"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<()> {
        let fail = |field: &str, why: String| -> Result<()> { candle_core::bail!("attention config: `{field}` {why}") };
        if self.hidden_size == 0 {
            fail("hidden_size", "must be positive, found 0".into())?;
        }
        if self.num_heads == 0 {
            fail("num_heads", "must be positive, found 0".into())?;
        }
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            fail("num_kv_heads", format!("must divide num_heads ({}), found {}", self.num_heads, self.num_kv_heads))?;
        }
        if self.head_dim == 0 {
            fail(
                "head_dim",
                format!("must be positive, found 0 (hidden_size {} / num_heads {})", self.hidden_size, self.num_heads),
            )?;
        }
        if self.qkv_layout == QkvLayout::FusedPerHead && self.num_kv_heads != self.num_heads {
            fail(
                "num_kv_heads",
                format!(
                    "must equal num_heads ({}) with per-head fused q/k/v, found {}",
                    self.num_heads, self.num_kv_heads
                ),
            )?;
        }
        if let Some((rotary, _)) = &self.rotary
            && (rotary.rotary_dim == 0 || rotary.rotary_dim > self.head_dim || !rotary.rotary_dim.is_multiple_of(2))
        {
            fail(
                "rotary.rotary_dim",
                format!("must be even and in 2..={}, found {}", self.head_dim, rotary.rotary_dim),
            )?;
        }
        if self.sliding_window == Some(0) {
            fail("sliding_window", "must be at least 1, found 0".into())?;
        }
        if let Some(pattern) = &self.pattern {
            pattern.validate()?;
        }
        Ok(())
    }

    /// Builds the module from `vb` (same as [`MultiHeadAttention::load`]).
    pub fn init(&self, vb: VarBuilder) -> Result<MultiHeadAttention> {
        MultiHeadAttention::load(vb, self)
    }
}

impl MultiHeadAttention {
    /// Loads the projections named by `config.names` under `vb` and applies the configured
    /// scale, positions, window, pattern and kernel. The tensors are created in `vb`'s dtype on
    /// its device. See [`AttentionConfig`] for an example.
    pub fn load(vb: VarBuilder, config: &AttentionConfig) -> Result<Self> {
        config.validate()?;
        let (hidden, layout, names) = (config.hidden_size, config.weight_layout, &config.names);
        let q_width = config.num_heads * config.head_dim;
        let kv_width = config.num_kv_heads * config.head_dim;
        let lin = |name: &str, i, o, bias| Linear::load(vb.pp(name), i, o, bias, layout);
        let qkv = match config.qkv_layout {
            QkvLayout::Separate => QkvProjection::Separate {
                q: lin(&names.q, hidden, q_width, config.bias.qkv())?,
                k: lin(&names.k, hidden, kv_width, config.bias.qkv())?,
                v: lin(&names.v, hidden, kv_width, config.bias.qkv())?,
            },
            QkvLayout::Fused => {
                QkvProjection::Fused(lin(&names.qkv, hidden, q_width + 2 * kv_width, config.bias.qkv())?)
            }
            QkvLayout::FusedPerHead => {
                QkvProjection::FusedPerHead(lin(&names.qkv, hidden, 3 * q_width, config.bias.qkv())?)
            }
        };
        let out = lin(&names.out, q_width, hidden, config.bias.out())?;
        let mut attention = Self::new(qkv, out, config.num_heads, config.num_kv_heads, config.head_dim)?
            .with_scale(config.scale.factor(config.head_dim))
            .with_kernel(config.kernel)
            .with_causality(config.causality);
        if let Some((rotary, max_positions)) = config.rotary {
            attention = attention.with_rotary(RotaryEmbedding::new(rotary, max_positions, vb.dtype(), vb.device())?);
        }
        if config.alibi == Switch::On {
            let dtype = if vb.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
            attention = attention.with_alibi(Alibi::new(config.num_heads, dtype, vb.device())?);
        }
        if let Some(window) = config.sliding_window {
            attention = attention.with_sliding_window(window);
        }
        if let Some(pattern) = config.pattern {
            attention = attention.with_pattern(pattern);
        }
        Ok(attention)
    }
}
