//! A stack of Transformer layers with an optional final norm: the body of every encoder and
//! decoder.

use candle_core::{Result, Tensor};
use tcat_attention::{AttentionMask, KvCache};

use crate::{Norm, TransformerLayer};

/// Layers applied in order, then `final_norm` (pre-norm models such as GPT-2 end with one).
#[derive(Debug, Clone)]
pub struct Stack {
    layers: Vec<TransformerLayer>,
    final_norm: Option<Norm>,
}

impl Stack {
    /// A stack from its layers and optional final norm.
    pub fn new(layers: Vec<TransformerLayer>, final_norm: Option<Norm>) -> Self {
        Self { layers, final_norm }
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the stack has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers.
    pub fn layers(&self) -> &[TransformerLayer] {
        &self.layers
    }

    /// One empty [`KvCache`] per layer for decoding up to `capacity` positions; sliding-window
    /// layers get a sliding cache bounded by their window (see
    /// [`MultiHeadAttention::new_cache`](tcat_attention::MultiHeadAttention::new_cache)).
    pub fn new_caches(&self, capacity: usize) -> Vec<KvCache> {
        self.layers.iter().map(|layer| layer.attention().new_cache(capacity)).collect()
    }

    /// Runs every layer on `x` `[batch, seq, hidden]` at `positions` (for rotary layers). With
    /// `caches` (one per layer, from [`new_caches`](Self::new_caches)) each layer appends the
    /// new keys and values.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        caches: Option<&mut [KvCache]>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        match caches {
            Some(caches) => {
                if caches.len() != self.layers.len() {
                    candle_core::bail!("stack has {} layers but {} caches were given", self.layers.len(), caches.len());
                }
                for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
                    x = layer.forward(&x, mask, positions, Some(cache))?;
                }
            }
            None => {
                for layer in &self.layers {
                    x = layer.forward(&x, mask, positions, None)?;
                }
            }
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}
