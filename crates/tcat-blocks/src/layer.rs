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

    /// Applies the layer to `x` `[batch, seq, hidden]`; `positions` and `cache` go to the
    /// attention (see [`MultiHeadAttention::forward`]).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let attend = |h: &Tensor, cache| self.attention.forward(h, mask, positions, cache);
        match self.residual {
            Residual::PostNorm => {
                let h = self.attention_norm.forward(&(x + attend(x, cache)?)?)?;
                self.feed_forward_norm.forward(&(&h + self.feed_forward.forward(&h)?)?)
            }
            Residual::PreNorm => {
                let h = (x + attend(&self.attention_norm.forward(x)?, cache)?)?;
                &h + self.feed_forward.forward(&self.feed_forward_norm.forward(&h)?)?
            }
            Residual::Parallel => {
                let a = attend(&self.attention_norm.forward(x)?, cache)?;
                let f = self.feed_forward.forward(&self.feed_forward_norm.forward(x)?)?;
                (x + a)? + f
            }
        }
    }
}
