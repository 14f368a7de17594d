//! Masks as types: which keys each query may attend to, and an additive bias.

use candle_core::{DType, Device, Result, Tensor};

use crate::{SparsePattern, VisibilityPlan};

/// Whether queries may look at later keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Causality {
    /// Every query sees every key (encoders, cross-attention; Vaswani et al. 2017, §3.2.3).
    ///
    /// ```
    /// use tcat_attention::AttentionMask;
    /// assert_eq!(AttentionMask::none().grid(2, 3).unwrap(), "■■■\n■■■\n");
    /// ```
    #[default]
    Bidirectional,
    /// Query `i` of `q_len` sees key `j` of `kv_len` iff `j <= i + (kv_len - q_len)`: the
    /// decoder's masked self-attention of Vaswani et al. 2017 ("Attention Is All You Need",
    /// §3.2.3: "preventing leftward information flow"), which keeps generation
    /// auto-regressive.
    ///
    /// The mask is aligned to the end of the keys ("bottom-right"): with `kv_len - q_len` keys
    /// already in a cache, the new queries sit at absolute positions `kv_len - q_len + i`. This
    /// is the causal mask with a KV offset that incremental decoding needs, and it equals the
    /// usual lower-triangular mask when `q_len == kv_len`.
    ///
    /// ```
    /// use tcat_attention::AttentionMask;
    /// // A full pass over 4 tokens: lower-triangular.
    /// assert_eq!(AttentionMask::causal().grid(4, 4).unwrap(), "■···\n■■··\n■■■·\n■■■■\n");
    /// // Two new tokens after two cached ones: positions 2 and 3 see the cache and themselves.
    /// assert_eq!(AttentionMask::causal().grid(2, 4).unwrap(), "■■■·\n■■■■\n");
    /// ```
    Causal,
    /// Causal, and each query sees only the `window` most recent keys, itself included:
    /// key `j` is visible from absolute position `p` iff `p − window < j ≤ p` (local attention
    /// of Longformer, Beltagy et al. 2020; Mistral; GPT-Neo's local layers).
    SlidingWindow {
        /// Keys visible to each query, itself included.
        window: usize,
    },
}

/// A typed description of the masking and bias applied to attention scores.
///
/// Built with [`AttentionMask::none`] or [`AttentionMask::causal`], then refined with
/// [`with_key_padding`](Self::with_key_padding) and [`with_bias`](Self::with_bias).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::AttentionMask;
/// let dev = Device::Cpu;
/// let keep = Tensor::new(&[[1u32, 1, 0]], &dev).unwrap(); // the third key is padding
/// let mask = AttentionMask::causal().with_key_padding(keep);
/// let allowed = mask.allowed(1, 3, 3, &dev).unwrap().unwrap();
/// assert_eq!(
///     allowed.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<u8>().unwrap(),
///     [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttentionMask {
    causality: Causality,
    key_padding: Option<Tensor>,
    patterns: Vec<SparsePattern>,
    segments: Option<Tensor>,
    token_types: Option<Tensor>,
    explicit: Option<Tensor>,
    biases: Vec<Tensor>,
    softcap: Option<f64>,
}

impl Causality {
    /// Whether the query at absolute position `query` may see the key at `key`.
    pub fn allows(&self, query: usize, key: usize) -> bool {
        self.key_range(query as i64, key.saturating_add(1)).contains(&key)
    }
}

/// The mask of a causality alone.
///
/// ```
/// use tcat_attention::{AttentionMask, Causality};
/// assert_eq!(AttentionMask::from(Causality::Causal).causality(), Causality::Causal);
/// ```
impl From<Causality> for AttentionMask {
    fn from(causality: Causality) -> Self {
        Self { causality, ..Self::default() }
    }
}

impl AttentionMask {
    /// No masking: every query sees every key.
    pub fn none() -> Self {
        Self::default()
    }

    /// Causal masking aligned to the end of the keys (see [`Causality::Causal`]).
    pub fn causal() -> Self {
        Self { causality: Causality::Causal, ..Self::default() }
    }

    /// Restricts a causal mask to a sliding window of `window` keys (see
    /// [`Causality::SlidingWindow`]); a bidirectional mask becomes a causal window.
    pub fn with_sliding_window(mut self, window: usize) -> Self {
        self.causality = Causality::SlidingWindow { window };
        self
    }

    /// Masks padded keys: `keep` is `[batch, kv_len]`, non-zero where the key is a real token.
    pub fn with_key_padding(mut self, keep: Tensor) -> Self {
        self.key_padding = Some(keep);
        self
    }

    /// Restricts every query to the keys a [`SparsePattern`] allows (ANDed with the causality,
    /// the padding and any pattern given before: a key must be allowed by every pattern).
    /// Attention fails on a pattern whose parameters cannot work (a zero stride).
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, SparsePattern};
    /// let both = AttentionMask::none()
    ///     .with_pattern(SparsePattern::Strided { stride: 2 })
    ///     .with_pattern(SparsePattern::Fixed { block: 2, summary: 1 });
    /// assert_eq!(both.patterns().len(), 2);
    /// assert_eq!(both.grid(4, 4).unwrap(), "■···\n■■··\n·■■·\n·■■■\n");
    /// ```
    pub fn with_pattern(mut self, pattern: SparsePattern) -> Self {
        self.patterns.push(pattern);
        self
    }

    /// Block-diagonal attention for packed sequences: `segments` is `[batch, kv_len]` (an
    /// integer id per key position), and a query sees only keys of its own segment; queries
    /// take the ids of the last `q_len` positions. Several short sequences then share one row
    /// without attending to each other, the block-diagonal mask of sequence packing without
    /// cross-contamination (Krell et al. 2021, "Efficient Sequence Packing without
    /// Cross-contamination: Accelerating Large Language Models without Impacting
    /// Performance", §3). While decoding with a cache, pass the ids of every position so far.
    ///
    /// Two sequences of 2 and 3 tokens packed in one causal row:
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_attention::AttentionMask;
    /// let segments = Tensor::new(&[[0u32, 0, 1, 1, 1]], &Device::Cpu).unwrap();
    /// let grid = AttentionMask::causal().with_segments(segments).grid(5, 5).unwrap();
    /// assert_eq!(grid, "■····\n■■···\n··■··\n··■■·\n··■■■\n");
    /// ```
    pub fn with_segments(mut self, segments: Tensor) -> Self {
        self.segments = Some(segments);
        self
    }

    /// Token type (segment) ids, `[batch, kv_len]`, that restrict nothing: score terms read
    /// them, as XLNet's relative segment encodings do
    /// ([`RelativeSegments`](crate::RelativeSegments)). Queries take the ids of the last
    /// `q_len` positions. Unlike [`with_segments`](Self::with_segments), every query still sees
    /// every key.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_attention::AttentionMask;
    /// let types = Tensor::new(&[[0u32, 0, 1]], &Device::Cpu).unwrap();
    /// let mask = AttentionMask::none().with_token_types(types);
    /// assert!(mask.token_types().is_some());
    /// assert_eq!(mask.grid(3, 3).unwrap(), "■■■\n■■■\n■■■\n");
    /// ```
    pub fn with_token_types(mut self, token_types: Tensor) -> Self {
        self.token_types = Some(token_types);
        self
    }

    /// The token type ids score terms may read, if any.
    pub fn token_types(&self) -> Option<&Tensor> {
        self.token_types.as_ref()
    }

    /// An explicit visibility mask, broadcastable to `[batch, 1, q_len, kv_len]`, non-zero where
    /// the query may see the key (ANDed with everything else): for masks no type describes, such
    /// as XLNet's permutation masks. The fused kernel hands such masks to the materialised path.
    pub fn with_allowed(mut self, allowed: Tensor) -> Self {
        self.explicit = Some(allowed);
        self
    }

    /// The explicit visibility mask, if any.
    pub fn explicit(&self) -> Option<&Tensor> {
        self.explicit.as_ref()
    }

    /// The first sparse pattern, if any (see [`patterns`](Self::patterns) for all of them).
    pub fn pattern(&self) -> Option<&SparsePattern> {
        self.patterns.first()
    }

    /// Every sparse pattern, ANDed: a key is visible only if each of them allows it.
    pub fn patterns(&self) -> &[SparsePattern] {
        &self.patterns
    }

    /// The segment ids of packed sequences, if any.
    pub fn segments(&self) -> Option<&Tensor> {
        self.segments.as_ref()
    }

    /// Adds `bias` (broadcastable to `[batch, heads, q_len, kv_len]`) to the scaled scores, as
    /// relative-position schemes do; biases given twice are summed.
    pub fn with_bias(mut self, bias: Tensor) -> Self {
        self.biases.push(bias);
        self
    }

    /// Soft-caps the scaled scores, `cap · tanh(s / cap)`, before the biases are added and the
    /// mask applies (Gemma 2's `attn_logit_softcapping`; Gemma Team 2024, "Gemma 2: Improving
    /// Open Language Models at a Practical Size", §2). Both kernels and the
    /// [`reference`](crate::reference) honour it.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_attention::{fused_attention, reference, scaled_dot_product_attention, AttentionMask};
    /// let dev = Device::Cpu;
    /// let q = Tensor::randn(0f32, 3., (1, 2, 5, 4), &dev).unwrap();
    /// let k = Tensor::randn(0f32, 3., (1, 2, 5, 4), &dev).unwrap();
    /// let v = Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev).unwrap();
    /// let mask = AttentionMask::causal().with_logit_softcap(2.0);
    /// let want = reference::attention(&q, &k, &v, &mask, 0.5).unwrap();
    /// for got in [fused_attention(&q, &k, &v, &mask, 0.5), scaled_dot_product_attention(&q, &k, &v, &mask, 0.5)] {
    ///     let d = (got.unwrap() - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    ///     assert!(d < 1e-5);
    /// }
    /// ```
    pub fn with_logit_softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// The score soft-cap, if any (see [`with_logit_softcap`](Self::with_logit_softcap)).
    pub fn logit_softcap(&self) -> Option<f64> {
        self.softcap
    }

    /// The causality of this mask.
    pub fn causality(&self) -> Causality {
        self.causality
    }

    /// The key-padding tensor, if any.
    pub fn key_padding(&self) -> Option<&Tensor> {
        self.key_padding.as_ref()
    }

    /// The additive biases, summed into the scores.
    pub fn biases(&self) -> &[Tensor] {
        &self.biases
    }

    /// Whether this mask hides any key from any query for the given lengths.
    pub fn restricts(&self, q_len: usize, kv_len: usize) -> bool {
        self.causality.hides_keys(q_len, kv_len)
            || self.key_padding.is_some()
            || !self.patterns.is_empty()
            || self.segments.is_some()
            || self.explicit.is_some()
    }

    /// Draws which keys (columns) each query (row) of batch row 0 sees, `■` for visible and
    /// `·` for masked, for docs and debugging.
    ///
    /// ```
    /// use tcat_attention::AttentionMask;
    /// let grid = AttentionMask::causal().with_sliding_window(2).grid(4, 4).unwrap();
    /// assert_eq!(grid, "■···\n■■··\n·■■·\n··■■\n");
    /// ```
    pub fn grid(&self, q_len: usize, kv_len: usize) -> Result<String> {
        let device = Device::Cpu;
        let batch = match (&self.key_padding, &self.segments) {
            (Some(t), _) | (None, Some(t)) => t.dim(0)?,
            (None, None) => 1,
        };
        let rows: Vec<Vec<u8>> = match self.allowed(batch, q_len, kv_len, &device)? {
            None => vec![vec![1; kv_len]; q_len],
            Some(allowed) => allowed.broadcast_as((batch, 1, q_len, kv_len))?.get(0)?.get(0)?.to_vec2()?,
        };
        Ok(rows.iter().map(|r| r.iter().map(|&a| if a != 0 { '■' } else { '·' }).collect::<String>() + "\n").collect())
    }

    /// The boolean mask as a `u8` tensor broadcastable to `[batch, 1, q_len, kv_len]`
    /// (1 = may attend), or `None` when nothing is masked: the [`VisibilityPlan`] of this mask
    /// for these lengths, materialised.
    pub fn allowed(&self, batch: usize, q_len: usize, kv_len: usize, device: &Device) -> Result<Option<Tensor>> {
        VisibilityPlan::new(self, batch, q_len, kv_len)?.allowed(device)
    }

    /// The [`VisibilityPlan`] of this mask for `batch` rows of `q_len` queries at the end of
    /// `kv_len` keys: every part validated once.
    pub fn plan(&self, batch: usize, q_len: usize, kv_len: usize) -> Result<VisibilityPlan> {
        VisibilityPlan::new(self, batch, q_len, kv_len)
    }
}

/// The most negative finite value of `dtype`, used for masked scores so that a fully masked
/// row stays finite (uniform) instead of turning into NaN.
pub(crate) fn masked_fill_value(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.389_531_389_251_535e38,
        DType::F32 => f32::MIN as f64,
        _ => f64::MIN,
    }
}
