//! The encoder shared by the BERT family: embeddings, a stack of bidirectional layers, and the
//! optional pooler and masked-LM head.

use candle_core::Tensor;
use tcat_attention::AttentionMask;
use tcat_blocks::{Embeddings, MlmHead, Pooler, Stack};
use tcat_core::{Error, Result};
use tcat_position::{padding_aware_position_ids, sequential_position_ids};

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
        Self { embeddings, stack, pooler, mlm, positions, type_vocab_size, pad_token_id }
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
        self.embeddings.word_table().device()
    }

    /// Longest sequence the position table covers.
    pub fn max_sequence_len(&self) -> usize {
        let table = self.embeddings.max_positions().unwrap_or(usize::MAX);
        match self.positions {
            PositionRule::Sequential => table,
            PositionRule::PaddingAware { padding_idx } => table.saturating_sub(padding_idx as usize + 1),
        }
    }

    /// Rows of the segment table (0 when the family has none).
    pub fn type_vocab_size(&self) -> usize {
        self.type_vocab_size
    }

    /// Whether the checkpoint has a masked-LM head.
    pub fn has_mlm_head(&self) -> bool {
        self.mlm.is_some()
    }

    /// The last hidden states `[batch, seq, hidden]`, as `AutoModel` returns them (no pooler).
    pub fn hidden_states(&self, batch: &Batch) -> Result<Tensor> {
        batch.check_vocab(self.vocab_size())?;
        batch.check_token_types(self.type_vocab_size.max(1))?;
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
        let types = if self.type_vocab_size > 0 { batch.token_type_ids() } else { None };
        let x = self.embeddings.forward(batch.input_ids(), Some(&position_ids), types)?;
        let mask = if batch.is_padded() {
            AttentionMask::none().with_key_padding(batch.attention_mask().clone())
        } else {
            AttentionMask::none()
        };
        Ok(self.stack.forward(&x, &mask, Some(&position_ids), None)?)
    }

    /// Masked-LM logits `[batch, seq, vocab]` from hidden states.
    pub fn mlm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = self.mlm.as_ref().ok_or_else(|| {
            Error::InvalidInput("this checkpoint has no masked-LM head (it was saved without one)".into())
        })?;
        Ok(head.forward(hidden)?)
    }

    /// The pooler output `[batch, hidden]` from hidden states.
    pub fn pooled(&self, hidden: &Tensor) -> Result<Tensor> {
        let pooler = self.pooler.as_ref().ok_or_else(|| Error::InvalidInput("this checkpoint has no pooler".into()))?;
        Ok(pooler.forward(hidden)?)
    }
}
