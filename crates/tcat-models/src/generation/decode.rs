//! Autoregressive decoding with the KV cache: greedy, temperature, top-k and nucleus (top-p,
//! Holtzman et al. 2019) sampling, batched over left-padded prompts.

use candle_core::Tensor;
use tcat_attention::{AttentionMask, KvCache};
use tcat_core::{Error, Result};
use tcat_position::positions_from_attention_mask;

use super::processors::{LogitsProcessors, SearchLimits};
use crate::sampler::TokenSampler;
use crate::{Batch, DecoderModel};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token.
    Greedy,
    /// Sample from `softmax(logits / temperature)`, restricted to the `top_k` most likely
    /// tokens and then to the smallest set whose probability reaches `top_p`.
    Sample {
        /// Softmax temperature, > 0.
        temperature: f64,
        /// Keep this many most likely tokens (`None`: all).
        top_k: Option<usize>,
        /// Keep the smallest prefix of the sorted distribution with mass ≥ `top_p` (`None`: 1).
        top_p: Option<f64>,
    },
}

impl Sampling {
    /// Greedy for temperature 0, sampling otherwise.
    pub fn from_options(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Result<Self> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(Error::InvalidInput(format!("temperature must be ≥ 0, got {temperature}")));
        }
        if let Some(p) = top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::InvalidInput(format!("top-p must be in (0, 1], got {p}")));
        }
        if top_k == Some(0) {
            return Err(Error::InvalidInput("top-k must be at least 1".into()));
        }
        Ok(if temperature == 0.0 { Sampling::Greedy } else { Sampling::Sample { temperature, top_k, top_p } })
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Tokens to generate per row at most.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
    /// Seed of the sampler (sampling is reproducible for a given seed).
    pub seed: u64,
    /// A row stops after producing one of these (the model's EOS ids by default).
    pub stop_tokens: Option<Vec<u32>>,
    /// A row stops once its generated ids end with one of these sequences (stop strings,
    /// tokenized); the sequence is kept in the output.
    pub stop_sequences: Vec<Vec<u32>>,
    /// Penalty on tokens already present in the row (Keskar et al. 2019, CTRL §4.1): positive
    /// logits are divided by it, negative ones multiplied; 1 disables it.
    pub repetition_penalty: f64,
    /// Ban any n-gram of this size from occurring twice in a row, the left-padded prompt
    /// included (transformers' `no_repeat_ngram_size`; 0 disables it).
    pub no_repeat_ngram_size: usize,
    /// The stop tokens are banned until this many tokens were generated (transformers'
    /// `min_new_tokens`; 0 disables it).
    pub min_new_tokens: usize,
    /// Forced as the token after a one-token prompt (transformers' `forced_bos_token_id`).
    pub forced_bos_token_id: Option<u32>,
    /// Forced as the last token `max_new_tokens` allows (transformers' `forced_eos_token_id`).
    pub forced_eos_token_id: Option<Vec<u32>>,
}

impl Default for GenerationConfig {
    /// Greedy decoding of up to 32 tokens, stopping at the model's EOS.
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_tokens: None,
            stop_sequences: vec![],
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            min_new_tokens: 0,
            forced_bos_token_id: None,
            forced_eos_token_id: None,
        }
    }
}

/// Generates continuations of `prompts` (one row each, padded on the left into one batch).
///
/// Returns each row's prompt followed by its generated tokens (ending with the stop token when
/// one was produced). `on_token(row, id)` is called for every generated token as it is chosen,
/// for streaming.
///
/// Tokens are chosen on the device (see [`Sampling`]); per step only the `[batch]` chosen ids
/// come back to the host (to stream them and test for stops) and the sampler's `[batch]`
/// uniform draws go up; logits, masks, positions and caches stay on the device.
pub fn generate(
    model: &DecoderModel,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    mut on_token: impl FnMut(usize, u32),
) -> Result<Vec<Vec<u32>>> {
    if prompts.is_empty() {
        return Err(Error::InvalidInput("no prompt to generate from".into()));
    }
    let device = model.device().clone();
    let batch = Batch::left_padded(prompts, model.pad_token_id(), &device)?;
    batch.check_vocab(model.vocab_size())?;
    let longest = batch.seq_len();
    let total = longest.checked_add(config.max_new_tokens).ok_or_else(|| {
        Error::InvalidInput(format!(
            "max_new_tokens {} plus the {longest}-token prompt overflows; the model positions at most {} tokens",
            config.max_new_tokens,
            model.max_positions()
        ))
    })?;
    // Past the context: name the two parts, and the most that fits after this prompt.
    model.check_length(total).map_err(|e| match e {
        Error::SequenceTooLong { len, max, limit } => Error::InvalidInput(format!(
            "a {longest}-token prompt plus max_new_tokens {} needs {len} tokens, more than the model's {max} \
             positions ({limit}); max_new_tokens can be at most {} here",
            config.max_new_tokens,
            max.saturating_sub(longest)
        )),
        e => e,
    })?;
    let stop = config.stop_tokens.clone().unwrap_or_else(|| model.eos_token_ids().to_vec());
    let mut sampler = TokenSampler::new(
        config.sampling,
        config.repetition_penalty,
        config.seed,
        batch.input_ids(),
        batch.attention_mask(),
        model.vocab_size(),
    )?;
    let limits = SearchLimits {
        min_new_tokens: config.min_new_tokens,
        forced_bos_token_id: config.forced_bos_token_id,
        forced_eos_token_id: config.forced_eos_token_id.clone(),
        ..SearchLimits::new(config.max_new_tokens, stop.clone(), model.pad_token_id())
    };
    let processors = LogitsProcessors::new(&limits, config.no_repeat_ngram_size, longest, model.vocab_size(), &device)?;
    // The rows as transformers' `input_ids` hold them (left padding, then the generated tokens,
    // padding once finished), for the processors.
    let mut sequences: Vec<Vec<u32>> = match processors.is_active() {
        true => prompts
            .iter()
            .map(|p| std::iter::repeat_n(model.pad_token_id(), longest - p.len()).chain(p.iter().copied()).collect())
            .collect(),
        false => vec![],
    };
    model.check_decoding_memory(prompts.len(), total, "the number of prompts or --max-new-tokens")?;
    let mut caches = model.new_caches(total);
    let mut outputs: Vec<Vec<u32>> = prompts.to_vec();
    let mut finished = vec![false; prompts.len()];
    let mut mask = batch.attention_mask().clone();
    let mut input = batch.input_ids().clone();
    let mut positions = positions_from_attention_mask(&mask)?;
    let padded = batch.is_padded();
    // LongRoPE: the whole sequence so far, re-run when it first reaches past the switch.
    let switch = model.rotary_switch();
    let mut whole = batch.input_ids().clone();
    for _ in 0..config.max_new_tokens {
        let past = caches.first().map_or(0, KvCache::len);
        if let Some(at) = switch
            && past > 0
            && past <= at
            && past + input.dim(1)? > at
        {
            caches = model.new_caches(total);
            input = whole.clone();
            positions = match padded {
                true => positions_from_attention_mask(&mask)?,
                false => {
                    let (rows, len) = whole.dims2()?;
                    tcat_position::sequential_position_ids(rows, len, 0, whole.device())?
                }
            };
        }
        // Unpadded prompts (a single one, or all of one length) need no key-padding mask.
        let attention = match padded {
            true => AttentionMask::causal().with_key_padding(mask.clone()),
            false => AttentionMask::causal(),
        };
        let mut last = model.forward_last(&input, &positions, &attention, Some(&mut caches))?;
        if processors.is_active() {
            last = processors.apply(&last.to_dtype(candle_core::DType::F32)?, prompts.len(), |r| &sequences[r])?;
        }
        let ids = sampler.choose(&last)?;
        sampler.observe(&ids)?;
        // The one device-to-host copy of a step: the `[batch]` chosen ids, which streaming and
        // the stop tests need on the host.
        for (row, id) in ids.to_vec1::<u32>()?.into_iter().enumerate() {
            if let Some(seq) = sequences.get_mut(row) {
                seq.push(if finished[row] { model.pad_token_id() } else { id });
            }
            if finished[row] {
                continue;
            }
            outputs[row].push(id);
            on_token(row, id);
            let generated = &outputs[row][prompts[row].len()..];
            finished[row] =
                stop.contains(&id) || config.stop_sequences.iter().any(|s| !s.is_empty() && generated.ends_with(s));
        }
        if finished.iter().all(|&f| f) {
            break;
        }
        // Finished rows keep decoding into their own cache rows; their tokens are dropped above
        // and never reach another row.
        input = ids.unsqueeze(1)?;
        if switch.is_some() {
            whole = Tensor::cat(&[&whole, &input.to_dtype(whole.dtype())?], 1)?;
        }
        let last_position = positions.dim(1)? - 1;
        positions = (positions.narrow(1, last_position, 1)? + 1.0)?;
        if padded {
            mask = Tensor::cat(&[&mask, &mask.narrow(1, 0, 1)?.ones_like()?], 1)?;
        }
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        assert!(Sampling::from_options(-1.0, None, None).is_err());
        assert!(Sampling::from_options(1.0, Some(0), None).is_err());
        assert!(Sampling::from_options(1.0, None, Some(1.5)).is_err());
        assert_eq!(Sampling::from_options(0.0, Some(3), None).unwrap(), Sampling::Greedy);
    }
}
