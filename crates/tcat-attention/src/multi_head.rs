//! Multi-head attention (Vaswani et al. 2017, §3.2.2) with grouped-query and multi-query
//! attention as its `num_kv_heads` setting.

use candle_core::{DType, Module, Result, Tensor};
use tcat_core::Linear;
use tcat_position::{Alibi, RotaryEmbedding, positions_from_attention_mask, sequential_position_ids};

use crate::{
    AttentionMask, Causality, KvCache, PositionTerm, SparsePattern, fused_attention, scaled_dot_product_attention,
    split_grouped_shape,
};
use crate::{QkNorm, QkNormScope};

/// How the query, key and value projections are stored.
#[derive(Debug, Clone)]
pub enum QkvProjection {
    /// Three projections (BERT's `query`/`key`/`value`, LLaMA's `q_proj`/`k_proj`/`v_proj`).
    Separate {
        /// Query projection, `hidden → heads · head_dim`.
        q: Linear,
        /// Key projection, `hidden → kv_heads · head_dim`.
        k: Linear,
        /// Value projection, `hidden → kv_heads · head_dim`.
        v: Linear,
    },
    /// One projection whose output is `[q | k | v]` concatenated (GPT-2's `c_attn`).
    Fused(Linear),
    /// One projection whose output holds each head's `[q_h | k_h | v_h]` in turn (GPT-NeoX's
    /// and BLOOM's `query_key_value`); multi-head attention only.
    FusedPerHead(Linear),
}

impl QkvProjection {
    /// Separate query, key and value projections stacked into one [`Fused`](Self::Fused)
    /// projection (one matmul reads the input once) when they are held alike, else kept
    /// [`Separate`](Self::Separate). For self-attention: cross-attention projects queries and
    /// keys from different inputs and needs them separate.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_attention::QkvProjection;
    /// use tcat_core::Linear;
    /// let lin = |o| Linear::new(Tensor::zeros((o, 8), DType::F32, &Device::Cpu).unwrap(), None);
    /// assert!(matches!(QkvProjection::stacked(lin(8), lin(4), lin(4)), QkvProjection::Fused(_)));
    /// ```
    pub fn stacked(q: Linear, k: Linear, v: Linear) -> Self {
        match Linear::stack_outputs(&[q.clone(), k.clone(), v.clone()]) {
            Ok(qkv) => Self::Fused(qkv),
            Err(_) => Self::Separate { q, k, v },
        }
    }
}

/// Which implementation of scaled dot-product attention a [`MultiHeadAttention`] calls; both
/// take every mask and bias and agree within float rounding (≤ 1e-5 in the tests).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{AttentionKernel, AttentionMask};
/// let dev = Device::Cpu;
/// let q = Tensor::randn(0f32, 1., (1, 4, 80, 8), &dev).unwrap();
/// let k = Tensor::randn(0f32, 1., (1, 2, 80, 8), &dev).unwrap();
/// let v = Tensor::randn(0f32, 1., (1, 2, 80, 8), &dev).unwrap();
/// let mask = AttentionMask::causal();
/// let plain = AttentionKernel::Materialized.attention(&q, &k, &v, &mask, 0.35).unwrap();
/// let fused = AttentionKernel::Fused.attention(&q, &k, &v, &mask, 0.35).unwrap();
/// let diff = (plain - fused).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
/// assert!(diff < 1e-5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionKernel {
    /// [`scaled_dot_product_attention`]: the `q_len × kv_len` scores are materialised, masked
    /// and softmaxed by candle's kernels on any device.
    Materialized,
    /// [`fused_attention`]: the tiled online-softmax kernel on the CPU (Dao et al. 2022,
    /// FlashAttention, Algorithm 1), which never stores the scores and skips hidden tiles; on
    /// other devices and dtypes, and for explicit masks, it calls the materialised path. The
    /// default: on the CPU it is faster at every length measured (one decoding query included,
    /// where it avoids candle's per-call matmul set-up) and its memory does not grow with
    /// `q_len × kv_len`.
    #[default]
    Fused,
}

impl AttentionKernel {
    /// The kernel that actually runs for these inputs, by the one fallback rule:
    /// [`Fused`](Self::Fused) runs where its tiled CPU kernel applies (a CPU tensor of `f32`,
    /// `f16` or `bf16`, and no explicit `q_len × kv_len` mask, which is materialised already)
    /// and is [`Materialized`](Self::Materialized) everywhere else.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_attention::{AttentionKernel, AttentionMask};
    /// let q = Tensor::zeros((1, 2, 3, 4), DType::F32, &Device::Cpu).unwrap();
    /// assert_eq!(AttentionKernel::Fused.resolve(&q, &AttentionMask::causal()), AttentionKernel::Fused);
    /// let explicit = AttentionMask::none().with_allowed(Tensor::ones((3, 3), DType::U8, &Device::Cpu).unwrap());
    /// assert_eq!(AttentionKernel::Fused.resolve(&q, &explicit), AttentionKernel::Materialized);
    /// let q64 = q.to_dtype(DType::F64).unwrap();
    /// assert_eq!(AttentionKernel::Fused.resolve(&q64, &AttentionMask::causal()), AttentionKernel::Materialized);
    /// ```
    pub fn resolve(self, q: &Tensor, mask: &AttentionMask) -> Self {
        let fused_applies = q.device().is_cpu()
            && matches!(q.dtype(), DType::F32 | DType::F16 | DType::BF16)
            && mask.explicit().is_none();
        match self {
            Self::Fused if fused_applies => Self::Fused,
            Self::Fused | Self::Materialized => Self::Materialized,
        }
    }

    /// Runs this kernel: `q` `[batch, heads, q_len, head_dim]`, `k`/`v`
    /// `[batch, kv_heads, kv_len, head_dim]`, result `[batch, heads, q_len, head_dim]`.
    pub fn attention(self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask, scale: f64) -> Result<Tensor> {
        match self {
            Self::Materialized => scaled_dot_product_attention(q, k, v, mask, scale),
            Self::Fused => fused_attention(q, k, v, mask, scale),
        }
    }
}

/// Multi-head attention (Vaswani et al. 2017, §3.2.2): project, split into heads, attend,
/// merge, project out. `num_kv_heads` chooses the variant, one type for all three:
///
/// - `num_kv_heads == num_heads`: multi-head attention, one key/value head per query head;
/// - `num_kv_heads == 1`: multi-query attention (Shazeer 2019, "Fast Transformer Decoding: One
///   Write-Head is All You Need"), every query head sharing one key/value head, which shrinks
///   the KV cache by `num_heads`;
/// - in between: grouped-query attention (Ainslie et al. 2023, "GQA: Training Generalized
///   Multi-Query Transformer Models from Multi-Head Checkpoints"), groups of
///   `num_heads / num_kv_heads` consecutive query heads sharing one key/value head.
///
/// Which key/value head each of 8 query heads reads:
///
/// ```text
/// query head     0 1 2 3 4 5 6 7
/// multi-head     0 1 2 3 4 5 6 7   num_kv_heads = 8
/// grouped-query  0 0 1 1 2 2 3 3   num_kv_heads = 4
/// multi-query    0 0 0 0 0 0 0 0   num_kv_heads = 1
/// ```
///
/// Keys and values are never repeated per query head (see
/// [`scaled_dot_product_attention`](crate::scaled_dot_product_attention)).
///
/// Self-attention goes through [`forward`](Self::forward), optionally with a [`KvCache`] for
/// incremental decoding, and with rotary positions applied to queries and keys when the module
/// was built [`with_rotary`](Self::with_rotary). Cross-attention goes through
/// [`forward_cross`](Self::forward_cross), or
/// [`project_kv`](Self::project_kv) once plus [`attend`](Self::attend) per step when the
/// memory's keys and values should be computed only once.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{AttentionMask, MultiHeadAttention, QkvProjection};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let w = |o, i| Tensor::randn(0f32, 0.2, (o, i), &dev).unwrap();
/// let (wq, wk, wv, wo) = (w(16, 16), w(8, 16), w(8, 16), w(16, 16));
/// // 16-dim model, 4 query heads sharing 2 key/value heads of dim 4 (grouped-query attention)
/// let qkv = QkvProjection::Separate {
///     q: Linear::new(wq.clone(), None),
///     k: Linear::new(wk.clone(), None),
///     v: Linear::new(wv.clone(), None),
/// };
/// let gqa = MultiHeadAttention::new(qkv, Linear::new(wo.clone(), None), 4, 2, 4).unwrap();
/// let x = Tensor::randn(0f32, 1., (2, 5, 16), &dev).unwrap();
/// let y = gqa.forward(&x, &AttentionMask::causal(), None, None).unwrap();
/// assert_eq!(y.dims(), &[2, 5, 16]);
///
/// // It equals multi-head attention whose key/value head g is copied to query heads 2g, 2g+1:
/// let repeat = |w: &Tensor| w.reshape((2, 1, 4, 16)).unwrap().repeat((1, 2, 1, 1)).unwrap().reshape((16, 16)).unwrap();
/// let qkv = QkvProjection::Separate {
///     q: Linear::new(wq, None),
///     k: Linear::new(repeat(&wk), None),
///     v: Linear::new(repeat(&wv), None),
/// };
/// let mha = MultiHeadAttention::new(qkv, Linear::new(wo, None), 4, 4, 4).unwrap();
/// let y_mha = mha.forward(&x, &AttentionMask::causal(), None, None).unwrap();
/// let diff = (y - y_mha).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
/// assert!(diff < 1e-6);
/// ```
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    qkv: QkvProjection,
    out: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    positions: Vec<PositionTerm>,
    window: Option<usize>,
    patterns: Vec<SparsePattern>,
    kernel: AttentionKernel,
    causality: Causality,
    qk_norm: Option<QkNorm>,
    softcap: Option<f64>,
}

impl MultiHeadAttention {
    /// Builds the module, checking that the projections fit the head counts. The score scale
    /// defaults to `1/√head_dim`; see [`with_scale`](Self::with_scale).
    pub fn new(
        qkv: QkvProjection,
        out: Linear,
        num_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        split_grouped_shape(num_heads, num_kv_heads)?;
        let (q_out, kv_out) = (num_heads * head_dim, num_kv_heads * head_dim);
        match &qkv {
            QkvProjection::Separate { q, k, v } => {
                if q.out_features() != q_out || k.out_features() != kv_out || v.out_features() != kv_out {
                    candle_core::bail!(
                        "attention projections give q/k/v widths {}/{}/{}, expected {q_out}/{kv_out}/{kv_out} \
                         for {num_heads} heads, {num_kv_heads} kv heads of dim {head_dim}",
                        q.out_features(),
                        k.out_features(),
                        v.out_features()
                    );
                }
            }
            QkvProjection::FusedPerHead(w) => {
                if num_kv_heads != num_heads || w.out_features() != 3 * q_out {
                    candle_core::bail!(
                        "per-head fused qkv projection gives width {} for {num_kv_heads} kv heads, expected {} and \
                         num_kv_heads = num_heads ({num_heads})",
                        w.out_features(),
                        3 * q_out
                    );
                }
            }
            QkvProjection::Fused(w) => {
                if w.out_features() != q_out + 2 * kv_out {
                    candle_core::bail!(
                        "fused qkv projection gives width {}, expected {}",
                        w.out_features(),
                        q_out + 2 * kv_out
                    );
                }
            }
        }
        if out.in_features() != q_out {
            candle_core::bail!("attention output projection takes {} features, expected {q_out}", out.in_features());
        }
        Ok(Self {
            qkv,
            out,
            num_heads,
            num_kv_heads,
            head_dim,
            scale: 1.0 / (head_dim as f64).sqrt(),
            positions: Vec::new(),
            window: None,
            patterns: Vec::new(),
            causality: Causality::Bidirectional,
            kernel: AttentionKernel::default(),
            qk_norm: None,
            softcap: None,
        })
    }

    /// Normalises queries and keys after the projections, before positions (OLMoE, Qwen3);
    /// the gains must match the projection widths or `head_dim`, as the norm's scope says.
    pub fn with_qk_norm(mut self, norm: QkNorm) -> Result<Self> {
        let (q_width, k_width) = match norm.scope() {
            QkNormScope::Projection => (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim),
            QkNormScope::Head => (self.head_dim, self.head_dim),
        };
        let (q, k) = (norm.queries_width(), norm.keys_width());
        if (q, k) != (q_width, k_width) {
            candle_core::bail!(
                "query/key norm gains have widths {q}/{k}, expected {q_width}/{k_width} ({:?} scope)",
                norm.scope()
            );
        }
        self.qk_norm = Some(norm);
        Ok(self)
    }

    /// The query/key norm, if any.
    pub fn qk_norm(&self) -> Option<&QkNorm> {
        self.qk_norm.as_ref()
    }

    /// Soft-caps this module's scaled scores, `cap · tanh(s / cap)` before masking, whatever
    /// mask the caller passes (Gemma 2's `attn_logit_softcapping`; see
    /// [`AttentionMask::with_logit_softcap`]).
    pub fn with_logit_softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// The score soft-cap, if any.
    pub fn logit_softcap(&self) -> Option<f64> {
        self.softcap
    }

    /// Replaces the score scale (T5 uses 1, some models fold it into the weights).
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Adds a position scheme: a rotation, an additive bias or a query-dependent score term
    /// (see [`PositionTerm`], the one way positions enter attention). Several terms apply in
    /// the order given (rotations before the scores are formed, biases summed).
    pub fn with_position(mut self, term: PositionTerm) -> Self {
        self.positions.push(term);
        self
    }

    /// The position terms of this module, in the order they were added.
    pub fn position_terms(&self) -> &[PositionTerm] {
        &self.positions
    }

    /// Rotates queries and keys by their positions before attending (RoPE): the same as
    /// `with_position(PositionTerm::Rotary(rotary))`.
    pub fn with_rotary(self, rotary: RotaryEmbedding) -> Self {
        self.with_position(PositionTerm::Rotary(rotary))
    }

    /// Limits self-attention to the `window` most recent keys (see
    /// [`Causality::SlidingWindow`](crate::Causality::SlidingWindow)), whatever mask the caller
    /// passes: models mixing global and local layers (GPT-Neo) give each layer its own window.
    pub fn with_sliding_window(mut self, window: usize) -> Self {
        self.window = Some(window);
        self
    }

    /// Adds ALiBi biases (Press et al. 2022) to the scores: each head penalises distant keys
    /// linearly. Key positions count real tokens only, so padded batches match unpadded rows.
    /// The same as `with_position(PositionTerm::Alibi(alibi))`.
    pub fn with_alibi(self, alibi: Alibi) -> Self {
        self.with_position(PositionTerm::Alibi(alibi))
    }

    /// Restricts this layer's attention to the keys a [`SparsePattern`] allows, whatever mask
    /// the caller passes (ANDed with it, as [`with_sliding_window`](Self::with_sliding_window)
    /// is): each layer of a model can carry its own pattern (the Sparse Transformer's strided
    /// and fixed heads, DALL-E's row / column / convolutional layers, GPT-3's local bands).
    /// Patterns speak absolute positions, so a layer with a pattern gets a full cache from
    /// [`new_cache`](Self::new_cache).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_attention::{AttentionMask, MultiHeadAttention, QkvProjection, SparsePattern};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let lin = |o, i| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
    /// let strided = MultiHeadAttention::new(QkvProjection::Fused(lin(24, 8)), lin(8, 8), 2, 2, 4)
    ///     .unwrap()
    ///     .with_pattern(SparsePattern::Strided { stride: 3 });
    /// assert_eq!(strided.patterns(), &[SparsePattern::Strided { stride: 3 }]);
    /// let x = Tensor::randn(0f32, 1., (1, 7, 8), &dev).unwrap();
    /// assert_eq!(strided.forward(&x, &AttentionMask::causal(), None, None).unwrap().dims(), &[1, 7, 8]);
    /// ```
    pub fn with_pattern(mut self, pattern: SparsePattern) -> Self {
        self.patterns.push(pattern);
        self
    }

    /// The sparse patterns this layer ANDs with every mask.
    pub fn patterns(&self) -> &[SparsePattern] {
        &self.patterns
    }

    /// Chooses the attention kernel (default [`AttentionKernel::Fused`], which falls back to
    /// the materialised path where it does not apply: see [`AttentionKernel::resolve`]).
    pub fn with_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The mask the single-input [`Module`] forward uses (default
    /// [`Causality::Bidirectional`]): `Causal` makes the module a decoder's self-attention in
    /// a `candle_nn::Sequential` or any code that calls `Module::forward`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Module, Tensor};
    /// use candle_nn::{VarBuilder, VarMap};
    /// use tcat_attention::{AttentionConfig, AttentionMask, Causality, MultiHeadAttention};
    /// let vars = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    /// let attn = MultiHeadAttention::load(vb, &AttentionConfig::new(16, 4)).unwrap().with_causality(Causality::Causal);
    /// let x = Tensor::randn(0f32, 1., (1, 3, 16), &Device::Cpu).unwrap();
    /// let by_module = Module::forward(&attn, &x).unwrap();
    /// let by_mask = attn.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    /// assert_eq!(by_module.to_vec3::<f32>().unwrap(), by_mask.to_vec3::<f32>().unwrap());
    /// ```
    pub fn with_causality(mut self, causality: Causality) -> Self {
        self.causality = causality;
        self
    }

    /// The mask of the single-input [`Module`] forward.
    pub fn causality(&self) -> Causality {
        self.causality
    }

    /// The attention kernel this module calls.
    pub fn kernel(&self) -> AttentionKernel {
        self.kernel
    }

    /// The sliding window of this layer's self-attention, if any.
    pub fn sliding_window(&self) -> Option<usize> {
        self.window
    }

    /// A KV cache for decoding up to `capacity` positions with this layer: a
    /// [`sliding`](KvCache::sliding) one when a sliding window makes it smaller, a
    /// [full](KvCache::new) one otherwise.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        match self.window {
            Some(window) if 2 * window < capacity && self.patterns.is_empty() => KvCache::sliding(window),
            _ => KvCache::new(capacity),
        }
    }

    /// Query heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Key/value heads (equal to `num_heads` for multi-head, 1 for multi-query attention).
    pub fn num_kv_heads(&self) -> usize {
        self.num_kv_heads
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Self-attention over `x` (`[batch, seq, hidden]`). With a cache, `x` holds only the new
    /// tokens; their keys and values are appended and attention runs over everything cached.
    ///
    /// `positions` (`[batch, seq]`) place the tokens for rotary embeddings; when absent they
    /// continue from the cache, `len..len + seq` in every row. Without rotary they are unused.
    ///
    /// The mask's key padding and segment ids cover the keys attended to, or every position
    /// so far: with a sliding cache, which holds only the most recent keys, they are narrowed to
    /// their last columns. Biases must already have one column per attended key.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (q, k, v) = self.project_self(x, None)?;
        let (q, k) = self.rotate(q, k, positions, None, cache.as_ref().map_or(0, |c| c.len()))?;
        let (k, v) = match cache {
            Some(cache) => cache.append(&k, &v)?,
            None => (k, v),
        };
        self.attend_positioned(&q, &k, &v, mask)
    }

    /// Self-attention of `x` (`[batch, seq, hidden]`) over the keys and values of `[memory; x]`:
    /// Transformer-XL's segment-level recurrence (Dai et al. 2019, §3.2), where `memory`
    /// (`[batch, mem_len, hidden]`, from `tcat_position::SegmentMemory::extended` minus the new
    /// states, or `None`) holds the previous segment's input to this layer. Queries sit at the
    /// end of the keys, so [`AttentionMask::causal`] lets query `i` see the whole memory and the
    /// current tokens up to itself; key padding and segment ids cover `mem_len + seq` keys.
    /// Rotary positions, if any, count from the first remembered position.
    pub fn forward_with_memory(&self, x: &Tensor, memory: Option<&Tensor>, mask: &AttentionMask) -> Result<Tensor> {
        let (q, k, v) = self.project_self(x, memory)?;
        let mem_len = match memory {
            Some(m) => m.dim(1)?,
            None => 0,
        };
        let (q, k) = self.rotate(q, k, None, Some(mem_len), mem_len)?;
        self.attend_positioned(&q, &k, &v, mask)
    }

    /// Queries of `x` and keys and values of `[memory; x]`, split into heads.
    fn project_self(&self, x: &Tensor, memory: Option<&Tensor>) -> Result<(Tensor, Tensor, Tensor)> {
        let extended = match memory {
            Some(m) => {
                let (b, _, hidden) = x.dims3()?;
                let (mb, _, mh) = m.dims3()?;
                if mb != b || mh != hidden {
                    candle_core::bail!(
                        "attention memory is {:?}, expected [batch={b}, mem_len, hidden={hidden}] like the input {:?}",
                        m.dims(),
                        x.dims()
                    );
                }
                Some(Tensor::cat(&[m, x], 1)?)
            }
            None => None,
        };
        let kv_source = extended.as_ref().unwrap_or(x);
        let (q, k, v) = match &self.qkv {
            QkvProjection::Separate { q, k, v } => (q.forward(x)?, k.forward(kv_source)?, v.forward(kv_source)?),
            QkvProjection::Fused(w) => {
                let qkv = w.forward(kv_source)?;
                let (q_w, kv_w) = (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim);
                (qkv.narrow(2, 0, q_w)?, qkv.narrow(2, q_w, kv_w)?, qkv.narrow(2, q_w + kv_w, kv_w)?)
            }
            QkvProjection::FusedPerHead(w) => {
                let (b, s, _) = kv_source.dims3()?;
                let (h, d) = (self.num_heads, self.head_dim);
                let qkv = w.forward(kv_source)?.reshape((b, s, h, 3 * d))?;
                let part = |i: usize| qkv.narrow(3, i * d, d)?.reshape((b, s, h * d));
                (part(0)?, part(1)?, part(2)?)
            }
        };
        // Fused projections ran over the memory too: keep the queries of `x` only.
        let q_len = x.dim(1)?;
        let q = match (&self.qkv, memory) {
            (QkvProjection::Separate { .. }, _) | (_, None) => q,
            (_, Some(_)) => q.narrow(1, q.dim(1)? - q_len, q_len)?,
        };
        Ok((self.query_heads(&q)?, self.key_heads(&k)?, self.split_heads(&v, self.num_kv_heads)?))
    }

    /// Applies the rotations: queries at `positions` (or `past..past + q_len`), keys at the same
    /// positions, or, when `key_start` is given (keys also cover a memory), at
    /// `past - key_start..past + q_len`.
    fn rotate(
        &self,
        mut q: Tensor,
        mut k: Tensor,
        positions: Option<&Tensor>,
        key_start: Option<usize>,
        past: usize,
    ) -> Result<(Tensor, Tensor)> {
        for term in &self.positions {
            let PositionTerm::Rotary(rope) = term else { continue };
            let (b, _, s, _) = q.dims4()?;
            let q_pos = match positions {
                Some(p) => p.clone(),
                None => sequential_position_ids(b, s, past, q.device())?,
            };
            let k_pos = match key_start {
                None => q_pos.clone(),
                Some(start) => sequential_position_ids(b, k.dim(2)?, past - start, k.device())?,
            };
            q = rope.apply(&q, &q_pos)?;
            k = rope.apply(&k, &k_pos)?;
        }
        Ok((q, k))
    }

    /// The layer's own restrictions (window, patterns), the position biases and score terms
    /// added to `mask`, then [`attend`](Self::attend) with the content queries.
    fn attend_positioned(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        // A sliding cache returns only the most recent keys: align the padding and the segment
        // ids (given for every position so far) with them.
        let kv_len = k.dim(2)?;
        let narrowed = align_to_held_keys(mask, kv_len)?;
        let mask = narrowed.as_ref().unwrap_or(mask);
        let only_rotary = self.positions.iter().all(|t| matches!(t, PositionTerm::Rotary(_)));
        if self.window.is_none() && self.patterns.is_empty() && only_rotary {
            return self.attend(q, k, v, mask);
        }
        let mut mask = mask.clone();
        if let Some(window) = self.window {
            mask = mask.with_sliding_window(window);
        }
        for pattern in &self.patterns {
            mask = mask.with_pattern(*pattern);
        }
        let mut content_q = q.clone();
        for term in &self.positions {
            match term {
                PositionTerm::Rotary(_) => {}
                PositionTerm::Alibi(alibi) => {
                    let b = k.dim(0)?;
                    let key_positions = match mask.key_padding() {
                        Some(keep) => positions_from_attention_mask(keep)?,
                        None => sequential_position_ids(b, kv_len, 0, k.device())?,
                    };
                    mask = mask.with_bias(alibi.bias(&key_positions)?);
                }
                PositionTerm::RelativeBias(bias) => mask = mask.with_bias(bias.bias(q.dim(2)?, kv_len)?),
                PositionTerm::Score(term) => {
                    let bias = term.score_bias_in(q, k, self.scale, &mask)?;
                    mask = mask.with_bias(bias);
                    content_q = term.content_queries(&content_q)?;
                }
            }
        }
        self.attend(&content_q, k, v, &mask)
    }

    /// Cross-attention, the encoder-decoder attention of Vaswani et al. 2017 ("Attention Is
    /// All You Need", §3.2.3): queries from the decoder states `x` (`[batch, q_len, hidden]`),
    /// keys and values from the encoder output `memory` (`[batch, mem_len, hidden]`), every
    /// query seeing every memory position the mask keeps (typically the memory's key padding,
    /// `[batch, mem_len]`). Needs [`QkvProjection::Separate`].
    ///
    /// The memory does not change while decoding, so a decoder computes its keys and values
    /// once with [`project_kv`](Self::project_kv) and runs each step through
    /// [`project_q`](Self::project_q) and [`attend`](Self::attend):
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_attention::{AttentionMask, MultiHeadAttention, QkvProjection};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let proj = |o, i| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
    /// let qkv = QkvProjection::Separate { q: proj(8, 8), k: proj(8, 8), v: proj(8, 8) };
    /// let attn = MultiHeadAttention::new(qkv, proj(8, 8), 2, 2, 4).unwrap();
    /// let memory = Tensor::randn(0f32, 1., (1, 6, 8), &dev).unwrap(); // encoder output
    /// let keep = Tensor::new(&[[1u32, 1, 1, 1, 0, 0]], &dev).unwrap(); // two padded positions
    /// let mask = AttentionMask::none().with_key_padding(keep);
    /// let decoder = Tensor::randn(0f32, 1., (1, 3, 8), &dev).unwrap();
    ///
    /// let all_at_once = attn.forward_cross(&decoder, &memory, &mask).unwrap();
    /// let (k, v) = attn.project_kv(&memory).unwrap(); // once
    /// for t in 0..3 {
    ///     let q = attn.project_q(&decoder.narrow(1, t, 1).unwrap()).unwrap();
    ///     let step = attn.attend(&q, &k, &v, &mask).unwrap();
    ///     let diff = (step - all_at_once.narrow(1, t, 1).unwrap()).unwrap().abs().unwrap();
    ///     assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
    /// }
    /// ```
    pub fn forward_cross(&self, x: &Tensor, memory: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        let (k, v) = self.project_kv(memory)?;
        let q = self.project_q(x)?;
        self.attend(&q, &k, &v, mask)
    }

    /// Queries of `x`, split into heads: `[batch, heads, seq, head_dim]` (no rotary: for
    /// cross-attention, see [`forward_cross`](Self::forward_cross)).
    pub fn project_q(&self, x: &Tensor) -> Result<Tensor> {
        match &self.qkv {
            QkvProjection::Separate { q, .. } => self.query_heads(&q.forward(x)?),
            QkvProjection::Fused(_) | QkvProjection::FusedPerHead(_) => candle_core::bail!(
                "a fused qkv projection cannot project queries alone (cross-attention needs separate projections)"
            ),
        }
    }

    /// Keys and values of `memory`, split into heads: `[batch, kv_heads, seq, head_dim]` each;
    /// computed once per encoder output and reused at every decoding step (see
    /// [`forward_cross`](Self::forward_cross)).
    pub fn project_kv(&self, memory: &Tensor) -> Result<(Tensor, Tensor)> {
        match &self.qkv {
            QkvProjection::Separate { k, v, .. } => {
                Ok((self.key_heads(&k.forward(memory)?)?, self.split_heads(&v.forward(memory)?, self.num_kv_heads)?))
            }
            QkvProjection::Fused(_) | QkvProjection::FusedPerHead(_) => candle_core::bail!(
                "a fused qkv projection cannot project keys and values alone (cross-attention needs separate projections)"
            ),
        }
    }

    /// Attends with heads already split (through the module's [`AttentionKernel`]) and merges
    /// them through the output projection:
    /// `q` `[batch, heads, q_len, head_dim]`, `k`/`v` `[batch, kv_heads, kv_len, head_dim]`,
    /// result `[batch, q_len, hidden]`.
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        let y = match self.softcap {
            Some(cap) => self.kernel.attention(q, k, v, &mask.clone().with_logit_softcap(cap), self.scale)?,
            None => self.kernel.attention(q, k, v, mask, self.scale)?,
        };
        let (b, h, s, d) = y.dims4()?;
        let y = y.transpose(1, 2)?.reshape((b, s, h * d))?;
        self.out.forward(&y)
    }

    /// Projected queries `[batch, seq, heads × head_dim]` split into heads, normalised where
    /// the module has a [`QkNorm`].
    fn query_heads(&self, q: &Tensor) -> Result<Tensor> {
        match &self.qk_norm {
            None => self.split_heads(q, self.num_heads),
            Some(n) if n.scope() == QkNormScope::Projection => self.split_heads(&n.queries(q)?, self.num_heads),
            Some(n) => n.queries(&self.split_heads(q, self.num_heads)?),
        }
    }

    /// [`query_heads`](Self::query_heads) for keys.
    fn key_heads(&self, k: &Tensor) -> Result<Tensor> {
        match &self.qk_norm {
            None => self.split_heads(k, self.num_kv_heads),
            Some(n) if n.scope() == QkNormScope::Projection => self.split_heads(&n.keys(k)?, self.num_kv_heads),
            Some(n) => n.keys(&self.split_heads(k, self.num_kv_heads)?),
        }
    }

    fn split_heads(&self, x: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, heads, self.head_dim))?.transpose(1, 2)?.contiguous()
    }
}

/// Self-attention of `x` `[batch, seq, hidden]` under the module's
/// [`with_causality`](MultiHeadAttention::with_causality) mask, without cache: so the module
/// composes with `candle_nn::Sequential` and other candle code.
impl Module for MultiHeadAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        MultiHeadAttention::forward(self, x, &AttentionMask::from(self.causality), None, None)
    }
}

/// The mask with its key padding and segment ids narrowed to their last `kv_len` positions,
/// when they cover more (a sliding cache holds only the most recent keys); `None` when nothing
/// needs narrowing.
fn align_to_held_keys(mask: &AttentionMask, kv_len: usize) -> Result<Option<AttentionMask>> {
    let last = |t: &Tensor| -> Result<Option<Tensor>> {
        let all = t.dim(1)?;
        if all > kv_len { Ok(Some(t.narrow(1, all - kv_len, kv_len)?)) } else { Ok(None) }
    };
    let keep = mask.key_padding().map(last).transpose()?.flatten();
    let segments = mask.segments().map(last).transpose()?.flatten();
    let types = mask.token_types().map(last).transpose()?.flatten();
    if keep.is_none() && segments.is_none() && types.is_none() {
        return Ok(None);
    }
    let mut aligned = mask.clone();
    if let Some(keep) = keep {
        aligned = aligned.with_key_padding(keep);
    }
    if let Some(segments) = segments {
        aligned = aligned.with_segments(segments);
    }
    if let Some(types) = types {
        aligned = aligned.with_token_types(types);
    }
    Ok(Some(aligned))
}
