//! The encoder shared by the BERT family: embeddings, a stack of bidirectional layers, and the
//! optional pooler and masked-LM head.

use candle_core::Tensor;
use tcat_attention::AttentionMask;
use tcat_attention::MultiHeadAttention;
use tcat_blocks::{Embeddings, EntityFusion, LmHead, MlmHead, Pooler, ReplacedTokenHead, Stack, TextConditioning};
use tcat_core::{Error, Linear, Result};
use tcat_position::{SegmentMemory, padding_aware_position_ids, sequential_position_ids};
use tcat_spec::SegmentEncoding;

use crate::Batch;

/// How a family numbers positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionRule {
    /// `0, 1, 2, …` in every row (BERT, DistilBERT).
    Sequential,
    /// RoBERTa: real tokens count from `padding_idx + 1`, padding sits at `padding_idx`.
    PaddingAware {
        /// The padding token id, which is also the padding position.
        padding_idx: u32,
    },
}

/// One layer of ERNIE-THU's knowledgeable encoder (Zhang et al. 2019, §3.3, eq. 4–5): the
/// tokens and the entities attend among themselves, then [`EntityFusion`] mixes the streams.
#[derive(Debug, Clone)]
pub struct KnowledgeLayer {
    /// Multi-head attention over the token stream.
    pub token_attention: MultiHeadAttention,
    /// Multi-head attention over the entity stream.
    pub entity_attention: MultiHeadAttention,
    /// The information fusion.
    pub fusion: EntityFusion,
}

/// ERNIE-THU's knowledgeable encoder: an entity table and the fusion layers that follow the
/// text layers.
#[derive(Debug, Clone)]
pub struct KnowledgeEncoder {
    /// `[entities, entity_dim]`; id 0 means "no entity".
    pub entity_table: Tensor,
    /// The fusion layers.
    pub layers: Vec<KnowledgeLayer>,
}

/// A bidirectional Transformer encoder with its heads (BERT, RoBERTa, DistilBERT, MiniLM).
#[derive(Debug, Clone)]
pub struct EncoderModel {
    embeddings: Embeddings,
    stack: Stack,
    pooler: Option<Pooler>,
    mlm: Option<MlmHead>,
    positions: PositionRule,
    type_vocab_size: usize,
    pad_token_id: u32,
    knowledge: Option<KnowledgeEncoder>,
    lm: Option<LmHead>,
    sentence_order: Option<Linear>,
    replaced_token: Option<ReplacedTokenHead>,
    segments: SegmentEncoding,
    conditioning: Option<Box<TextConditioning>>,
}

impl EncoderModel {
    /// Assembles an encoder from its blocks.
    pub fn new(
        embeddings: Embeddings,
        stack: Stack,
        pooler: Option<Pooler>,
        mlm: Option<MlmHead>,
        positions: PositionRule,
        type_vocab_size: usize,
        pad_token_id: u32,
    ) -> Self {
        Self {
            embeddings,
            stack,
            pooler,
            mlm,
            positions,
            type_vocab_size,
            pad_token_id,
            knowledge: None,
            lm: None,
            sentence_order: None,
            replaced_token: None,
            segments: SegmentEncoding::Absolute,
            conditioning: None,
        }
    }

    /// Adds a diffusion U-Net's text-conditioning layer reading the final states (GLIDE, Latent
    /// Diffusion, Imagen presets; see [`conditioned_latents`](Self::conditioned_latents)).
    pub fn with_text_conditioning(mut self, block: TextConditioning) -> Self {
        self.conditioning = Some(Box::new(block));
        self
    }

    /// The text-conditioning layer, if the model has one.
    pub fn text_conditioning(&self) -> Option<&TextConditioning> {
        self.conditioning.as_deref()
    }

    /// Image tokens `latents` (`[batch, tokens, image_width]`) conditioned on the final states
    /// `hidden` of `batch` by the model's text-conditioning layer, as one attention layer of the
    /// diffusion U-Net reads its text encoder.
    pub fn conditioned_latents(&self, hidden: &Tensor, batch: &Batch, latents: &Tensor) -> Result<Tensor> {
        let block = self.conditioning.as_ref().ok_or_else(|| {
            Error::InvalidInput(
                "this model has no text-conditioning layer (GLIDE, Latent Diffusion, Imagen presets)".into(),
            )
        })?;
        let rows = batch.input_ids().dim(0)?;
        let width = block.image_width();
        match latents.dims() {
            &[b, t, w] if b == rows && w == width && t > 0 => {}
            dims => {
                return Err(Error::InvalidInput(format!(
                    "latents have shape {dims:?}, expected [{rows} (rows of text), tokens > 0, {width} (the conditioning \
                     layer's image width)]"
                )));
            }
        }
        if !latents.dtype().is_float() {
            return Err(Error::InvalidInput(format!("latents are {:?}, expected floating point", latents.dtype())));
        }
        let latents = latents.to_dtype(hidden.dtype())?.to_device(hidden.device())?;
        let keep = batch.is_padded().then(|| batch.attention_mask().clone());
        Ok(block.forward(&latents, hidden, keep.as_ref())?)
    }

    /// Token types reach the attention layers instead of a table: XLNet's relative segment
    /// encodings (Yang et al. 2019, §2.5), whose layers compare the types of query and key.
    /// Any type ids are allowed then (XLNet's tokenizer gives `[CLS]` type 2).
    pub fn with_relative_segments(mut self) -> Self {
        self.segments = SegmentEncoding::Relative;
        self
    }

    /// Adds a plain vocabulary projection as the masked-LM head (XLM's `pred_layer`), used by
    /// [`mlm_logits`](Self::mlm_logits) when there is no BERT-style head.
    pub fn with_lm_head(mut self, head: LmHead) -> Self {
        self.lm = Some(head);
        self
    }

    /// Adds ALBERT's sentence-order head: a `[2, hidden]` classifier on the pooled state.
    pub fn with_sentence_order_head(mut self, classifier: Linear) -> Self {
        self.sentence_order = Some(classifier);
        self
    }

    /// Adds ELECTRA's discriminator (replaced-token detection).
    pub fn with_replaced_token_head(mut self, head: ReplacedTokenHead) -> Self {
        self.replaced_token = Some(head);
        self
    }

    /// Rows of the language table (0 when the family has none; XLM).
    pub fn languages(&self) -> usize {
        self.embeddings.languages()
    }

    /// Adds ERNIE-THU's knowledgeable encoder after the text layers.
    pub fn with_knowledge(mut self, knowledge: KnowledgeEncoder) -> Self {
        self.knowledge = Some(knowledge);
        self
    }

    /// The last hidden states with entities: `entity_ids` `[batch, seq]` names the entity
    /// aligned to each token (on the first token of its mention; 0 for none). Models without a
    /// knowledgeable encoder ignore nothing: they refuse entities.
    pub fn hidden_states_with_entities(&self, batch: &Batch, entity_ids: &Tensor) -> Result<Tensor> {
        let knowledge = self.knowledge.as_ref().ok_or_else(|| {
            Error::InvalidInput("this model has no knowledgeable encoder: entities cannot be used".into())
        })?;
        let text = self.text_states(batch)?;
        if entity_ids.dims() != batch.input_ids().dims() {
            return Err(Error::InvalidInput(format!(
                "entity ids have shape {:?}, expected the tokens' {:?}",
                entity_ids.dims(),
                batch.input_ids().dims()
            )));
        }
        let entities = knowledge.entity_table.dim(0)?;
        let max = entity_ids.to_dtype(candle_core::DType::U32)?.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max as usize >= entities {
            return Err(Error::InvalidInput(format!("entity id {max} is outside the entity table ({entities} rows)")));
        }
        self.fuse(knowledge, &text, batch, entity_ids)
    }

    fn fuse(&self, knowledge: &KnowledgeEncoder, text: &Tensor, batch: &Batch, entity_ids: &Tensor) -> Result<Tensor> {
        let (b, s) = entity_ids.dims2()?;
        let ids = entity_ids.to_dtype(candle_core::DType::U32)?;
        let present = ids.ne(0u32)?;
        let dim = knowledge.entity_table.dim(1)?;
        let mut entities = knowledge.entity_table.index_select(&ids.flatten_all()?, 0)?.reshape((b, s, dim))?;
        entities = entities.broadcast_mul(&present.to_dtype(entities.dtype())?.unsqueeze(2)?)?;
        let token_mask = if batch.is_padded() {
            AttentionMask::none().with_key_padding(batch.attention_mask().clone())
        } else {
            AttentionMask::none()
        };
        // Entities attend only to entities; a row without any sees its own (zero) slots.
        let any = present.to_dtype(candle_core::DType::U32)?.sum_keepdim(1)?.ne(0u32)?;
        let keep = any
            .broadcast_as(present.shape())?
            .where_cond(&present.to_dtype(candle_core::DType::U32)?, &ids.ones_like()?)?;
        let entity_mask = AttentionMask::none().with_key_padding(keep);
        let mut w = text.clone();
        for layer in &knowledge.layers {
            let w_tilde = layer.token_attention.forward(&w, &token_mask, None, None)?;
            let e_tilde = layer.entity_attention.forward(&entities, &entity_mask, None, None)?;
            let (w_next, e_next) = layer.fusion.forward(&w_tilde, &e_tilde, &present)?;
            w = w_next;
            entities = e_next;
        }
        Ok(w)
    }

    /// The padding token id.
    pub fn pad_token_id(&self) -> u32 {
        self.pad_token_id
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.vocab_size()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &candle_core::Device {
        self.embeddings.device()
    }

    /// Longest sequence the position table covers.
    pub fn max_sequence_len(&self) -> usize {
        let table = self.embeddings.max_positions().unwrap_or(usize::MAX);
        match self.positions {
            PositionRule::Sequential => table,
            PositionRule::PaddingAware { padding_idx } => table.saturating_sub(padding_idx as usize + 1),
        }
    }

    /// Whether token type ids change the output: a segment table, or XLNet's relative
    /// segments.
    pub fn takes_token_types(&self) -> bool {
        self.type_vocab_size > 0 || self.segments == SegmentEncoding::Relative
    }

    /// Rows of the segment table (0 when the family has none).
    pub fn type_vocab_size(&self) -> usize {
        self.type_vocab_size
    }

    /// Whether the checkpoint has a masked-LM head.
    pub fn has_mlm_head(&self) -> bool {
        self.mlm.is_some() || self.lm.is_some()
    }

    /// The last hidden states `[batch, seq, hidden]`, as `AutoModel` returns them (no pooler).
    /// A model with a knowledgeable encoder (ERNIE-THU) runs it with no entities.
    pub fn hidden_states(&self, batch: &Batch) -> Result<Tensor> {
        let text = self.text_states(batch)?;
        match &self.knowledge {
            None => Ok(text),
            Some(knowledge) => {
                let none = batch.input_ids().zeros_like()?.to_dtype(candle_core::DType::U32)?;
                self.fuse(knowledge, &text, batch, &none)
            }
        }
    }

    /// The text layers' output.
    fn text_states(&self, batch: &Batch) -> Result<Tensor> {
        let (x, position_ids) = self.text_inputs(batch)?;
        let mask = self.text_mask(batch, 0)?;
        Ok(self.stack.forward(&x, &mask, Some(&position_ids), None)?)
    }

    /// An empty segment memory for [`hidden_states_with_memory`](Self::hidden_states_with_memory)
    /// keeping the last `mem_len` states per layer (`None`: every state, XLNet's default
    /// `mem_len`).
    pub fn new_memory(&self, mem_len: Option<usize>) -> SegmentMemory {
        SegmentMemory::new(self.stack.len(), mem_len.unwrap_or(usize::MAX))
    }

    /// The last hidden states of one segment with Transformer-XL's segment-level recurrence
    /// (Dai et al. 2019, §3.2; XLNet's `mems`, Yang et al. 2019, §2.5): every layer's keys and
    /// values also cover the states `memory` holds from the previous segments (all attended,
    /// as segment 0 for XLNet's relative segment encodings), and `memory` then keeps this
    /// segment's layer inputs. The rows must be those the memory was filled with. Only models
    /// with relative positions (XLNet) can continue a memory: an absolute position table would
    /// restart at 0.
    pub fn hidden_states_with_memory(&self, batch: &Batch, memory: &mut SegmentMemory) -> Result<Tensor> {
        if self.embeddings.max_positions().is_some() {
            return Err(Error::InvalidInput(
                "segment memory needs relative positions (XLNet); this model has an absolute position table".into(),
            ));
        }
        if self.knowledge.is_some() {
            return Err(Error::InvalidInput("segment memory with entity fusion (ERNIE) is not supported".into()));
        }
        if memory.num_layers() != self.stack.len() {
            return Err(Error::InvalidInput(format!(
                "the segment memory serves {} layers, this model has {}",
                memory.num_layers(),
                self.stack.len()
            )));
        }
        let remembered = memory.len(0);
        if let Some(m) = memory.memory(0)?
            && m.dim(0)? != batch.input_ids().dim(0)?
        {
            return Err(Error::InvalidInput(format!(
                "the segment memory holds {} rows, the batch {}",
                m.dim(0)?,
                batch.input_ids().dim(0)?
            )));
        }
        // Relative positions come from the lengths; the position ids are not used.
        let (x, _) = self.text_inputs(batch)?;
        let mask = self.text_mask(batch, remembered)?;
        Ok(self.stack.forward_with_memory(&x, &mask, memory)?)
    }

    /// The mask of `batch`'s rows behind `remembered` states of a segment memory (all real, of
    /// segment 0): key padding where the rows are padded, token types for relative segments.
    fn text_mask(&self, batch: &Batch, remembered: usize) -> Result<AttentionMask> {
        let (b, device) = (batch.input_ids().dim(0)?, batch.input_ids().device());
        let behind = |t: &Tensor, fill: f64| -> Result<Tensor> {
            match remembered {
                0 => Ok(t.clone()),
                n => Ok(Tensor::cat(&[&(Tensor::ones((b, n), t.dtype(), device)? * fill)?, t], 1)?),
            }
        };
        let mut mask = match batch.is_padded() {
            true => AttentionMask::none().with_key_padding(behind(batch.attention_mask(), 1.0)?),
            false => AttentionMask::none(),
        };
        if let (SegmentEncoding::Relative, Some(types)) = (self.segments, batch.token_type_ids()) {
            mask = mask.with_token_types(behind(types, 0.0)?);
        }
        Ok(mask)
    }

    /// The embedded tokens of `batch` and their position ids.
    fn text_inputs(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        batch.check_vocab(self.vocab_size())?;
        let relative = self.segments == SegmentEncoding::Relative;
        if !relative {
            batch.check_token_types(self.type_vocab_size.max(1))?;
        }
        let (b, s) = batch.input_ids().dims2()?;
        if s > self.max_sequence_len() {
            return Err(Error::SequenceTooLong {
                len: s,
                max: self.max_sequence_len(),
                limit: "the position table (max_position_embeddings)".into(),
            });
        }
        let position_ids = match self.positions {
            PositionRule::Sequential => sequential_position_ids(b, s, 0, batch.input_ids().device())?,
            // As the reference does: any pad id (masked or not) sits at the padding position.
            PositionRule::PaddingAware { padding_idx } => padding_aware_position_ids(batch.input_ids(), padding_idx)?,
        };
        let types = if self.type_vocab_size > 0 && !relative { batch.token_type_ids() } else { None };
        let languages = batch.language_ids();
        if let Some(ids) = languages {
            let n = self.languages();
            if n == 0 {
                return Err(Error::InvalidInput(
                    "this model has no language embeddings (XLM's `n_langs` > 1 with `use_lang_emb`): language ids \
                     cannot be used"
                        .into(),
                ));
            }
            let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
            if max as usize >= n {
                return Err(Error::InvalidInput(format!(
                    "language id {max} is outside the language table (n_langs {n}: ids 0..{n})"
                )));
            }
        }
        let x = self.embeddings.forward_with_languages(batch.input_ids(), Some(&position_ids), types, languages)?;
        Ok((x, position_ids))
    }

    /// Masked-LM logits `[batch, seq, vocab]` from hidden states.
    pub fn mlm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        if let (None, Some(lm)) = (&self.mlm, &self.lm) {
            return Ok(lm.forward(hidden)?);
        }
        let head = self.mlm.as_ref().ok_or_else(|| {
            Error::InvalidInput("this checkpoint has no masked-LM head (it was saved without one)".into())
        })?;
        Ok(head.forward(hidden)?)
    }

    /// Whether the checkpoint has ALBERT's sentence-order head.
    pub fn has_sentence_order_head(&self) -> bool {
        self.sentence_order.is_some()
    }

    /// ALBERT's sentence-order logits `[batch, 2]` from the pooler output (Lan et al. 2019,
    /// §3.1: are the two segments in their original order?).
    pub fn sentence_order_logits(&self, pooled: &Tensor) -> Result<Tensor> {
        let head = self.sentence_order.as_ref().ok_or_else(|| {
            Error::InvalidInput("this checkpoint has no sentence-order head (`sop_classifier`)".into())
        })?;
        Ok(candle_core::Module::forward(head, pooled)?)
    }

    /// Whether the checkpoint has ELECTRA's discriminator head.
    pub fn has_replaced_token_head(&self) -> bool {
        self.replaced_token.is_some()
    }

    /// ELECTRA's replaced-token logits `[batch, seq]` from hidden states (Clark et al. 2020, §2).
    pub fn replaced_token_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = self.replaced_token.as_ref().ok_or_else(|| {
            Error::InvalidInput("this checkpoint has no discriminator head (`discriminator_predictions`)".into())
        })?;
        Ok(head.forward(hidden)?)
    }

    /// The pooler output `[batch, hidden]` from hidden states.
    pub fn pooled(&self, hidden: &Tensor) -> Result<Tensor> {
        let pooler = self.pooler.as_ref().ok_or_else(|| Error::InvalidInput("this checkpoint has no pooler".into()))?;
        Ok(pooler.forward(hidden)?)
    }
}
