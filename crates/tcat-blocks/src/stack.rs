//! A stack of Transformer layers with an optional final norm: the body of every encoder and
//! decoder (Vaswani et al. 2017, §3.1), with T5's relative bias computed once per stack
//! (Raffel et al. 2020, §2.1) and Transformer-XL's segment memory (Dai et al. 2019, §3.2).

use candle_core::{Result, Tensor};
use tcat_attention::{AttentionMask, KvCache};
use tcat_position::{RelativePositionBias, SegmentMemory};

use crate::{Norm, RouterOutput, TransformerLayer};

/// Layers applied in order, then `final_norm` (pre-norm models such as GPT-2 end with one).
#[derive(Debug, Clone)]
pub struct Stack {
    layers: Vec<TransformerLayer>,
    final_norm: Option<Norm>,
    shared_bias: Option<RelativePositionBias>,
}

impl Stack {
    /// A stack from its layers and optional final norm.
    pub fn new(layers: Vec<TransformerLayer>, final_norm: Option<Norm>) -> Self {
        Self { layers, final_norm, shared_bias: None }
    }

    /// Shares one relative position bias between every layer: T5 (Raffel et al. 2020, §2.1)
    /// keeps the bucket table in the first layer only, computes the bias once per forward and
    /// adds it to every layer's scores; LaMDA's decoder does the same, causally. The bias is
    /// computed for the new queries at the end of the attended keys (past + new, from the first
    /// cache when decoding), so cached decoding matches the full pass; it needs full caches
    /// (not sliding ones) in every layer.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_blocks::Stack;
    /// use tcat_position::{BucketDirection, RelativePositionBias};
    /// let table = Tensor::zeros((8, 2), DType::F32, &Device::Cpu).unwrap();
    /// let t5 = RelativePositionBias::new(table, BucketDirection::Causal, 16).unwrap();
    /// let stack = Stack::new(vec![], None).with_relative_bias(t5);
    /// assert!(stack.relative_bias().is_some());
    /// ```
    pub fn with_relative_bias(mut self, bias: RelativePositionBias) -> Self {
        self.shared_bias = Some(bias);
        self
    }

    /// The relative position bias shared by the layers, if any.
    pub fn relative_bias(&self) -> Option<&RelativePositionBias> {
        self.shared_bias.as_ref()
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
        self.run(x, mask, positions, caches, None)
    }

    /// [`forward`](Self::forward), also returning each layer's router statistics (`None` for a
    /// dense layer): what a mixture-of-experts model reports as its per-layer expert load and
    /// feeds to [`load_balancing_loss`](crate::load_balancing_loss).
    pub fn forward_with_router(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        caches: Option<&mut [KvCache]>,
    ) -> Result<(Tensor, Vec<Option<RouterOutput>>)> {
        let mut routers = Vec::with_capacity(self.layers.len());
        let y = self.run(x, mask, positions, caches, Some(&mut routers))?;
        Ok((y, routers))
    }

    fn run(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        caches: Option<&mut [KvCache]>,
        mut routers: Option<&mut Vec<Option<RouterOutput>>>,
    ) -> Result<Tensor> {
        let past = caches.as_ref().and_then(|c| c.first()).map_or(0, KvCache::len);
        let shared;
        let mask = match &self.shared_bias {
            None => mask,
            Some(bias) => {
                let q_len = x.dim(1)?;
                shared = mask.clone().with_bias(bias.bias(q_len, past + q_len)?);
                &shared
            }
        };
        if let Some(caches) = &caches
            && caches.len() != self.layers.len()
        {
            candle_core::bail!("stack has {} layers but {} caches were given", self.layers.len(), caches.len());
        }
        let mut caches = caches.map(|c| c.iter_mut());
        let mut x = x.clone();
        for layer in &self.layers {
            let cache = caches.as_mut().and_then(|c| c.next());
            let (y, router) = layer.forward_with_router(&x, mask, positions, cache)?;
            if let Some(routers) = routers.as_mut() {
                routers.push(router);
            }
            x = y;
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }

    /// Runs every layer with Transformer-XL's segment-level recurrence (Dai et al. 2019, §3.2):
    /// layer `i` attends over `[memory_i; h_i]`, where `memory_i` holds the last `mem_len`
    /// inputs of layer `i` from the previous segments, and `memory` is then updated with this
    /// segment's inputs. The mask covers `mem_len + seq` keys (causal: every remembered
    /// position and the current ones up to the query). With a shared relative bias, it is
    /// computed once for those lengths.
    pub fn forward_with_memory(&self, x: &Tensor, mask: &AttentionMask, memory: &mut SegmentMemory) -> Result<Tensor> {
        if memory.num_layers() != self.layers.len() {
            candle_core::bail!(
                "segment memory serves {} layers, expected one per layer of the stack ({})",
                memory.num_layers(),
                self.layers.len()
            );
        }
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let mem = memory.memory(i)?.cloned();
            let shared;
            let mask = match &self.shared_bias {
                None => mask,
                Some(bias) => {
                    let q_len = x.dim(1)?;
                    shared = mask.clone().with_bias(bias.bias(q_len, memory.len(i) + q_len)?);
                    &shared
                }
            };
            let out = layer.forward_with_memory(&x, mem.as_ref(), mask)?;
            memory.update(i, &x)?;
            x = out;
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}

/// Every layer over `x` `[batch, seq, hidden]`, each with its attention's own mask (see
/// [`TransformerLayer`]'s `Module`), then the final norm: a candle
/// [`Module`](candle_core::Module). The shared relative bias, if any, is added as in
/// [`Stack::forward`].
impl candle_core::Module for Stack {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        let q_len = x.dim(1)?;
        let bias = self.shared_bias.as_ref().map(|b| b.bias(q_len, q_len)).transpose()?;
        for layer in &self.layers {
            let mut mask = AttentionMask::from(layer.attention().causality());
            if let Some(bias) = &bias {
                mask = mask.with_bias(bias.clone());
            }
            x = layer.forward(&x, &mask, None, None)?;
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}
