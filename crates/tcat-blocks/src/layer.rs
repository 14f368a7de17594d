//! One Transformer layer: self-attention and feed-forward, each in a residual branch whose norm
//! placement is a [`Residual`] choice. The feed-forward branch is dense or a mixture of experts
//! ([`FeedForwardBlock`]).

use candle_core::{Result, Tensor};
use tcat_attention::{AttentionMask, KvCache, MultiHeadAttention};

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
}

/// Self-attention then feed-forward, with residuals placed by [`Residual`].
#[derive(Debug, Clone)]
pub struct TransformerLayer {
    attention: MultiHeadAttention,
    attention_norm: Norm,
    feed_forward: FeedForwardBlock,
    feed_forward_norm: Norm,
    residual: Residual,
}

impl TransformerLayer {
    /// A layer from its parts. With [`Residual::PreNorm`] and [`Residual::Parallel`] the norms
    /// apply to each branch's input, with [`Residual::PostNorm`] to each sum. `feed_forward` is a
    /// [`FeedForward`], a [`MoeFeedForward`] or a [`FeedForwardBlock`].
    pub fn new(
        attention: MultiHeadAttention,
        attention_norm: Norm,
        feed_forward: impl Into<FeedForwardBlock>,
        feed_forward_norm: Norm,
        residual: Residual,
    ) -> Self {
        Self { attention, attention_norm, feed_forward: feed_forward.into(), feed_forward_norm, residual }
    }

    /// A layer whose feed-forward branch is a mixture of experts (Switch, GLaM, Mixtral): the
    /// same residual placement as [`TransformerLayer::new`], the experts in the dense network's
    /// place. [`TransformerLayer::forward_with_router`] also returns the router's statistics.
    pub fn with_experts(
        attention: MultiHeadAttention,
        attention_norm: Norm,
        experts: MoeFeedForward,
        feed_forward_norm: Norm,
        residual: Residual,
    ) -> Self {
        Self::new(attention, attention_norm, experts, feed_forward_norm, residual)
    }

    /// The self-attention module.
    pub fn attention(&self) -> &MultiHeadAttention {
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
        let mut cache = cache;
        self.residual_branches(x, |h| self.attention.forward(h, mask, positions, cache.as_deref_mut()))
    }

    /// Applies the layer to `x` with its attention's keys and values over `[memory; x]`
    /// (Transformer-XL's segment-level recurrence, Dai et al. 2019, §3.2; see
    /// [`MultiHeadAttention::forward_with_memory`]). `memory` is the previous segment's input to
    /// this layer, `[batch, mem_len, hidden]`; with a pre-norm or parallel layer it goes through
    /// the attention norm as `x` does.
    pub fn forward_with_memory(&self, x: &Tensor, memory: Option<&Tensor>, mask: &AttentionMask) -> Result<Tensor> {
        let memory = match (self.residual, memory) {
            (Residual::PreNorm | Residual::Parallel, Some(m)) => Some(self.attention_norm.forward(m)?),
            (_, m) => m.cloned(),
        };
        Ok(self.residual_branches(x, |h| self.attention.forward_with_memory(h, memory.as_ref(), mask))?.0)
    }

    /// The residual placement around `attend` and the feed-forward branch (with its router's
    /// output, if it routes).
    fn residual_branches(
        &self,
        x: &Tensor,
        mut attend: impl FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Option<RouterOutput>)> {
        let ffn = |h: &Tensor| self.feed_forward.forward_with_router(h);
        match self.residual {
            Residual::PostNorm => {
                let h = self.attention_norm.forward(&(x + attend(x)?)?)?;
                let (f, router) = ffn(&h)?;
                Ok((self.feed_forward_norm.forward(&(&h + f)?)?, router))
            }
            Residual::PreNorm => {
                let h = (x + attend(&self.attention_norm.forward(x)?)?)?;
                let (f, router) = ffn(&self.feed_forward_norm.forward(&h)?)?;
                Ok(((&h + f)?, router))
            }
            Residual::Parallel => {
                let a = attend(&self.attention_norm.forward(x)?)?;
                let (f, router) = ffn(&self.feed_forward_norm.forward(x)?)?;
                Ok((((x + a)? + f)?, router))
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
