//! Autoregressive decoding with the KV cache: greedy, temperature, top-k and nucleus (top-p,
//! Holtzman et al. 2019) sampling, batched over left-padded prompts.

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::AttentionMask;
use tcat_core::{Error, Result};
use tcat_position::positions_from_attention_mask;

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
        }
    }
}

/// Generates continuations of `prompts` (one row each, padded on the left into one batch).
///
/// Returns each row's prompt followed by its generated tokens (ending with the stop token when
/// one was produced). `on_token(row, id)` is called for every generated token as it is chosen,
/// for streaming.
///
/// Per step, the last position's logits (`[batch, vocab]`) are copied to the host to sample
/// from (one small transfer, needed because sampling decides on the host), and the sampled ids
/// and their positions go back; masks and caches stay on the device.
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
    model.check_length(longest + config.max_new_tokens)?;
    let stop = config.stop_tokens.clone().unwrap_or_else(|| model.eos_token_ids().to_vec());
    if !(config.repetition_penalty > 0.0 && config.repetition_penalty.is_finite()) {
        return Err(Error::InvalidInput(format!("repetition penalty must be > 0, got {}", config.repetition_penalty)));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut caches = model.new_caches(longest + config.max_new_tokens);
    let mut outputs: Vec<Vec<u32>> = prompts.to_vec();
    let mut finished = vec![false; prompts.len()];
    let mut mask = batch.attention_mask().clone();
    let mut input = batch.input_ids().clone();
    let mut positions = positions_from_attention_mask(&mask)?;
    let mut next_position: Vec<u32> = batch.lengths().iter().map(|&l| l as u32).collect();
    for _ in 0..config.max_new_tokens {
        let attention = AttentionMask::causal().with_key_padding(mask.clone());
        let last = model.forward_last(&input, &positions, &attention, Some(&mut caches))?.to_dtype(DType::F32)?;
        let rows: Vec<Vec<f32>> = last.to_vec2()?;
        let mut chosen = Vec::with_capacity(rows.len());
        for (row, logits) in rows.into_iter().enumerate() {
            if finished[row] {
                chosen.push(model.pad_token_id());
                continue;
            }
            let logits = penalize_repeats(logits, &outputs[row], config.repetition_penalty);
            let id = choose(&logits, config.sampling, &mut rng);
            outputs[row].push(id);
            on_token(row, id);
            let generated = &outputs[row][prompts[row].len()..];
            finished[row] =
                stop.contains(&id) || config.stop_sequences.iter().any(|s| !s.is_empty() && generated.ends_with(s));
            chosen.push(id);
        }
        if finished.iter().all(|&f| f) {
            break;
        }
        let b = chosen.len();
        input = Tensor::from_vec(chosen, (b, 1), &device)?;
        positions = Tensor::from_vec(next_position.clone(), (b, 1), &device)?;
        next_position.iter_mut().for_each(|p| *p += 1);
        mask = Tensor::cat(&[&mask, &mask.narrow(1, 0, 1)?.ones_like()?], 1)?;
    }
    Ok(outputs)
}

/// Applies the repetition penalty to the logits of tokens in `seen`.
fn penalize_repeats(mut logits: Vec<f32>, seen: &[u32], penalty: f64) -> Vec<f32> {
    if penalty == 1.0 {
        return logits;
    }
    let mut done = std::collections::HashSet::new();
    for &id in seen {
        if let Some(l) = logits.get_mut(id as usize)
            && done.insert(id)
        {
            *l = if *l > 0.0 { (*l as f64 / penalty) as f32 } else { (*l as f64 * penalty) as f32 };
        }
    }
    logits
}

/// Picks a token from one row of logits.
fn choose(logits: &[f32], sampling: Sampling, rng: &mut StdRng) -> u32 {
    match sampling {
        Sampling::Greedy => argmax(logits),
        Sampling::Sample { temperature, top_k, top_p } => {
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            order.truncate(top_k.unwrap_or(order.len()).max(1));
            let max = logits[order[0]] as f64;
            let mut probs: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - max) / temperature).exp()).collect();
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
            if let Some(top_p) = top_p {
                let mut mass = 0.0;
                let keep = probs.iter().position(|p| {
                    mass += p;
                    mass >= top_p
                });
                let keep = keep.map_or(probs.len(), |i| i + 1);
                probs.truncate(keep);
                order.truncate(keep);
            }
            let total: f64 = probs.iter().sum();
            let mut r = rng.random::<f64>() * total;
            for (p, &i) in probs.iter().zip(&order) {
                r -= p;
                if r <= 0.0 {
                    return i as u32;
                }
            }
            *order.last().expect("at least one token is kept") as u32
        }
    }
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_one_is_greedy() {
        let logits = [0.1f32, 2.0, -1.0, 1.9];
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..20 {
            let s = Sampling::Sample { temperature: 1.0, top_k: Some(1), top_p: None };
            assert_eq!(choose(&logits, s, &mut rng), 1);
        }
    }

    #[test]
    fn small_top_p_keeps_only_the_head() {
        let logits = [0.0f32, 5.0, 0.0, 4.0];
        let mut rng = StdRng::seed_from_u64(1);
        let s = Sampling::Sample { temperature: 1.0, top_k: None, top_p: Some(0.5) };
        for _ in 0..50 {
            assert_eq!(choose(&logits, s, &mut rng), 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([0, ln 3]) = [0.25, 0.75]
        let logits = [0.0f32, 3f32.ln()];
        let mut rng = StdRng::seed_from_u64(2);
        let s = Sampling::Sample { temperature: 1.0, top_k: None, top_p: None };
        let ones = (0..4000).filter(|_| choose(&logits, s, &mut rng) == 1).count();
        assert!((2850..3150).contains(&ones), "{ones}");
    }

    #[test]
    fn repetition_penalty_pushes_seen_tokens_down() {
        let logits = vec![2.0f32, -1.0, 3.0, 0.5];
        let out = penalize_repeats(logits.clone(), &[0, 1, 0], 2.0);
        assert_eq!(out, vec![1.0, -2.0, 3.0, 0.5]);
        assert_eq!(penalize_repeats(logits.clone(), &[0], 1.0), logits);
    }

    #[test]
    fn options_are_validated() {
        assert!(Sampling::from_options(-1.0, None, None).is_err());
        assert!(Sampling::from_options(1.0, Some(0), None).is_err());
        assert!(Sampling::from_options(1.0, None, Some(1.5)).is_err());
        assert_eq!(Sampling::from_options(0.0, Some(3), None).unwrap(), Sampling::Greedy);
    }
}
