//! Encoder-decoder generation (Sutskever et al. 2014; Vaswani et al. 2017, §3): the prompt is
//! encoded once, each decoder layer's cross-attention keys and values are projected once from
//! it ([`EncoderMemory`]), and the decoder then runs token by token from the decoder start
//! token with its own self-attention KV cache. Forced first and last tokens follow
//! transformers' `forced_bos_token_id` / `forced_eos_token_id`.

use candle_core::{DType, Tensor};
use tcat_attention::{AttentionMask, KvCache};
use tcat_blocks::EncoderMemory;
use tcat_core::{Error, Result};

use super::beam::{BeamSettings, StepDecoder, beam_search};
use super::processors::{LogitsProcessors, SearchLimits};
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
        let rows = prompts
            .len()
            .checked_mul(repeat.max(1))
            .ok_or_else(|| Error::InvalidInput(format!("{} prompts × {repeat} beams overflows", prompts.len())))?;
        model.check_decoding_memory(rows, total, "the number of prompts, --num-beams or --max-new-tokens")?;
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

impl StepDecoder for Seq2seqDecoding<'_> {
    fn step(&mut self, ids: &Tensor) -> Result<Tensor> {
        Seq2seqDecoding::step(self, ids)
    }

    fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        Seq2seqDecoding::select_rows(self, rows)
    }
}

/// Beam search over an encoder-decoder (`settings.num_beams` hypotheses per prompt, scored as
/// transformers' `generate(num_beams=K)` scores them): each prompt is encoded once and its
/// memory repeated per beam. Returns per prompt the best decoder sequence, starting with the
/// decoder start token, unpadded. The search limits are `config`'s, with the model's forced
/// tokens where `config` sets none; `config.sampling` must be greedy, and n-gram blocking is
/// `settings.no_repeat_ngram_size`.
pub fn generate_seq2seq_beam(
    model: &Seq2seqModel,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    settings: &BeamSettings,
) -> Result<Vec<Vec<u32>>> {
    if config.sampling != crate::Sampling::Greedy || config.repetition_penalty != 1.0 {
        return Err(Error::InvalidInput("beam search takes no sampling settings or repetition penalty".into()));
    }
    let stop = config.stop_tokens.clone().unwrap_or_else(|| model.tokens().eos.clone());
    let mut limits = generation_limits(model, config, &stop);
    limits.pad_token_id = model.tokens().pad;
    let mut decoding = Seq2seqDecoding::new(model, prompts, config.max_new_tokens, settings.num_beams)?;
    let first = decoding.start_ids()?;
    let prefixes = vec![vec![model.tokens().decoder_start]; prompts.len()];
    beam_search(&mut decoding, &prefixes, &first, settings, &limits)
}

/// Generates from an encoder-decoder: each prompt is encoded, then decoded from the decoder
/// start token. Returns per prompt the decoder sequence as transformers' `generate` returns it
/// (the start token, the generated tokens, ending with the stop token when one was produced),
/// without padding. `on_token(row, id)` streams every generated token.
///
/// The logits processors of `config` apply, and the model's forced tokens where `config` sets
/// none, as transformers applies them: `forced_bos` is the first generated token, and
/// `forced_eos` the last when generation reaches `max_new_tokens`.
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
    let processors = LogitsProcessors::new(
        &generation_limits(model, config, &stop),
        config.no_repeat_ngram_size,
        1,
        model.decoder_vocab_size(),
        model.device(),
    )?;
    let mut outputs = vec![vec![tokens.decoder_start]; rows];
    // The rows as transformers' `input_ids` hold them (finished rows padded), for the processors.
    let mut sequences = outputs.clone();
    let mut finished = vec![false; rows];
    for _ in 0..config.max_new_tokens {
        let mut logits = decoding.step(&input)?;
        if processors.is_active() {
            logits = processors.apply(&logits.to_dtype(DType::F32)?, rows, |r| &sequences[r])?;
        }
        let ids = sampler.choose(&logits)?;
        sampler.observe(&ids)?;
        for (row, id) in ids.to_vec1::<u32>()?.into_iter().enumerate() {
            sequences[row].push(if finished[row] { tokens.pad } else { id });
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

/// The search limits of a generation: the config's settings, the model's forced tokens where
/// the config sets none.
pub(crate) fn generation_limits(model: &Seq2seqModel, config: &GenerationConfig, stop: &[u32]) -> SearchLimits {
    let tokens = model.tokens();
    SearchLimits {
        min_new_tokens: config.min_new_tokens,
        forced_bos_token_id: config.forced_bos_token_id.or(tokens.forced_bos),
        forced_eos_token_id: config.forced_eos_token_id.clone().or(tokens.forced_eos.map(|id| vec![id])),
        bad_words_ids: tokens.bad_words.clone(),
        ..SearchLimits::new(config.max_new_tokens, stop.to_vec(), tokens.pad)
    }
}
