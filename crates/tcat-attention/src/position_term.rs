//! The one way position schemes enter attention.
//!
//! Every positional scheme of the catalog acts on scaled dot-product attention (Vaswani et al.
//! 2017, eq. 1) in one of three places, and a [`PositionTerm`] names which:
//!
//! - a **rotation** of the queries and keys before the dot product: RoPE (Su et al. 2021,
//!   "RoFormer", eq. 34), [`PositionTerm::Rotary`];
//! - an **additive bias** on the scores that depends on positions only: ALiBi (Press et al.
//!   2022), [`PositionTerm::Alibi`]; T5's bucketed relative bias (Raffel et al. 2020, §2.1),
//!   [`PositionTerm::RelativeBias`];
//! - a **query-dependent score term**, a [`ScoreTerm`]: Transformer-XL's
//!   `(q_i + v)·W_R R_{i−j}` with the content bias `u` added to the queries (Dai et al. 2019,
//!   §3.3, [`XlRelativePosition`]), DeBERTa's content-to-position and position-to-content terms
//!   (He et al. 2021, eq. 2–4, [`DisentangledPosition`]), or a user's own term.
//!
//! [`MultiHeadAttention::with_position`](crate::MultiHeadAttention::with_position) takes any of
//! them; the module has no special case for a scheme: it rotates, then sums the biases and
//! score terms into the mask's additive bias, then attends with the content queries.

use std::fmt::Debug;
use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use tcat_core::{Linear, WeightLayout};

use crate::AttentionMask;
use tcat_position::{
    Alibi, LogBuckets, RelativePositionBias, RotaryEmbedding, deberta_relative_positions, disentangled_bias,
    xl_distance_range, xl_position_bias, xl_sinusoids,
};

/// A score term that depends on the queries (and possibly the keys) as well as on positions:
/// the third way a position scheme enters attention (see [`PositionTerm`]).
///
/// Queries are `[batch, heads, q_len, head_dim]`, placed at the end of the keys
/// `[batch, kv_heads, kv_len, head_dim]` (query `i` at absolute position `kv_len − q_len + i`),
/// as in cached decoding and with Transformer-XL's segment memory. Both are after any rotation.
///
/// A term implemented outside tcat plugs in the same way:
///
/// ```
/// use std::sync::Arc;
/// use candle_core::{Result, Tensor};
/// use tcat_attention::{PositionTerm, ScoreTerm};
/// /// Adds `c · (q_i · 1)` to every score of query `i` (a toy query-dependent term).
/// #[derive(Debug)]
/// struct QuerySum(f64);
/// impl ScoreTerm for QuerySum {
///     fn score_bias(&self, q: &Tensor, k: &Tensor, scale: f64) -> Result<Tensor> {
///         let kv_len = k.dim(2)?;
///         let s = (q.sum_keepdim(3)? * (self.0 * scale))?; // [b, h, q_len, 1]
///         s.broadcast_as((q.dim(0)?, q.dim(1)?, q.dim(2)?, kv_len))?.contiguous()
///     }
/// }
/// let term = PositionTerm::Score(Arc::new(QuerySum(0.5)));
/// assert!(matches!(term, PositionTerm::Score(_)));
/// ```
pub trait ScoreTerm: Debug + Send + Sync {
    /// The queries of the content term `q·k`: unchanged by default; Transformer-XL adds its
    /// global content bias `u` here.
    fn content_queries(&self, q: &Tensor) -> Result<Tensor> {
        Ok(q.clone())
    }

    /// The additive term `[batch or 1, heads, q_len, kv_len]`, already multiplied by `scale`
    /// (the module's score scale), from the raw queries `q` and the keys `k`.
    fn score_bias(&self, q: &Tensor, k: &Tensor, scale: f64) -> Result<Tensor>;

    /// The term of one call given its mask, for terms that read per-call inputs the mask
    /// carries (XLNet's token types, [`AttentionMask::token_types`]); by default
    /// [`score_bias`](Self::score_bias). The module calls this one.
    fn score_bias_in(&self, q: &Tensor, k: &Tensor, scale: f64, mask: &AttentionMask) -> Result<Tensor> {
        let _ = mask;
        self.score_bias(q, k, scale)
    }
}

/// How one position scheme enters attention: a rotation, an additive bias, or a
/// query-dependent [`ScoreTerm`]. [`MultiHeadAttention::with_position`](crate::MultiHeadAttention::with_position)
/// takes any of them and has no special case for a scheme: it applies the rotations to the
/// queries and keys, then sums the biases and score terms into the mask's additive bias, then
/// attends with the content queries ([`ScoreTerm::content_queries`]).
///
/// ```
/// use candle_core::{DType, Device};
/// use tcat_attention::PositionTerm;
/// use tcat_position::Alibi;
/// let alibi = PositionTerm::Alibi(Alibi::new(4, DType::F32, &Device::Cpu).unwrap());
/// assert_eq!(alibi.kind(), "additive bias");
/// ```
#[derive(Debug, Clone)]
pub enum PositionTerm {
    /// Rotates queries and keys by their positions (RoPE).
    Rotary(RotaryEmbedding),
    /// ALiBi's linear biases; key positions count real tokens only, so left-padded rows match
    /// unpadded ones.
    Alibi(Alibi),
    /// A bias from relative positions alone (T5's buckets), computed for the attended lengths.
    /// To share one bias between the layers of a stack, compute it once and pass it in the
    /// mask ([`AttentionMask::with_bias`](crate::AttentionMask::with_bias); tcat-blocks'
    /// `Stack::with_relative_bias` does this).
    RelativeBias(RelativePositionBias),
    /// A query-dependent score term (Transformer-XL, DeBERTa, or your own).
    Score(Arc<dyn ScoreTerm>),
}

impl PositionTerm {
    /// Which of the three ways the term takes: `"rotation"`, `"additive bias"` or
    /// `"query-dependent score"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rotary(_) => "rotation",
            Self::Alibi(_) | Self::RelativeBias(_) => "additive bias",
            Self::Score(_) => "query-dependent score",
        }
    }

    /// A query-dependent term from any [`ScoreTerm`].
    pub fn score(term: impl ScoreTerm + 'static) -> Self {
        Self::Score(Arc::new(term))
    }
}

/// Transformer-XL's relative position term (Dai et al. 2019, "Transformer-XL: Attentive
/// Language Models Beyond a Fixed-Length Context", §3.3): the score of query `i` and key `j` is
///
/// ```text
/// (q_i + u)·k_j  +  (q_i + v)·W_R R_{i−j}
/// ```
///
/// (terms (a)+(c) and (b)+(d) of the paper), times the module's scale, with `R` the sinusoids of
/// [`xl_sinusoids`] over the model width, `W_R` the layer's position projection (`r_net`) and
/// `u`, `v` the global content and position biases (`r_w_bias`, `r_r_bias`), `[heads,
/// head_dim]`. Queries sit at the end of the keys, so the keys may begin with the previous
/// segment's memory (`tcat_position::SegmentMemory`; see
/// [`MultiHeadAttention::forward_with_memory`](crate::MultiHeadAttention::forward_with_memory)).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_attention::{AttentionMask, MultiHeadAttention, PositionTerm, QkvProjection, XlRelativePosition};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let lin = |o, i| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
/// let (u, v) = (Tensor::zeros((2, 4), DType::F32, &dev).unwrap(), Tensor::ones((2, 4), DType::F32, &dev).unwrap());
/// let xl = XlRelativePosition::new(lin(8, 8), u, v).unwrap(); // W_R: 8 → 2 heads × 4
/// let attention = MultiHeadAttention::new(QkvProjection::Fused(lin(24, 8)), lin(8, 8), 2, 2, 4)
///     .unwrap()
///     .with_position(PositionTerm::score(xl));
/// let memory = Tensor::randn(0f32, 1., (1, 3, 8), &dev).unwrap(); // the previous segment
/// let x = Tensor::randn(0f32, 1., (1, 2, 8), &dev).unwrap();
/// let y = attention.forward_with_memory(&x, Some(&memory), &AttentionMask::causal()).unwrap();
/// assert_eq!(y.dims(), &[1, 2, 8]);
/// ```
#[derive(Debug, Clone)]
pub struct XlRelativePosition {
    r_proj: Linear,
    u: Tensor,
    v: Tensor,
    heads: usize,
    head_dim: usize,
    clamp: Option<i64>,
}

impl XlRelativePosition {
    /// The term from `W_R` (`model_dim → heads · head_dim`, `model_dim` even: the sinusoids'
    /// width) and the biases `u`, `v` (`[heads, head_dim]` each).
    pub fn new(r_proj: Linear, u: Tensor, v: Tensor) -> Result<Self> {
        let (heads, head_dim) = u.dims2()?;
        if v.dims() != [heads, head_dim] {
            candle_core::bail!(
                "transformer-xl: `v` (r_r_bias) is {:?}, expected [{heads}, {head_dim}] like `u`",
                v.dims()
            );
        }
        if r_proj.out_features() != heads * head_dim {
            candle_core::bail!(
                "transformer-xl: the position projection r_net gives {} features, expected heads · head_dim = {}",
                r_proj.out_features(),
                heads * head_dim
            );
        }
        if r_proj.in_features() == 0 || !r_proj.in_features().is_multiple_of(2) {
            candle_core::bail!(
                "transformer-xl: the position projection r_net takes {} features, expected an even model width",
                r_proj.in_features()
            );
        }
        Ok(Self { r_proj, u, v, heads, head_dim, clamp: None })
    }

    /// Clamps distances to `[-clamp_len, clamp_len]` before their sinusoids (XLNet's
    /// `clamp_len`; 0 leaves them unclamped).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_attention::XlRelativePosition;
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let eye = Linear::new(Tensor::eye(8, DType::F32, &dev).unwrap(), None);
    /// let biases = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
    /// let xl = XlRelativePosition::new(eye, biases.clone(), biases).unwrap().with_clamp(1);
    /// let r = xl.projected_sinusoids(4, 4, DType::F32).unwrap(); // distances -3..=3
    /// let far = r.narrow(1, 0, 1).unwrap(); // -3, clamped to -1
    /// let near = r.narrow(1, 2, 1).unwrap(); // -1
    /// assert_eq!(far.to_vec3::<f32>().unwrap(), near.to_vec3::<f32>().unwrap());
    /// ```
    pub fn with_clamp(mut self, clamp_len: usize) -> Self {
        self.clamp = (clamp_len > 0).then_some(clamp_len as i64);
        self
    }

    /// Loads `r_net.weight` (`[heads · head_dim, model_dim]`, no bias), `r_w_bias` (`u`) and
    /// `r_r_bias` (`v`, both `[heads, head_dim]`) under `vb`, the names of Hugging Face's
    /// `TransfoXLModel` with `untie_r` (per-layer biases). When the biases are shared by every
    /// layer, load them once and call [`new`](Self::new).
    pub fn load(vb: VarBuilder, model_dim: usize, heads: usize, head_dim: usize) -> Result<Self> {
        let r_proj = Linear::load(vb.pp("r_net"), model_dim, heads * head_dim, false, WeightLayout::OutIn)?;
        Self::new(r_proj, vb.get((heads, head_dim), "r_w_bias")?, vb.get((heads, head_dim), "r_r_bias")?)
    }

    /// `W_R R_d` split into heads, `[heads, distances, head_dim]`, for the distances of
    /// [`xl_distance_range`]`(q_len, kv_len)`.
    pub fn projected_sinusoids(&self, q_len: usize, kv_len: usize, dtype: DType) -> Result<Tensor> {
        let (min, max) = xl_distance_range(q_len, kv_len);
        let (dim, device) = (self.r_proj.in_features(), self.u.device());
        let r = match self.clamp {
            None => xl_sinusoids(min, max, dim, device)?,
            Some(c) => {
                let (lo, hi) = (min.clamp(-c, c), max.clamp(-c, c));
                let rows: Vec<u32> = (min..=max).map(|d| (d.clamp(-c, c) - lo) as u32).collect();
                xl_sinusoids(lo, hi, dim, device)?.index_select(&Tensor::new(rows, device)?, 0)?
            }
        }
        .to_dtype(dtype)?;
        let distances = r.dim(0)?;
        self.r_proj.forward(&r)?.reshape((distances, self.heads, self.head_dim))?.transpose(0, 1)?.contiguous()
    }
}

impl ScoreTerm for XlRelativePosition {
    fn content_queries(&self, q: &Tensor) -> Result<Tensor> {
        q.broadcast_add(&self.u.to_dtype(q.dtype())?.reshape((1, self.heads, 1, self.head_dim))?)
    }

    fn score_bias(&self, q: &Tensor, k: &Tensor, scale: f64) -> Result<Tensor> {
        let (q_len, kv_len) = (q.dim(2)?, k.dim(2)?);
        let projected = self.projected_sinusoids(q_len, kv_len, q.dtype())?;
        xl_position_bias(q, &self.v.to_dtype(q.dtype())?, &projected, kv_len, scale)
    }
}

/// DeBERTa's disentangled position terms (He et al. 2021, "DeBERTa: Decoding-enhanced BERT with
/// Disentangled Attention", eq. 2–4) as a [`ScoreTerm`]: content-to-position `q_i · K^r_δ` and
/// position-to-content `k_j · Q^r_δ` over the shared relative embeddings already projected by
/// the layer (`[heads, 2·span, head_dim]`; see [`disentangled_bias`]). The module's scale must be
/// DeBERTa's `1/√(head_dim · 3)` (one factor per term). Self-attention over the whole sequence
/// (no cache: `q_len = kv_len`), as DeBERTa encoders run.
#[derive(Debug, Clone)]
pub struct DisentangledPosition {
    pos_query: Option<Tensor>,
    pos_key: Option<Tensor>,
    span: usize,
    buckets: Option<LogBuckets>,
}

impl DisentangledPosition {
    /// The terms from the projected relative embeddings (`None` leaves a term out: DeBERTa's
    /// `pos_att_type`), the span (`max_relative_positions`, or v2's `position_buckets`) and v2's
    /// log buckets, if any.
    pub fn new(pos_query: Option<Tensor>, pos_key: Option<Tensor>, span: usize, buckets: Option<LogBuckets>) -> Self {
        Self { pos_query, pos_key, span, buckets }
    }

    /// The terms from the shared relative embeddings `relative` (`[2·span, hidden]`, already
    /// normalised where the model does) through a layer's query projection (position-to-content;
    /// `None` leaves the term out) and key projection (content-to-position), split into `heads`
    /// of `head_dim`: v2's shared keys pass the layer's content projections, v1 its own
    /// `pos_q_proj` and `pos_proj`. Computed once, at load time.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_attention::{DisentangledPosition, ScoreTerm};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let relative = Tensor::randn(0f32, 1., (6, 8), &dev).unwrap(); // span 3, hidden 8
    /// let proj = Linear::new(Tensor::randn(0f32, 0.3, (8, 8), &dev).unwrap(), None);
    /// let term = DisentangledPosition::from_relative_embeddings(&relative, Some(&proj), Some(&proj), 2, 4, None).unwrap();
    /// let q = Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev).unwrap();
    /// assert_eq!(term.score_bias(&q, &q, 0.3).unwrap().dims(), &[1, 2, 5, 5]);
    /// ```
    pub fn from_relative_embeddings(
        relative: &Tensor,
        query: Option<&Linear>,
        key: Option<&Linear>,
        heads: usize,
        head_dim: usize,
        buckets: Option<LogBuckets>,
    ) -> Result<Self> {
        let rows = relative.dim(0)?;
        if rows == 0 || !rows.is_multiple_of(2) {
            candle_core::bail!("disentangled attention: {rows} relative embeddings, expected 2·span > 0");
        }
        let split = |projection: &Linear| -> Result<Tensor> {
            projection.forward(relative)?.reshape((rows, heads, head_dim))?.transpose(0, 1)?.contiguous()
        };
        Ok(Self::new(query.map(split).transpose()?, key.map(split).transpose()?, rows / 2, buckets))
    }
}

impl ScoreTerm for DisentangledPosition {
    fn score_bias(&self, q: &Tensor, k: &Tensor, scale: f64) -> Result<Tensor> {
        let (len, kv_len) = (q.dim(2)?, k.dim(2)?);
        if len != kv_len || q.dims() != k.dims() {
            candle_core::bail!(
                "disentangled attention: queries {:?} and keys {:?} must have the same shape (no cache, no grouped heads)",
                q.dims(),
                k.dims()
            );
        }
        let relative = deberta_relative_positions(len, len, self.buckets, q.device())?;
        disentangled_bias(q, k, self.pos_query.as_ref(), self.pos_key.as_ref(), &relative, self.span, scale)
    }
}
