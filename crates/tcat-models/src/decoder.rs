//! The causal language model shared by decoder-only families: embeddings, a stack of causal
//! layers, and an LM head.

use candle_core::{Module, Tensor};
use tcat_attention::{AttentionMask, KvCache};
use tcat_blocks::{Embeddings, EncoderMemory, LmHead, RouterOutput, Stack, masked_load_balancing_loss};
use tcat_core::Linear;
use tcat_core::{Error, Result};
use tcat_position::{AbsolutePositions, SegmentMemory, sequential_position_ids};

use crate::Batch;

/// What [`DecoderModel::logits_with_router`] returns.
#[derive(Debug, Clone)]
pub struct RouterReport {
    /// Logits `[batch, seq, vocab]`.
    pub logits: Tensor,
    /// `[sparse layers, experts]`: the fraction of tokens each expert processed.
    pub router_load: Tensor,
    /// The load-balancing loss over the real tokens (not multiplied by a coefficient).
    pub aux_loss: Option<Tensor>,
    /// Each sparse layer's router output (logits `[batch, seq, experts]`, choices, gates).
    pub routers: Vec<RouterOutput>,
}

/// A decoder-only language model (GPT-2 and its descendants).
#[derive(Debug, Clone)]
pub struct DecoderModel {
    embeddings: Embeddings,
    stack: Stack,
    head: LmHead,
    max_positions: usize,
    eos_token_ids: Vec<u32>,
    pad_token_id: u32,
    projection: Option<WidthProjection>,
    reward: Option<Linear>,
    /// What sets `max_positions`, for messages (the config field or GGUF key).
    position_limit: Option<String>,
}

/// Token vectors narrower than the hidden states (OPT-350m's `word_embed_proj_dim`): the word
/// vectors go through `project_in` before the positions (which are hidden-wide) are added, and
/// the final hidden states through `project_out` before the LM head (tied to the narrow
/// word table). Both are plain [`Linear`] projections; this is wiring only.
#[derive(Debug, Clone)]
struct WidthProjection {
    project_in: Linear,
    positions: Option<AbsolutePositions>,
    project_out: Linear,
}

impl DecoderModel {
    /// Assembles a decoder from its blocks.
    pub fn new(
        embeddings: Embeddings,
        stack: Stack,
        head: LmHead,
        max_positions: usize,
        eos_token_ids: Vec<u32>,
        pad_token_id: u32,
    ) -> Self {
        Self {
            embeddings,
            stack,
            head,
            max_positions,
            eos_token_ids,
            pad_token_id,
            projection: None,
            reward: None,
            position_limit: None,
        }
    }

    /// Names the position limit unless the builder already did (a capped rotary table).
    pub(crate) fn with_default_position_limit(self, field: &str) -> Self {
        if self.position_limit.is_some() { self } else { self.with_position_limit(field) }
    }

    /// Replaces the ids that end generation (transformers reads them from
    /// `generation_config.json` when a checkpoint has one: Llama 3 Instruct ends its turns with
    /// a second EOS).
    pub fn with_eos_token_ids(mut self, eos: Vec<u32>) -> Self {
        self.eos_token_ids = eos;
        self
    }

    /// Names what sets the position limit in [`Error::SequenceTooLong`] messages: the family's
    /// config field (`max_position_embeddings`, `n_positions`) or GGUF key.
    pub fn with_position_limit(mut self, field: impl Into<String>) -> Self {
        self.position_limit = Some(field.into());
        self
    }

    /// Projects the word vectors by `project_in` before `positions` are added and the final
    /// hidden states by `project_out` before the head (OPT-350m). `embeddings` must then hold
    /// the word table only: the hidden-wide positions are added after `project_in`.
    pub fn with_width_projection(
        mut self,
        project_in: Linear,
        positions: Option<AbsolutePositions>,
        project_out: Linear,
    ) -> Self {
        self.projection = Some(WidthProjection { project_in, positions, project_out });
        self
    }

    /// Adds a scalar reward (or value) head, `[1, hidden]`: the reward model of RLHF (Ouyang et
    /// al. 2022, InstructGPT, §3.5), read from the last real token's final state.
    pub fn with_reward_head(mut self, head: Linear) -> Self {
        self.reward = Some(head);
        self
    }

    /// Whether the model has a reward head.
    pub fn has_reward_head(&self) -> bool {
        self.reward.is_some()
    }

    /// One reward per row `[batch]` of a right-padded batch: the reward head on the final
    /// state of each row's last real token (as transformers' sequence-classification heads
    /// pick it).
    pub fn rewards(&self, batch: &Batch) -> Result<Tensor> {
        let head = self.reward.as_ref().ok_or_else(|| {
            Error::InvalidInput("this model has no reward head (a checkpoint stores it as `score.weight`)".into())
        })?;
        let h = self.batch_hidden_states(batch)?;
        let b = h.dim(0)?;
        // Index of each row's last real token (right padding): its count of real tokens − 1.
        let real = batch.attention_mask().to_dtype(candle_core::DType::F32)?.sum(1)?;
        let last = (real - 1.0)?.to_dtype(candle_core::DType::U32)?;
        let hidden = h.dim(2)?;
        let index = last.reshape((b, 1, 1))?.broadcast_as((b, 1, hidden))?.contiguous()?;
        let states = h.gather(&index, 1)?.squeeze(1)?;
        Ok(head.forward(&states)?.squeeze(1)?)
    }

    /// Logits of a right-padded batch with the routers' statistics: `router_load`
    /// `[layers, experts]` (the fraction of tokens each expert processed, padded tokens
    /// included, `[0, 0]` for a dense model) and the load-balancing `aux_loss` over the real
    /// tokens, as transformers' `output_router_logits=True` reports it (`None` for a dense
    /// model), plus each sparse layer's [`RouterOutput`].
    pub fn logits_with_router(&self, batch: &Batch) -> Result<RouterReport> {
        batch.check_vocab(self.vocab_size())?;
        let (b, s) = batch.input_ids().dims2()?;
        self.check_length(s)?;
        if self.projection.is_some() {
            return Err(Error::InvalidInput("router statistics of width-projected models are not supported".into()));
        }
        let positions = sequential_position_ids(b, s, 0, batch.input_ids().device())?;
        let mut mask = AttentionMask::causal();
        if batch.is_padded() {
            mask = mask.with_key_padding(batch.attention_mask().clone());
        }
        let x = self.embeddings.forward(batch.input_ids(), Some(&positions), None)?;
        let (h, routers) = self.stack.forward_with_router(&x, &mask, Some(&positions), None)?;
        let routers: Vec<RouterOutput> = routers.into_iter().flatten().collect();
        let loads = routers.iter().map(|r| r.load.unsqueeze(0)).collect::<candle_core::Result<Vec<_>>>()?;
        let router_load = if loads.is_empty() {
            Tensor::zeros((0, 0), candle_core::DType::F32, batch.input_ids().device())?
        } else {
            Tensor::cat(&loads, 0)?
        };
        let aux_loss =
            if routers.is_empty() { None } else { Some(masked_load_balancing_loss(&routers, batch.attention_mask())?) };
        Ok(RouterReport { logits: self.head.forward(&h)?, router_load, aux_loss, routers })
    }

    /// An empty segment memory keeping `mem_len` states per layer, for
    /// [`logits_with_memory`](Self::logits_with_memory).
    pub fn new_memory(&self, mem_len: usize) -> SegmentMemory {
        SegmentMemory::new(self.stack.len(), mem_len)
    }

    /// Logits `[batch, seq, vocab]` of one segment with Transformer-XL's segment-level
    /// recurrence (Dai et al. 2019, §3.2): every layer also attends to the states `memory`
    /// kept from the previous segments, and `memory` is then updated with this segment's.
    /// Positions continue from the memory (for models with absolute positions).
    pub fn logits_with_memory(&self, input_ids: &Tensor, memory: &mut SegmentMemory) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let past = memory.len(0);
        self.check_length(past + s)?;
        let positions = sequential_position_ids(b, s, past, input_ids.device())?;
        let x = self.embeddings.forward(input_ids, Some(&positions), None)?;
        let h = self.stack.forward_with_memory(&x, &AttentionMask::causal(), memory)?;
        Ok(self.head.forward(&h)?)
    }

    /// The layer stack (for inspecting the blocks a checkpoint was built into).
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.vocab_size()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &candle_core::Device {
        self.embeddings.device()
    }

    /// Longest sequence (prompt plus generated tokens) the model can position.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Token ids that end generation.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// The id used to pad batches.
    pub fn pad_token_id(&self) -> u32 {
        self.pad_token_id
    }

    /// The sequence length past which the rotary tables switch (LongRoPE, see
    /// [`tcat_position::RotaryEmbedding::with_long_context`]): keys cached before a sequence
    /// crosses it were rotated with the other tables, so decoding re-runs the whole sequence
    /// at the crossing, as transformers' Phi-3 does.
    pub fn rotary_switch(&self) -> Option<usize> {
        self.stack.layers().iter().find_map(|layer| {
            let rotary = match layer.attention() {
                tcat_blocks::SelfAttention::MultiHead(a) => a.position_terms().iter().find_map(|t| match t {
                    tcat_attention::PositionTerm::Rotary(r) => Some(r),
                    _ => None,
                }),
                tcat_blocks::SelfAttention::Latent(a) => a.rotary(),
            };
            rotary.and_then(tcat_position::RotaryEmbedding::switches_at)
        })
    }

    /// One KV cache per layer, each holding `capacity` positions.
    pub fn new_caches(&self, capacity: usize) -> Vec<KvCache> {
        self.stack.new_caches(capacity)
    }

    /// Checks that decoding `rows` rows of up to `capacity` positions fits in memory (KV caches
    /// and per-step scores) before generation allocates; `what` names the settings to lower.
    pub(crate) fn check_decoding_memory(&self, rows: usize, capacity: usize, what: &str) -> Result<()> {
        let bytes = self.embeddings.dtype().size_in_bytes();
        let elements = self.stack.cache_elements(rows, capacity);
        crate::generation::check_decoding_memory(elements, bytes, rows, self.vocab_size(), what)
    }

    /// Logits `[batch, seq, vocab]` of `input_ids` at `position_ids` (both `[batch, seq]`).
    /// With caches, `input_ids` are the new tokens and `mask`'s key padding covers every
    /// cached token plus the new ones.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        mask: &AttentionMask,
        caches: Option<&mut [KvCache]>,
    ) -> Result<Tensor> {
        let h = self.hidden_states(input_ids, position_ids, mask, caches)?;
        Ok(self.head.forward(&h)?)
    }

    /// Logits `[batch, vocab]` of the last position only, as decoding needs them: the
    /// vocabulary projection of the other prompt positions is skipped.
    pub fn forward_last(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        mask: &AttentionMask,
        caches: Option<&mut [KvCache]>,
    ) -> Result<Tensor> {
        let h = self.hidden_states(input_ids, position_ids, mask, caches)?;
        let last = h.narrow(1, h.dim(1)? - 1, 1)?.squeeze(1)?;
        Ok(self.head.forward(&last)?)
    }

    /// The final hidden states `[batch, seq, hidden]` (after the final norm, and after
    /// `project_out` when the model has a width projection).
    pub fn hidden_states(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        mask: &AttentionMask,
        caches: Option<&mut [KvCache]>,
    ) -> Result<Tensor> {
        self.hidden_states_from_vectors(&self.word_vectors(input_ids)?, position_ids, mask, caches, None)
    }

    /// The (scaled) token vectors `[batch, seq, embedding width]` of `input_ids`: what
    /// [`hidden_states_from_vectors`](Self::hidden_states_from_vectors) reads.
    pub fn word_vectors(&self, input_ids: &Tensor) -> Result<Tensor> {
        Ok(self.embeddings.words(input_ids)?)
    }

    /// Width of the vectors [`hidden_states_from_vectors`](Self::hidden_states_from_vectors)
    /// reads (the token table's width).
    pub fn embedding_width(&self) -> usize {
        self.embeddings.word_projection().in_features()
    }

    /// [`hidden_states`](Self::hidden_states) from input vectors `[batch, seq, embedding
    /// width]` in place of looked-up tokens: positions, the embedding norm and every layer apply
    /// to them as to token vectors. This is the prefix-embedding input path of a multimodal
    /// decoder (PaLM-E, Driess et al. 2023, §3: encoder outputs projected to the token width and
    /// placed among the word vectors). With `memory` the layers that cross-attend read it (the
    /// multimodal half of CoCa's decoder, Yu et al. 2022, §3.2); without it, no layer may
    /// cross-attend.
    pub fn hidden_states_from_vectors(
        &self,
        vectors: &Tensor,
        position_ids: &Tensor,
        mask: &AttentionMask,
        caches: Option<&mut [KvCache]>,
        memory: Option<&EncoderMemory>,
    ) -> Result<Tensor> {
        let run = |x: &Tensor, caches: Option<&mut [KvCache]>| -> Result<Tensor> {
            Ok(match memory {
                Some(memory) => self.stack.forward_decoder(x, mask, Some(position_ids), caches, memory)?.0,
                None => self.stack.forward(x, mask, Some(position_ids), caches)?,
            })
        };
        let Some(projection) = &self.projection else {
            let x = self.embeddings.forward_vectors(vectors, Some(position_ids), None, None)?;
            return run(&x, caches);
        };
        let mut x = projection.project_in.forward(&self.embeddings.forward_vectors(vectors, None, None, None)?)?;
        if let Some(positions) = &projection.positions {
            x = (x + positions.forward(position_ids)?)?;
        }
        let h = run(&x, caches)?;
        Ok(projection.project_out.forward(&h)?)
    }

    /// The LM head on final hidden states: logits `[..., vocab]`.
    pub fn head_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(hidden)?)
    }

    /// Logits of a right-padded batch in one pass (no cache), as `tcat forward` writes them.
    pub fn logits(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.head.forward(&self.batch_hidden_states(batch)?)?)
    }

    /// The final hidden states of a right-padded batch in one pass (no cache).
    fn batch_hidden_states(&self, batch: &Batch) -> Result<Tensor> {
        batch.check_vocab(self.vocab_size())?;
        let (b, s) = batch.input_ids().dims2()?;
        self.check_length(s)?;
        let positions = sequential_position_ids(b, s, 0, batch.input_ids().device())?;
        let mut mask = AttentionMask::causal();
        if batch.is_padded() {
            mask = mask.with_key_padding(batch.attention_mask().clone());
        }
        self.hidden_states(batch.input_ids(), &positions, &mask, None)
    }

    /// Fails with [`Error::SequenceTooLong`] past the position table.
    pub fn check_length(&self, len: usize) -> Result<()> {
        if len > self.max_positions {
            return Err(Error::SequenceTooLong {
                len,
                max: self.max_positions,
                limit: format!(
                    "the position table ({})",
                    self.position_limit.as_deref().unwrap_or("the model's maximum positions")
                ),
            });
        }
        Ok(())
    }
}

/// End-of-sequence ids and the padding id: the config's pad token, else the first EOS, else
/// `fallback`.
pub(crate) fn special_ids(eos: &crate::config::TokenIds, pad: Option<u32>, fallback: u32) -> (Vec<u32>, u32) {
    let eos = eos.to_vec();
    let pad = pad.or(eos.first().copied()).unwrap_or(fallback);
    (eos, pad)
}
