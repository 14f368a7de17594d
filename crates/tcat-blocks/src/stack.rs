//! A stack of Transformer layers with an optional final norm: the body of every encoder and
//! decoder (Vaswani et al. 2017, §3.1), with T5's relative bias computed once per stack
//! (Raffel et al. 2020, §2.1), Transformer-XL's segment memory (Dai et al. 2019, §3.2), and
//! an encoder-decoder's cross-attention memory ([`EncoderMemory`]: the encoder output's keys
//! and values, projected once per layer and reused at every decoding step).

use candle_core::{Result, Tensor};
use tcat_attention::{AttentionMask, KvCache};
use tcat_position::{RelativePositionBias, SegmentMemory};

use crate::{CrossMemory, Norm, RouterOutput, TokenConvolution, TransformerLayer};

/// The encoder output as a decoder stack's cross-attention reads it: every cross-attending
/// layer's keys and values, projected once ([`Stack::encoder_memory`]), and the mask over them.
#[derive(Debug, Clone)]
pub struct EncoderMemory {
    layers: Vec<Option<(Tensor, Tensor)>>,
    mask: AttentionMask,
    rows: usize,
    len: usize,
}

impl EncoderMemory {
    /// Encoder positions each row attends to.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory has no positions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows (the batch the encoder ran on).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The mask over the memory.
    pub fn mask(&self) -> &AttentionMask {
        &self.mask
    }

    /// The memory of rows `rows` (`[n]` u32 indices, repeats allowed), in that order: beam
    /// search repeats each encoded row once per beam.
    pub fn select_rows(&self, rows: &Tensor) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|kv| kv.as_ref().map(|(k, v)| Ok((k.index_select(rows, 0)?, v.index_select(rows, 0)?))).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mask = match self.mask.key_padding() {
            Some(keep) => AttentionMask::none().with_key_padding(keep.index_select(rows, 0)?),
            None => self.mask.clone(),
        };
        Ok(Self { layers, mask, rows: rows.dim(0)?, len: self.len })
    }
}

/// Layers applied in order, then `final_norm` (pre-norm models such as GPT-2 end with one).
#[derive(Debug, Clone)]
pub struct Stack {
    layers: Vec<TransformerLayer>,
    final_norm: Option<Norm>,
    shared_bias: Option<RelativePositionBias>,
    convolution: Option<TokenConvolution>,
}

impl Stack {
    /// A stack from its layers and optional final norm.
    pub fn new(layers: Vec<TransformerLayer>, final_norm: Option<Norm>) -> Self {
        Self { layers, final_norm, shared_bias: None, convolution: None }
    }

    /// Adds a convolution beside the first layer (DeBERTa-v2's n-gram input encoding, see
    /// [`TokenConvolution`]): its output becomes `conv(first input, first output)`. The
    /// convolution reads whole sequences, so a stack with one runs without KV caches.
    pub fn with_first_layer_convolution(mut self, convolution: TokenConvolution) -> Self {
        self.convolution = Some(convolution);
        self
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

    /// Elements the caches of [`new_caches`](Self::new_caches) hold for `rows` rows decoding up
    /// to `capacity` positions (keys and values; a sliding layer keeps at most its window):
    /// what decoding allocates, to check before it does. `None` on overflow.
    ///
    /// ```
    /// use tcat_blocks::Stack;
    /// assert_eq!(Stack::new(vec![], None).cache_elements(4, 1 << 20), Some(0));
    /// ```
    pub fn cache_elements(&self, rows: usize, capacity: usize) -> Option<u64> {
        self.layers.iter().try_fold(0u64, |total, layer| {
            let a = layer.attention();
            let positions = a.sliding_window().map_or(capacity, |w| w.min(capacity));
            let per_row = (a.cached_per_position() as u64).checked_mul(positions as u64)?;
            total.checked_add(per_row.checked_mul(rows as u64)?)
        })
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
        self.run(x, mask, positions, caches, None, None)
    }

    /// The cross-attention memory of `encoded` `[batch, memory_len, hidden]` (an encoder
    /// stack's output) for this decoder stack: each cross-attending layer's keys and values,
    /// projected once, and a bidirectional mask with `key_padding` (`[batch, memory_len]`,
    /// 1 = real) when the encoder rows were padded.
    pub fn encoder_memory(&self, encoded: &Tensor, key_padding: Option<&Tensor>) -> Result<EncoderMemory> {
        let (rows, len, _) = encoded.dims3()?;
        let layers = self.layers.iter().map(|l| l.project_memory(encoded)).collect::<Result<Vec<_>>>()?;
        let mask = match key_padding {
            Some(keep) => AttentionMask::none().with_key_padding(keep.clone()),
            None => AttentionMask::none(),
        };
        Ok(EncoderMemory { layers, mask, rows, len })
    }

    /// [`forward`](Self::forward) of a decoder stack whose layers also cross-attend to
    /// `memory` (from [`encoder_memory`](Self::encoder_memory)); returns the final states and
    /// each layer's router statistics (`None` for dense layers).
    pub fn forward_decoder(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        caches: Option<&mut [KvCache]>,
        memory: &EncoderMemory,
    ) -> Result<(Tensor, Vec<Option<RouterOutput>>)> {
        if memory.layers.len() != self.layers.len() {
            candle_core::bail!(
                "encoder memory was projected for {} layers, this stack has {}",
                memory.layers.len(),
                self.layers.len()
            );
        }
        let mut routers = Vec::with_capacity(self.layers.len());
        let y = self.run(x, mask, positions, caches, Some(&mut routers), Some(memory))?;
        Ok((y, routers))
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
        let y = self.run(x, mask, positions, caches, Some(&mut routers), None)?;
        Ok((y, routers))
    }

    fn run(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        caches: Option<&mut [KvCache]>,
        mut routers: Option<&mut Vec<Option<RouterOutput>>>,
        memory: Option<&EncoderMemory>,
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
        if self.convolution.is_some() && caches.is_some() {
            candle_core::bail!("a stack with a token convolution reads whole sequences; it runs without KV caches");
        }
        let mut caches = caches.map(|c| c.iter_mut());
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let cache = caches.as_mut().and_then(|c| c.next());
            let cross = memory
                .and_then(|m| m.layers[i].as_ref().map(|(keys, values)| CrossMemory { keys, values, mask: &m.mask }));
            let (mut y, router) = layer.forward_cross(&x, mask, positions, cache, cross)?;
            if let (0, Some(conv)) = (i, &self.convolution) {
                y = conv.forward(&x, &y, mask.key_padding())?;
            }
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
        if self.convolution.is_some() {
            candle_core::bail!("a stack with a token convolution has no segment memory");
        }
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
        for (i, layer) in self.layers.iter().enumerate() {
            let mut mask = AttentionMask::from(layer.attention().causality());
            if let Some(bias) = &bias {
                mask = mask.with_bias(bias.clone());
            }
            let y = layer.forward(&x, &mask, None, None)?;
            x = match (i, &self.convolution) {
                (0, Some(conv)) => conv.forward(&x, &y, None)?,
                _ => y,
            };
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}
