//! The encoder-decoder language model (Vaswani et al. 2017, §3.1): an encoder stack over the
//! source tokens, a decoder stack whose layers also cross-attend to the encoder's output, and an
//! LM head. T5, mT5, BART, mBART and Marian are this model with different specs.

use candle_core::Tensor;
use tcat_attention::{AttentionMask, KvCache};
use tcat_blocks::{EncoderMemory, LmHead, RouterOutput, Stack};
use tcat_core::{Error, Result};
use tcat_position::sequential_position_ids;

use crate::Batch;

/// One stack with its embeddings.
#[derive(Debug, Clone)]
pub struct Seq2seqTower {
    /// Token (and absolute position) embeddings.
    pub embeddings: tcat_blocks::Embeddings,
    /// The layers and final norm.
    pub stack: Stack,
    /// Longest sequence the tower can position (`None`: relative positions, any length).
    pub max_positions: Option<usize>,
}

/// The token ids that drive encoder-decoder generation, as transformers reads them from
/// `config.json` and `generation_config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2seqTokens {
    /// The first decoder token (`decoder_start_token_id`).
    pub decoder_start: u32,
    /// Ids that end generation (`eos_token_id`).
    pub eos: Vec<u32>,
    /// The padding id (`pad_token_id`).
    pub pad: u32,
    /// Forced as the first generated token (`forced_bos_token_id`: mBART's language code).
    pub forced_bos: Option<u32>,
    /// Forced as the last token when generation reaches its length limit
    /// (`forced_eos_token_id`: BART).
    pub forced_eos: Option<u32>,
    /// Token sequences never generated (`bad_words_ids`: Marian bans its pad token).
    pub bad_words: Vec<Vec<u32>>,
}

/// An encoder-decoder language model.
#[derive(Debug, Clone)]
pub struct Seq2seqModel {
    encoder: Seq2seqTower,
    decoder: Seq2seqTower,
    head: LmHead,
    tokens: Seq2seqTokens,
}

impl Seq2seqModel {
    /// Assembles the model; the decoder's layers must cross-attend.
    pub fn new(encoder: Seq2seqTower, decoder: Seq2seqTower, head: LmHead, tokens: Seq2seqTokens) -> Result<Self> {
        if decoder.stack.layers().iter().any(|l| l.cross_attention().is_none()) {
            return Err(Error::InvalidInput("every decoder layer of an encoder-decoder must cross-attend".into()));
        }
        Ok(Self { encoder, decoder, head, tokens })
    }

    /// Replaces the generation token ids (from `generation_config.json`).
    pub fn with_tokens(mut self, tokens: Seq2seqTokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// The generation token ids.
    pub fn tokens(&self) -> &Seq2seqTokens {
        &self.tokens
    }

    /// The encoder's vocabulary size.
    pub fn encoder_vocab_size(&self) -> usize {
        self.encoder.embeddings.vocab_size()
    }

    /// The decoder's input vocabulary size.
    pub fn decoder_vocab_size(&self) -> usize {
        self.decoder.embeddings.vocab_size()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &candle_core::Device {
        self.encoder.embeddings.device()
    }

    /// The id used to pad batches.
    pub fn pad_token_id(&self) -> u32 {
        self.tokens.pad
    }

    /// Longest decoder sequence (start token included) the model can position.
    pub fn max_decoder_positions(&self) -> Option<usize> {
        self.decoder.max_positions
    }

    /// The encoder's final states `[batch, seq, hidden]` of a right-padded batch.
    pub fn encode(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.encode_with_router(batch)?.0)
    }

    /// [`encode`](Self::encode) with each encoder layer's router statistics.
    pub fn encode_with_router(&self, batch: &Batch) -> Result<(Tensor, Vec<Option<RouterOutput>>)> {
        batch.check_vocab(self.encoder_vocab_size())?;
        let (b, s) = batch.input_ids().dims2()?;
        if s == 0 {
            return Err(Error::InvalidInput("the encoder input is empty".into()));
        }
        check_length(&self.encoder, s, "encoder")?;
        let positions = sequential_position_ids(b, s, 0, batch.input_ids().device())?;
        let mask = match batch.is_padded() {
            true => AttentionMask::none().with_key_padding(batch.attention_mask().clone()),
            false => AttentionMask::none(),
        };
        let x = self.encoder.embeddings.forward(batch.input_ids(), Some(&positions), None)?;
        Ok(self.encoder.stack.forward_with_router(&x, &mask, Some(&positions), None)?)
    }

    /// The cross-attention memory of an encoded batch: every decoder layer's keys and values,
    /// projected once, masked where `batch` was padded.
    pub fn memory(&self, encoded: &Tensor, batch: &Batch) -> Result<EncoderMemory> {
        let padding = batch.is_padded().then(|| batch.attention_mask());
        Ok(self.decoder.stack.encoder_memory(encoded, padding)?)
    }

    /// One KV cache per decoder layer, each holding `capacity` positions.
    pub fn new_caches(&self, capacity: usize) -> Vec<KvCache> {
        self.decoder.stack.new_caches(capacity)
    }

    /// Checks that decoding `rows` rows of up to `capacity` positions fits in memory (KV caches
    /// and per-step scores) before generation allocates; `what` names the settings to lower.
    pub(crate) fn check_decoding_memory(&self, rows: usize, capacity: usize, what: &str) -> Result<()> {
        let bytes = self.decoder.embeddings.dtype().size_in_bytes();
        let elements = self.decoder.stack.cache_elements(rows, capacity);
        crate::generation::check_decoding_memory(elements, bytes, rows, self.decoder_vocab_size(), what)
    }

    /// The decoder's final states `[batch, seq, hidden]` for `decoder_ids` `[batch, seq]` at
    /// positions `past..past + seq` (`past` = the tokens already in `caches`), and each
    /// layer's router statistics. `mask` is the decoder's self-attention mask (causal, with key
    /// padding over past and new tokens if rows are padded).
    pub fn decode(
        &self,
        decoder_ids: &Tensor,
        mask: &AttentionMask,
        caches: Option<&mut [KvCache]>,
        memory: &EncoderMemory,
    ) -> Result<(Tensor, Vec<Option<RouterOutput>>)> {
        let (b, s) = decoder_ids.dims2()?;
        let past = caches.as_ref().and_then(|c| c.first()).map_or(0, KvCache::len);
        check_length(&self.decoder, past + s, "decoder")?;
        if memory.rows() != b {
            return Err(Error::InvalidInput(format!(
                "the encoder memory has {} rows, the decoder input {b}",
                memory.rows()
            )));
        }
        let positions = sequential_position_ids(b, s, past, decoder_ids.device())?;
        let x = self.decoder.embeddings.forward(decoder_ids, Some(&positions), None)?;
        Ok(self.decoder.stack.forward_decoder(&x, mask, Some(&positions), caches, memory)?)
    }

    /// Vocabulary logits of decoder states.
    pub fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(hidden)?)
    }

    /// Logits `[batch, decoder_seq, vocab]` of right-padded encoder and decoder batches in one
    /// pass (teacher forcing), as `tcat forward --decoder-ids` writes them.
    pub fn logits(&self, encoder: &Batch, decoder: &Batch) -> Result<Tensor> {
        Ok(self.logits_with_router(encoder, decoder)?.logits)
    }

    /// [`logits`](Self::logits) with the routers' statistics of the encoder's and the
    /// decoder's sparse layers (Switch Transformers; empty for a dense model).
    pub fn logits_with_router(&self, encoder: &Batch, decoder: &Batch) -> Result<Seq2seqRouterReport> {
        let (be, bd) = (encoder.input_ids().dim(0)?, decoder.input_ids().dim(0)?);
        if be != bd {
            return Err(Error::InvalidInput(format!(
                "{be} encoder rows but {bd} decoder rows; give one of each per row"
            )));
        }
        decoder.check_vocab(self.decoder_vocab_size())?;
        if decoder.seq_len() == 0 {
            return Err(Error::InvalidInput("the decoder input is empty".into()));
        }
        let (encoded, encoder_routers) = self.encode_with_router(encoder)?;
        let memory = self.memory(&encoded, encoder)?;
        let mask = match decoder.is_padded() {
            true => AttentionMask::causal().with_key_padding(decoder.attention_mask().clone()),
            false => AttentionMask::causal(),
        };
        let (h, decoder_routers) = self.decode(decoder.input_ids(), &mask, None, &memory)?;
        Ok(Seq2seqRouterReport {
            logits: self.head(&h)?,
            encoder: encoder_routers.into_iter().flatten().collect(),
            decoder: decoder_routers.into_iter().flatten().collect(),
        })
    }
}

/// What [`Seq2seqModel::logits_with_router`] returns: the logits and each stack's sparse
/// layers' router outputs (logits, choices, gates, load, z-loss), from which Switch's
/// auxiliary losses follow ([`tcat_blocks::load_balancing_loss`] per stack, the mean of the
/// layers' z-losses).
#[derive(Debug, Clone)]
pub struct Seq2seqRouterReport {
    /// Logits `[batch, decoder_seq, vocab]`.
    pub logits: Tensor,
    /// The encoder's sparse layers, in order.
    pub encoder: Vec<RouterOutput>,
    /// The decoder's sparse layers, in order.
    pub decoder: Vec<RouterOutput>,
}

fn check_length(tower: &Seq2seqTower, len: usize, which: &str) -> Result<()> {
    match tower.max_positions {
        Some(max) if len > max => Err(Error::SequenceTooLong {
            len,
            max,
            limit: format!("the {which}'s position table (max_position_embeddings)"),
        }),
        _ => Ok(()),
    }
}
