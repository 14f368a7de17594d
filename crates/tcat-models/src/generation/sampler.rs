//! Choosing the next token on the device: greedy (argmax), temperature sampling with top-k and
//! nucleus (top-p, Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration", §3.1)
//! filtering, and the repetition penalty of CTRL (Keskar et al. 2019, §4.1).
//!
//! The logits never leave the device. The only host traffic per step is the sampler's uniform
//! draws going up (`[batch]` f32, from a seeded host RNG so that a seed gives the same samples on
//! every device) and the chosen ids coming back (`[batch]` u32), which generation needs on the
//! host anyway to stream tokens and test stop sequences.

use candle_core::{D, DType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_core::{Error, Result, prefix_sum};

use crate::Sampling;

/// Chooses one token per row from `[batch, vocab]` logits, tracking the tokens each row has
/// seen for the repetition penalty.
pub(crate) struct TokenSampler {
    sampling: Sampling,
    repetition_penalty: f64,
    /// `[batch, vocab]` f32, non-zero where the row holds the token (prompt or generated).
    seen: Option<Tensor>,
    rng: StdRng,
}

impl TokenSampler {
    /// A sampler for a batch whose prompts are `ids` (`[batch, len]` u32) with `mask` marking
    /// their real (non-padding) tokens; `seed` makes sampling reproducible.
    pub fn new(
        sampling: Sampling,
        repetition_penalty: f64,
        seed: u64,
        ids: &Tensor,
        mask: &Tensor,
        vocab: usize,
    ) -> Result<Self> {
        if !(repetition_penalty > 0.0 && repetition_penalty.is_finite()) {
            return Err(Error::InvalidInput(format!("repetition penalty must be > 0, got {repetition_penalty}")));
        }
        let seen = if repetition_penalty == 1.0 {
            None
        } else {
            let (batch, _) = ids.dims2()?;
            let zeros = Tensor::zeros((batch, vocab), DType::F32, ids.device())?;
            // Padding positions add 0, so they mark nothing.
            Some(zeros.scatter_add(ids, &mask.to_dtype(DType::F32)?, 1)?)
        };
        Ok(Self { sampling, repetition_penalty, seen, rng: StdRng::seed_from_u64(seed) })
    }

    /// The next token of every row, `[batch]` u32 on the logits' device.
    pub fn choose(&mut self, logits: &Tensor) -> Result<Tensor> {
        let logits = logits.to_dtype(DType::F32)?;
        let logits = match &self.seen {
            Some(seen) => penalize_repeats(&logits, seen, self.repetition_penalty)?,
            None => logits,
        };
        Ok(match self.sampling {
            Sampling::Greedy => logits.argmax(D::Minus1)?,
            Sampling::Sample { temperature, top_k, top_p } => {
                let batch = logits.dim(0)?;
                let draws: Vec<f32> = (0..batch).map(|_| self.rng.random::<f32>()).collect();
                let draws = Tensor::from_vec(draws, batch, logits.device())?;
                sample(&logits, temperature, top_k, top_p, &draws)?
            }
        })
    }

    /// Records the chosen `ids` (`[batch]` u32) as seen.
    pub fn observe(&mut self, ids: &Tensor) -> Result<()> {
        if let Some(seen) = &self.seen {
            let ids = ids.unsqueeze(1)?;
            self.seen = Some(seen.scatter_add(&ids, &ids.ones_like()?.to_dtype(DType::F32)?, 1)?);
        }
        Ok(())
    }
}

/// Divides the positive logits of seen tokens by `penalty` and multiplies the negative ones.
fn penalize_repeats(logits: &Tensor, seen: &Tensor, penalty: f64) -> Result<Tensor> {
    let penalized = logits.ge(0.0)?.where_cond(&(logits / penalty)?, &(logits * penalty)?)?;
    Ok(seen.gt(0.0)?.where_cond(&penalized, logits)?)
}

/// Samples one token per row of `logits` (`[batch, vocab]` f32) from `softmax(logits / t)`
/// restricted to the `top_k` most likely tokens and then to the smallest prefix of them whose
/// mass reaches `top_p`; `draws` (`[batch]`, uniform in [0, 1)) picks the token by inverting
/// the kept distribution's cumulative sum.
fn sample(
    logits: &Tensor,
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
    draws: &Tensor,
) -> Result<Tensor> {
    let (batch, vocab) = logits.dims2()?;
    let device = logits.device();
    let order = logits.arg_sort_last_dim(false)?;
    let sorted = (logits.gather(&order, 1)? / temperature)?;
    let rank = Tensor::arange(0u32, vocab as u32, device)?.unsqueeze(0)?;
    let mut keep = rank.lt(top_k.unwrap_or(vocab).max(1) as f64)?.to_dtype(DType::F32)?.broadcast_as((batch, vocab))?;
    // Top-p applies to the distribution renormalised over the top-k tokens, as in transformers.
    let probs = (candle_nn::ops::softmax_last_dim(&sorted)? * &keep)?;
    let probs = probs.broadcast_div(&probs.sum_keepdim(1)?)?;
    if let Some(top_p) = top_p {
        // Keep token i while the mass of the tokens before it is still short of top_p.
        let mass_before = (prefix_sum(&probs)? - &probs)?;
        keep = (keep * mass_before.lt(top_p)?.to_dtype(DType::F32)?)?;
    }
    let kept = (probs * &keep)?;
    let cumulative = prefix_sum(&kept)?;
    let total = cumulative.narrow(1, vocab - 1, 1)?;
    let target = draws.unsqueeze(1)?.broadcast_mul(&total)?;
    // The first sorted position whose cumulative mass exceeds the target; rounding can leave
    // the target above the last cumulative value, so clamp to the last kept token.
    let below = cumulative.broadcast_le(&target)?.to_dtype(DType::F32)?.sum_keepdim(1)?;
    let last_kept = (keep.sum_keepdim(1)? - 1.0)?;
    let position = below.minimum(&last_kept)?.to_dtype(DType::U32)?;
    Ok(order.gather(&position, 1)?.squeeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(rows: &[&[f32]]) -> Tensor {
        let v: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(v, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
    }

    fn sampler(sampling: Sampling, penalty: f64, prompt: &[u32], vocab: usize) -> TokenSampler {
        let ids = Tensor::new(prompt, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        TokenSampler::new(sampling, penalty, 7, &ids, &ids.ones_like().unwrap(), vocab).unwrap()
    }

    #[test]
    fn greedy_is_the_argmax() {
        let mut s = sampler(Sampling::Greedy, 1.0, &[0], 4);
        let ids = s.choose(&logits(&[&[0.1, 2.0, -1.0, 1.9], &[3.0, 0.0, 0.0, 0.0]])).unwrap();
        assert_eq!(ids.to_vec1::<u32>().unwrap(), [1, 0]);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let s = Sampling::Sample { temperature: 1.0, top_k: Some(1), top_p: None };
        let mut s = sampler(s, 1.0, &[0], 4);
        for _ in 0..20 {
            assert_eq!(s.choose(&logits(&[&[0.1, 2.0, -1.0, 1.9]])).unwrap().to_vec1::<u32>().unwrap(), [1]);
        }
    }

    #[test]
    fn small_top_p_keeps_only_the_head() {
        let s = Sampling::Sample { temperature: 1.0, top_k: None, top_p: Some(0.5) };
        let mut s = sampler(s, 1.0, &[0], 4);
        for _ in 0..50 {
            assert_eq!(s.choose(&logits(&[&[0.0, 5.0, 0.0, 4.0]])).unwrap().to_vec1::<u32>().unwrap(), [1]);
        }
    }

    #[test]
    fn top_p_keeps_the_token_that_crosses_it() {
        // p = [0.5, 0.3, 0.2] sorted: top_p 0.6 keeps the first two tokens, never the third.
        let s = Sampling::Sample { temperature: 1.0, top_k: None, top_p: Some(0.6) };
        let mut s = sampler(s, 1.0, &[0], 3);
        let l = logits(&[&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()]]);
        let picks: Vec<u32> = (0..400).map(|_| s.choose(&l).unwrap().to_vec1::<u32>().unwrap()[0]).collect();
        assert!(picks.contains(&0) && picks.contains(&1) && !picks.contains(&2));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([0, ln 3]) = [0.25, 0.75], and at temperature 2: [1/(1+√3), √3/(1+√3)].
        for (temperature, want) in [(1.0, 0.75), (2.0, 3f64.sqrt() / (1.0 + 3f64.sqrt()))] {
            let s = Sampling::Sample { temperature, top_k: None, top_p: None };
            let mut s = sampler(s, 1.0, &[0], 2);
            let l = logits(&[&[0.0, 3f32.ln()]]);
            let ones = (0..4000).filter(|_| s.choose(&l).unwrap().to_vec1::<u32>().unwrap()[0] == 1).count();
            let share = ones as f64 / 4000.0;
            assert!((share - want).abs() < 0.03, "temperature {temperature}: {share} vs {want}");
        }
    }

    #[test]
    fn top_k_and_top_p_sampling_over_a_large_vocabulary_matches_the_truncated_softmax() {
        // 600 tokens (three prefix-sum blocks); the first three carry most of the mass.
        let mut row: Vec<f32> = (0..600).map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0).collect();
        row[7] = 6.0;
        row[300] = 5.5;
        row[599] = 5.0;
        let l = logits(&[&row]);
        let (temperature, top_k, top_p) = (1.3, 40, 0.8);
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        order.truncate(top_k);
        let weights: Vec<f64> = order.iter().map(|&i| (row[i] as f64 / temperature).exp()).collect();
        let total: f64 = weights.iter().sum();
        let (mut mass, mut keep) = (0.0, 0);
        while mass < top_p {
            mass += weights[keep] / total;
            keep += 1;
        }
        let kept_total: f64 = weights[..keep].iter().sum();
        let s = Sampling::Sample { temperature, top_k: Some(top_k), top_p: Some(top_p) };
        let mut s = sampler(s, 1.0, &[0], row.len());
        let draws = 4000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..draws {
            *counts.entry(s.choose(&l).unwrap().to_vec1::<u32>().unwrap()[0] as usize).or_insert(0usize) += 1;
        }
        for (rank, &token) in order.iter().enumerate() {
            let want = if rank < keep { weights[rank] / kept_total } else { 0.0 };
            let got = *counts.get(&token).unwrap_or(&0) as f64 / draws as f64;
            assert!((got - want).abs() < 0.03, "token {token}: sampled {got}, expected {want}");
        }
        assert_eq!(counts.keys().filter(|t| !order[..keep].contains(t)).count(), 0, "{counts:?}");
    }

    #[test]
    fn repetition_penalty_pushes_seen_tokens_down() {
        // Token 0 (seen in the prompt) drops from 2.0 to 1.0 and token 2 wins; once 2 is
        // observed, its 3.0 becomes 1.5 and token 3 (1.6) wins.
        let mut s = sampler(Sampling::Greedy, 2.0, &[0, 1, 0], 4);
        let l = logits(&[&[2.0, -1.0, 3.0, 1.6]]);
        let first = s.choose(&l).unwrap();
        assert_eq!(first.to_vec1::<u32>().unwrap(), [2]);
        s.observe(&first).unwrap();
        assert_eq!(s.choose(&l).unwrap().to_vec1::<u32>().unwrap(), [3]);
        let seen = s.seen.as_ref().unwrap();
        let penalized = penalize_repeats(&l, seen, 2.0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(penalized, [[1.0, -2.0, 1.5, 1.6]]);
    }

    #[test]
    fn padding_is_not_seen() {
        let ids = Tensor::new(&[[0u32, 0, 3]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[0u32, 0, 1]], &Device::Cpu).unwrap();
        let s = TokenSampler::new(Sampling::Greedy, 2.0, 0, &ids, &mask, 4).unwrap();
        assert_eq!(s.seen.unwrap().to_vec2::<f32>().unwrap(), [[0.0, 0.0, 0.0, 1.0]]);
    }
}
