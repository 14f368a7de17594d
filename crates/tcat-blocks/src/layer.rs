//! One Transformer layer: self-attention and feed-forward, each in a residual branch whose norm
//! placement is a [`Residual`] choice.

use candle_core::{Result, Tensor};
use tcat_attention::{AttentionMask, KvCache, MultiHeadAttention};

use crate::{FeedForward, Norm};

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
    feed_forward: FeedForward,
    feed_forward_norm: Norm,
    residual: Residual,
}

impl TransformerLayer {
    /// A layer from its parts. With [`Residual::PreNorm`] and [`Residual::Parallel`] the norms
    /// apply to each branch's input, with [`Residual::PostNorm`] to each sum.
    pub fn new(
        attention: MultiHeadAttention,
        attention_norm: Norm,
        feed_forward: FeedForward,
        feed_forward_norm: Norm,
        residual: Residual,
    ) -> Self {
        Self { attention, attention_norm, feed_forward, feed_forward_norm, residual }
    }

    /// The self-attention module.
    pub fn attention(&self) -> &MultiHeadAttention {
        &self.attention
    }

    /// The other parts: the attention norm, the feed-forward network, its norm and the
    /// residual placement (to rebuild the layer around another attention).
    pub fn parts(&self) -> (&Norm, &FeedForward, &Norm, Residual) {
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
        self.residual_branches(x, |h| self.attention.forward_with_memory(h, memory.as_ref(), mask))
    }

    /// The residual placement around `attend` and the feed-forward branch.
    fn residual_branches(&self, x: &Tensor, mut attend: impl FnMut(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        match self.residual {
            Residual::PostNorm => {
                let h = self.attention_norm.forward(&(x + attend(x)?)?)?;
                self.feed_forward_norm.forward(&(&h + self.feed_forward.forward(&h)?)?)
            }
            Residual::PreNorm => {
                let h = (x + attend(&self.attention_norm.forward(x)?)?)?;
                &h + self.feed_forward.forward(&self.feed_forward_norm.forward(&h)?)?
            }
            Residual::Parallel => {
                let a = attend(&self.attention_norm.forward(x)?)?;
                let f = self.feed_forward.forward(&self.feed_forward_norm.forward(x)?)?;
                (x + a)? + f
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
