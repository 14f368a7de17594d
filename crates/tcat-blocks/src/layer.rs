//! One Transformer layer: self-attention, optionally cross-attention to an encoder's output
//! (the decoder layer of Vaswani et al. 2017, §3.1: "a third sub-layer, which performs
//! multi-head attention over the output of the encoder stack"), and feed-forward, each in a
//! residual branch whose norm placement is a [`Residual`] choice. The self-attention is
//! standard multi-head (grouped, multi-query) attention or DeepSeek's multi-head latent attention
//! ([`SelfAttention`]); the feed-forward branch is dense or a mixture of experts
//! ([`FeedForwardBlock`]).

use candle_core::{Result, Tensor};
use tcat_attention::{AttentionMask, Causality, KvCache, LatentAttention, MultiHeadAttention};

use crate::{FeedForward, MoeFeedForward, Norm, RouterOutput};

/// A layer's feed-forward branch: one dense network, or a mixture of experts (Switch, GLaM,
/// Mixtral), in the same residual place.
#[derive(Debug, Clone)]
pub enum FeedForwardBlock {
    /// One [`FeedForward`] network for every token.
    Dense(FeedForward),
    /// A routed [`MoeFeedForward`].
    Experts(MoeFeedForward),
}

impl FeedForwardBlock {
    /// Applies the branch to `[.., hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_router(x)?.0)
    }

    /// Applies the branch; a mixture of experts also returns its [`RouterOutput`].
    pub fn forward_with_router(&self, x: &Tensor) -> Result<(Tensor, Option<RouterOutput>)> {
        match self {
            FeedForwardBlock::Dense(f) => Ok((f.forward(x)?, None)),
            FeedForwardBlock::Experts(m) => m.forward_with_router(x).map(|(y, r)| (y, Some(r))),
        }
    }

    /// The dense network, if the branch is one.
    pub fn as_dense(&self) -> Option<&FeedForward> {
        match self {
            FeedForwardBlock::Dense(f) => Some(f),
            FeedForwardBlock::Experts(_) => None,
        }
    }

    /// The mixture of experts, if the branch is one.
    pub fn as_experts(&self) -> Option<&MoeFeedForward> {
        match self {
            FeedForwardBlock::Dense(_) => None,
            FeedForwardBlock::Experts(m) => Some(m),
        }
    }
}

impl From<FeedForward> for FeedForwardBlock {
    fn from(f: FeedForward) -> Self {
        FeedForwardBlock::Dense(f)
    }
}

impl From<MoeFeedForward> for FeedForwardBlock {
    fn from(m: MoeFeedForward) -> Self {
        FeedForwardBlock::Experts(m)
    }
}

/// [`FeedForwardBlock::forward`] as a candle [`Module`](candle_core::Module).
impl candle_core::Module for FeedForwardBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        FeedForwardBlock::forward(self, x)
    }
}

/// A layer's self-attention: [`MultiHeadAttention`] (with any head grouping, positions and
/// patterns), or multi-head latent attention (DeepSeek-AI 2024, "DeepSeek-V2", §2.1), whose
/// cache holds one latent per token instead of per-head keys and values.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_attention::{LatentAttention, LatentDims, LatentQuery};
/// use tcat_blocks::SelfAttention;
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let lin = |o: usize, i: usize| Linear::new(Tensor::zeros((o, i), DType::F32, &dev).unwrap(), None);
/// let dims = LatentDims { heads: 2, nope_dim: 4, rope_dim: 2, value_dim: 3, rank: 5 };
/// let mla = LatentAttention::new(
///     LatentQuery::Direct(lin(12, 8)),
///     lin(7, 8),
///     Tensor::ones(5, DType::F32, &dev).unwrap(),
///     lin(14, 5),
///     lin(8, 6),
///     dims,
///     1e-6,
/// )
/// .unwrap();
/// let attention = SelfAttention::from(mla);
/// assert_eq!(attention.cached_per_position(), 7); // rank + rope_dim, for all heads together
/// ```
#[derive(Debug, Clone)]
pub enum SelfAttention {
    /// Multi-head, grouped-query or multi-query attention.
    MultiHead(MultiHeadAttention),
    /// Multi-head latent attention (always causal).
    Latent(LatentAttention),
}

impl SelfAttention {
    /// Attends over `x` `[batch, seq, hidden]`; with a cache, `x` holds the new tokens only.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        match self {
            SelfAttention::MultiHead(a) => a.forward(x, mask, positions, cache),
            SelfAttention::Latent(a) => a.forward(x, mask, positions, cache),
        }
    }

    /// The mask of the single-input forward (latent attention is causal).
    pub fn causality(&self) -> Causality {
        match self {
            SelfAttention::MultiHead(a) => a.causality(),
            SelfAttention::Latent(_) => Causality::Causal,
        }
    }

    /// The sliding window, if any.
    pub fn sliding_window(&self) -> Option<usize> {
        match self {
            SelfAttention::MultiHead(a) => a.sliding_window(),
            SelfAttention::Latent(_) => None,
        }
    }

    /// An empty cache for decoding up to `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        match self {
            SelfAttention::MultiHead(a) => a.new_cache(capacity),
            SelfAttention::Latent(a) => a.new_cache(capacity),
        }
    }

    /// Numbers the cache holds per position and batch row: `2 · kv_heads · head_dim` for keys
    /// and values, `rank + rope_dim` for a latent.
    pub fn cached_per_position(&self) -> usize {
        match self {
            SelfAttention::MultiHead(a) => 2 * a.num_kv_heads() * a.head_dim(),
            SelfAttention::Latent(a) => a.dims().cached_per_token(),
        }
    }

    /// The multi-head attention, if it is one.
    pub fn as_multi_head(&self) -> Option<&MultiHeadAttention> {
        match self {
            SelfAttention::MultiHead(a) => Some(a),
            SelfAttention::Latent(_) => None,
        }
    }
}

impl From<MultiHeadAttention> for SelfAttention {
    fn from(a: MultiHeadAttention) -> Self {
        SelfAttention::MultiHead(a)
    }
}

impl From<LatentAttention> for SelfAttention {
    fn from(a: LatentAttention) -> Self {
        SelfAttention::Latent(a)
    }
}

/// Where the norms sit relative to the residual additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    /// `x = norm(x + f(x))` after each branch: the original Transformer, BERT, DistilBERT.
    PostNorm,
    /// `x = x + f(norm(x))` before each branch (Xiong et al. 2020): GPT-2, LLaMA.
    PreNorm,
    /// `x = x + attn(norm₁(x)) + ffn(norm₂(x))`, both branches from the same input (GPT-J,
    /// GPT-NeoX, PaLM); GPT-J passes the same norm twice.
    Parallel,
    /// `x = x + norm₂(f(norm₁(x)))` around each branch: the sandwich norm of CogView (Ding et
    /// al. 2021, §2.4) as Gemma 2 and 3 place it (Gemma Team 2024, "Gemma 2: Improving Open
    /// Language Models at a Practical Size", §2: "we use RMSNorm to normalize the input and
    /// output of each transformer sub-layer"). Built with [`TransformerLayer::sandwich`], which
    /// takes the two output norms.
    Sandwich,
}

/// Self-attention, optional cross-attention, then feed-forward, with residuals placed by
/// [`Residual`].
#[derive(Debug, Clone)]
pub struct TransformerLayer {
    attention: SelfAttention,
    attention_norm: Norm,
    cross: Option<(MultiHeadAttention, Norm)>,
    feed_forward: FeedForwardBlock,
    feed_forward_norm: Norm,
    residual: Residual,
    /// The output norms of the attention and feed-forward branches ([`Residual::Sandwich`]).
    output_norms: Option<(Norm, Norm)>,
}

/// What a cross-attending layer reads of the encoder's output: its keys and values, projected
/// once ([`TransformerLayer::project_memory`]) and reused at every decoding step, and the mask
/// over them (the encoder's key padding).
#[derive(Debug, Clone, Copy)]
pub struct CrossMemory<'a> {
    /// Keys `[batch, kv_heads, memory_len, head_dim]`.
    pub keys: &'a Tensor,
    /// Values `[batch, kv_heads, memory_len, head_dim]`.
    pub values: &'a Tensor,
    /// The mask over the memory (bidirectional, with the encoder's key padding).
    pub mask: &'a AttentionMask,
}

impl TransformerLayer {
    /// A layer from its parts. With [`Residual::PreNorm`] and [`Residual::Parallel`] the norms
    /// apply to each branch's input, with [`Residual::PostNorm`] to each sum. `feed_forward` is a
    /// [`FeedForward`], a [`MoeFeedForward`] or a [`FeedForwardBlock`]; `attention` a
    /// [`MultiHeadAttention`], a [`LatentAttention`] or a [`SelfAttention`].
    pub fn new(
        attention: impl Into<SelfAttention>,
        attention_norm: Norm,
        feed_forward: impl Into<FeedForwardBlock>,
        feed_forward_norm: Norm,
        residual: Residual,
    ) -> Self {
        Self {
            attention: attention.into(),
            attention_norm,
            cross: None,
            feed_forward: feed_forward.into(),
            feed_forward_norm,
            residual,
            output_norms: None,
        }
    }

    /// A [`Residual::Sandwich`] layer: each branch's input and output normalised,
    /// `h = x + attention_out_norm(attn(attention_norm(x)))`, then
    /// `h + feed_forward_out_norm(ffn(feed_forward_norm(h)))` (Gemma 2 and 3).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_attention::{AttentionMask, MultiHeadAttention, QkvProjection};
    /// use tcat_blocks::{Activation, FeedForward, Norm, TransformerLayer};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let lin = |o, i| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
    /// let qkv = QkvProjection::Separate { q: lin(8, 8), k: lin(8, 8), v: lin(8, 8) };
    /// let attention = MultiHeadAttention::new(qkv, lin(8, 8), 2, 2, 4).unwrap();
    /// let ffn = FeedForward::gated(lin(16, 8), lin(16, 8), lin(8, 16), Activation::GeluTanh);
    /// let norm = || Norm::rms_norm_plus_one(Tensor::zeros(8, DType::F32, &dev).unwrap(), 1e-6).unwrap();
    /// let layer = TransformerLayer::sandwich(attention, norm(), norm(), ffn, norm(), norm());
    /// let x = Tensor::randn(0f32, 1., (1, 3, 8), &dev).unwrap();
    /// let y = layer.forward(&x, &AttentionMask::causal(), None, None).unwrap();
    /// assert_eq!(y.dims(), &[1, 3, 8]);
    /// ```
    pub fn sandwich(
        attention: impl Into<SelfAttention>,
        attention_norm: Norm,
        attention_out_norm: Norm,
        feed_forward: impl Into<FeedForwardBlock>,
        feed_forward_norm: Norm,
        feed_forward_out_norm: Norm,
    ) -> Self {
        Self {
            output_norms: Some((attention_out_norm, feed_forward_out_norm)),
            ..Self::new(attention, attention_norm, feed_forward, feed_forward_norm, Residual::Sandwich)
        }
    }

    /// The branch output norms of a [`Residual::Sandwich`] layer (attention, feed-forward).
    pub fn output_norms(&self) -> Option<(&Norm, &Norm)> {
        self.output_norms.as_ref().map(|(a, f)| (a, f))
    }

    /// Adds a cross-attention branch between self-attention and feed-forward (the decoder
    /// layer of an encoder-decoder: T5, BART, Marian), with its own norm placed as the other
    /// branches' ([`Residual::PostNorm`] or [`Residual::PreNorm`]; a parallel layer has no
    /// defined place for it and is refused). Its queries come from the layer, its keys and
    /// values from [`project_memory`](Self::project_memory) of the encoder output.
    pub fn with_cross_attention(mut self, attention: MultiHeadAttention, norm: Norm) -> Result<Self> {
        if matches!(self.residual, Residual::Parallel | Residual::Sandwich) {
            candle_core::bail!("a {:?}-residual layer cannot take a cross-attention branch", self.residual);
        }
        self.cross = Some((attention, norm));
        Ok(self)
    }

    /// The cross-attention module, if the layer has one.
    pub fn cross_attention(&self) -> Option<&MultiHeadAttention> {
        self.cross.as_ref().map(|(a, _)| a)
    }

    /// The keys and values of `memory` `[batch, memory_len, hidden]` (the encoder output) for
    /// this layer's cross-attention, computed once per encoder pass; `None` without one.
    pub fn project_memory(&self, memory: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        self.cross.as_ref().map(|(a, _)| a.project_kv(memory)).transpose()
    }

    /// A layer whose feed-forward branch is a mixture of experts (Switch, GLaM, Mixtral): the
    /// same residual placement as [`TransformerLayer::new`], the experts in the dense network's
    /// place. [`TransformerLayer::forward_with_router`] also returns the router's statistics.
    pub fn with_experts(
        attention: impl Into<SelfAttention>,
        attention_norm: Norm,
        experts: MoeFeedForward,
        feed_forward_norm: Norm,
        residual: Residual,
    ) -> Self {
        Self::new(attention, attention_norm, experts, feed_forward_norm, residual)
    }

    /// The self-attention module.
    pub fn attention(&self) -> &SelfAttention {
        &self.attention
    }

    /// The other parts: the attention norm, the feed-forward branch, its norm and the
    /// residual placement (to rebuild the layer around another attention).
    pub fn parts(&self) -> (&Norm, &FeedForwardBlock, &Norm, Residual) {
        (&self.attention_norm, &self.feed_forward, &self.feed_forward_norm, self.residual)
    }

    /// Applies the layer to `x` `[batch, seq, hidden]`; `positions` and `cache` go to the
    /// attention (see [`MultiHeadAttention::forward`]).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        Ok(self.forward_with_router(x, mask, positions, cache)?.0)
    }

    /// [`TransformerLayer::forward`], also returning the [`RouterOutput`] of a mixture-of-experts
    /// branch (`None` for a dense one): a model collects these per layer to report the experts'
    /// load (`[layers, experts]`) and to sum the auxiliary losses
    /// ([`load_balancing_loss`](crate::load_balancing_loss) over the layers, as transformers does).
    pub fn forward_with_router(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<(Tensor, Option<RouterOutput>)> {
        self.forward_cross(x, mask, positions, cache, None)
    }

    /// [`forward_with_router`](Self::forward_with_router) of a decoder layer: between
    /// self-attention and feed-forward, the cross-attention branch attends to `memory` (the
    /// encoder output's keys and values from [`project_memory`](Self::project_memory)).
    /// `memory` must be given exactly when the layer has a cross-attention branch.
    pub fn forward_cross(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        memory: Option<CrossMemory>,
    ) -> Result<(Tensor, Option<RouterOutput>)> {
        let mut cache = cache;
        let cross = match (&self.cross, memory) {
            (Some((attention, norm)), Some(m)) => Some((attention, norm, m)),
            (None, None) => None,
            (Some(_), None) => candle_core::bail!("this decoder layer cross-attends: the encoder memory is missing"),
            (None, Some(_)) => candle_core::bail!("encoder memory given to a layer without cross-attention"),
        };
        self.residual_branches(x, |h| self.attention.forward(h, mask, positions, cache.as_deref_mut()), cross)
    }

    /// Applies the layer to `x` with its attention's keys and values over `[memory; x]`
    /// (Transformer-XL's segment-level recurrence, Dai et al. 2019, §3.2; see
    /// [`MultiHeadAttention::forward_with_memory`]). `memory` is the previous segment's input to
    /// this layer, `[batch, mem_len, hidden]`; with a pre-norm or parallel layer it goes through
    /// the attention norm as `x` does.
    pub fn forward_with_memory(&self, x: &Tensor, memory: Option<&Tensor>, mask: &AttentionMask) -> Result<Tensor> {
        let memory = match (self.residual, memory) {
            (Residual::PreNorm | Residual::Parallel | Residual::Sandwich, Some(m)) => {
                Some(self.attention_norm.forward(m)?)
            }
            (_, m) => m.cloned(),
        };
        let SelfAttention::MultiHead(attention) = &self.attention else {
            candle_core::bail!(
                "segment memory (Transformer-XL recurrence) needs multi-head attention, not latent attention"
            )
        };
        Ok(self.residual_branches(x, |h| attention.forward_with_memory(h, memory.as_ref(), mask), None)?.0)
    }

    /// The residual placement around `attend`, the cross-attention branch (if any) and the
    /// feed-forward branch (with its router's output, if it routes).
    fn residual_branches(
        &self,
        x: &Tensor,
        mut attend: impl FnMut(&Tensor) -> Result<Tensor>,
        cross: Option<(&MultiHeadAttention, &Norm, CrossMemory)>,
    ) -> Result<(Tensor, Option<RouterOutput>)> {
        let ffn = |h: &Tensor| self.feed_forward.forward_with_router(h);
        let cross_attend = |h: &Tensor, (a, _, m): (&MultiHeadAttention, &Norm, CrossMemory)| {
            a.attend(&a.project_q(h)?, m.keys, m.values, m.mask)
        };
        match self.residual {
            Residual::PostNorm => {
                let mut h = self.attention_norm.forward(&(x + attend(x)?)?)?;
                if let Some(c) = cross {
                    h = c.1.forward(&(&h + cross_attend(&h, c)?)?)?;
                }
                let (f, router) = ffn(&h)?;
                Ok((self.feed_forward_norm.forward(&(&h + f)?)?, router))
            }
            Residual::PreNorm => {
                let mut h = (x + attend(&self.attention_norm.forward(x)?)?)?;
                if let Some(c) = cross {
                    h = (&h + cross_attend(&c.1.forward(&h)?, c)?)?;
                }
                let (f, router) = ffn(&self.feed_forward_norm.forward(&h)?)?;
                Ok(((&h + f)?, router))
            }
            Residual::Parallel => {
                let a = attend(&self.attention_norm.forward(x)?)?;
                let (f, router) = ffn(&self.feed_forward_norm.forward(x)?)?;
                Ok((((x + a)? + f)?, router))
            }
            Residual::Sandwich => {
                let Some((attention_out, feed_forward_out)) = &self.output_norms else {
                    candle_core::bail!(
                        "a sandwich-norm layer needs its branch output norms (build it with TransformerLayer::sandwich)"
                    );
                };
                let h = (x + attention_out.forward(&attend(&self.attention_norm.forward(x)?)?)?)?;
                let (f, router) = ffn(&self.feed_forward_norm.forward(&h)?)?;
                Ok(((&h + feed_forward_out.forward(&f)?)?, router))
            }
        }
    }
}

/// The layer over `x` `[batch, seq, hidden]` with its attention's own mask
/// ([`MultiHeadAttention::causality`]), without cache: a candle [`Module`](candle_core::Module).
impl candle_core::Module for TransformerLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        TransformerLayer::forward(self, x, &AttentionMask::from(self.attention.causality()), None, None)
    }
}
