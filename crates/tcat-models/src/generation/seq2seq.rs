//! Encoder-decoder generation (Sutskever et al. 2014; Vaswani et al. 2017, §3): the prompt is
//! encoded once, each decoder layer's cross-attention keys and values are projected once from
//! it ([`EncoderMemory`]), and the decoder then runs token by token from the decoder start
//! token with its own self-attention KV cache. Forced first and last tokens follow
//! transformers' `forced_bos_token_id` / `forced_eos_token_id`.

use candle_core::{DType, Tensor};
use tcat_attention::{AttentionMask, KvCache};
use tcat_blocks::EncoderMemory;
use tcat_core::{Error, Result};

use crate::sampler::TokenSampler;
use crate::{Batch, GenerationConfig, Seq2seqModel};

/// An encoder-decoder decoding a set of rows (one per prompt, or per beam) step by step: the
/// encoder memory (computed once), the decoder's self-attention caches, and the rows' count.
pub struct Seq2seqDecoding<'a> {
    model: &'a Seq2seqModel,
    memory: EncoderMemory,
    caches: Vec<KvCache>,
}

impl<'a> Seq2seqDecoding<'a> {
    /// Encodes `prompts` (right-padded into one batch) and prepares decoding of up to
    /// `max_new_tokens` tokens after the decoder start token. With `repeat` > 1 every prompt's
    /// row is repeated that many times, consecutively (one per beam).
    pub fn new(model: &'a Seq2seqModel, prompts: &[Vec<u32>], max_new_tokens: usize, repeat: usize) -> Result<Self> {
        if prompts.is_empty() {
            return Err(Error::InvalidInput("no prompt to generate from".into()));
        }
        let total = max_new_tokens.checked_add(1).ok_or_else(|| {
            Error::InvalidInput(format!("max_new_tokens {max_new_tokens} plus the decoder start token overflows"))
        })?;
        if let Some(max) = model.max_decoder_positions()
            && total > max
        {
            return Err(Error::InvalidInput(format!(
                "the decoder start token plus max_new_tokens {max_new_tokens} needs {total} positions, more than the \
                 decoder's {max} (max_position_embeddings); max_new_tokens can be at most {}",
                max - 1
            )));
        }
        let batch = Batch::right_padded(prompts, None, model.pad_token_id(), model.device())?;
        let encoded = model.encode(&batch)?;
        let mut memory = model.memory(&encoded, &batch)?;
        if repeat > 1 {
            let rows: Vec<u32> = (0..prompts.len() as u32).flat_map(|r| std::iter::repeat_n(r, repeat)).collect();
            memory = memory.select_rows(&Tensor::new(rows.as_slice(), model.device())?)?;
        }
        Ok(Self { model, memory, caches: model.new_caches(total) })
    }

    /// The decoder start ids `[rows, 1]` that open every row.
    pub fn start_ids(&self) -> Result<Tensor> {
        let rows = self.memory.rows();
        Ok(Tensor::full(self.model.tokens().decoder_start, (rows, 1), self.model.device())?)
    }

    /// Feeds `ids` `[rows, n]` and returns the logits `[rows, vocab]` of each row's last
    /// position.
    pub fn step(&mut self, ids: &Tensor) -> Result<Tensor> {
        let (h, _) = self.model.decode(ids, &AttentionMask::causal(), Some(&mut self.caches), &self.memory)?;
        let last = h.narrow(1, h.dim(1)? - 1, 1)?.squeeze(1)?;
        self.model.head(&last)
    }

    /// Keeps rows `rows` (`[n]` u32 indices, repeats allowed) of the caches and the memory.
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for cache in &mut self.caches {
            cache.select_rows(rows)?;
        }
        self.memory = self.memory.select_rows(rows)?;
        Ok(())
    }
}

/// Generates from an encoder-decoder: each prompt is encoded, then decoded from the decoder
/// start token. Returns per prompt the decoder sequence as transformers' `generate` returns it
/// (the start token, the generated tokens, ending with the stop token when one was produced),
/// without padding. `on_token(row, id)` streams every generated token.
///
/// The model's forced tokens apply as transformers applies them: `forced_bos` is the first
/// generated token, and `forced_eos` the last when generation reaches `max_new_tokens`.
pub fn generate_seq2seq(
    model: &Seq2seqModel,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    mut on_token: impl FnMut(usize, u32),
) -> Result<Vec<Vec<u32>>> {
    let mut decoding = Seq2seqDecoding::new(model, prompts, config.max_new_tokens, 1)?;
    let tokens = model.tokens().clone();
    let stop = config.stop_tokens.clone().unwrap_or_else(|| tokens.eos.clone());
    let mut input = decoding.start_ids()?;
    let mut sampler = TokenSampler::new(
        config.sampling,
        config.repetition_penalty,
        config.seed,
        &input,
        &input.ones_like()?,
        model.decoder_vocab_size(),
    )?;
    let rows = prompts.len();
    let mut outputs = vec![vec![tokens.decoder_start]; rows];
    let mut finished = vec![false; rows];
    for step in 0..config.max_new_tokens {
        let logits = decoding.step(&input)?;
        let forced = match (step == 0, step + 1 == config.max_new_tokens) {
            (true, _) if tokens.forced_bos.is_some() => tokens.forced_bos,
            (_, true) => tokens.forced_eos,
            _ => None,
        };
        let ids = match forced {
            // transformers masks every other token: the forced one is chosen whatever the
            // sampling.
            Some(id) => Tensor::full(id, rows, model.device())?,
            None => sampler.choose(&logits)?,
        };
        sampler.observe(&ids)?;
        for (row, id) in ids.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter().enumerate() {
            if finished[row] {
                continue;
            }
            outputs[row].push(id);
            on_token(row, id);
            let generated = &outputs[row][1..];
            finished[row] =
                stop.contains(&id) || config.stop_sequences.iter().any(|s| !s.is_empty() && generated.ends_with(s));
        }
        if finished.iter().all(|&f| f) {
            break;
        }
        input = ids.unsqueeze(1)?;
    }
    Ok(outputs)
}
