//! Beam search (as in Freitag & Al-Onaizan 2017, "Beam Search Strategies for Neural Machine
//! Translation", and Wu et al. 2016, GNMT §7, for the length penalty), step for step as
//! Hugging Face transformers 5.23 runs `generate(num_beams=K)` (`GenerationMixin._beam_search`),
//! so that tcat returns the same ids.
//!
//! The search itself, with the exact rules (lengths, stopping, ties), is documented on
//! [`beam_search`]; [`generate_beam`] runs it over a causal language model.

use candle_core::{D, DType, Tensor};
use tcat_attention::{AttentionMask, KvCache};
use tcat_core::{Error, Result};
use tcat_position::positions_from_attention_mask;

use super::processors::{LogitsProcessors, SearchLimits};
use crate::{Batch, DecoderModel};

/// The score of beams that must not be chosen: transformers' `-1e9`.
const NEG: f32 = -1.0e9;

/// A model decoding a set of rows step by step, as search strategies drive it.
pub trait StepDecoder {
    /// Feeds `ids` `[rows, n]` (the whole padded prefix on the first call, then one token per
    /// row) and returns the logits `[rows, vocab]` of each row's last position.
    fn step(&mut self, ids: &Tensor) -> Result<Tensor>;
    /// Keeps rows `rows` (`[new_rows]` u32, indices into the current rows, repeats allowed), in
    /// that order: caches, masks and positions follow. [`beam_search`] calls it after every step
    /// but the last, unless the selection is the identity.
    fn select_rows(&mut self, rows: &Tensor) -> Result<()>;
}

/// When beam search stops (transformers' `early_stopping`; the rules are on [`beam_search`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// `early_stopping=False` (transformers' default): a batch item is done when its best running
    /// beam, scored at the current length, cannot beat its worst finished hypothesis.
    #[default]
    Heuristic,
    /// `early_stopping=True`: a batch item is done as soon as it has `num_beams` finished
    /// hypotheses.
    OnBeamsDone,
    /// `early_stopping="never"`: as `Heuristic`, but with a positive length penalty the running
    /// beam is scored at the longest length it could reach (canonical beam search).
    Never,
}

/// Beam-search settings (transformers' names and defaults, but `num_beams`).
#[derive(Debug, Clone, PartialEq)]
pub struct BeamSettings {
    /// Hypotheses kept per batch item (1 is greedy decoding).
    pub num_beams: usize,
    /// Exponent of the generated length that divides a finished hypothesis' summed
    /// log-probabilities: > 0 favours longer sequences, < 0 shorter ones (default 1).
    pub length_penalty: f64,
    /// When to stop.
    pub early_stopping: EarlyStopping,
    /// Ban any n-gram of this size from occurring twice in a row's sequence (0: off).
    pub no_repeat_ngram_size: usize,
}

impl BeamSettings {
    /// `num_beams` beams with transformers' defaults: length penalty 1, `early_stopping=False`,
    /// no n-gram blocking.
    pub fn new(num_beams: usize) -> Self {
        Self { num_beams, length_penalty: 1.0, early_stopping: EarlyStopping::Heuristic, no_repeat_ngram_size: 0 }
    }
}

/// A running hypothesis: its generated tokens and summed log-probability.
#[derive(Debug, Clone)]
struct Running {
    tokens: Vec<u32>,
    score: f32,
}

/// A slot of the finished set (transformers keeps `K`, filled with placeholders at −1e9).
#[derive(Debug, Clone)]
struct Finished {
    tokens: Vec<u32>,
    score: f32,
    done: bool,
}

/// A top-`2K` candidate: source beam, token, accumulated log-probability, and whether it hits
/// a stop.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    beam: usize,
    token: u32,
    score: f32,
    hit: bool,
}

/// The indices of `scores` in descending order of score, ties by lower index (a stable sort),
/// the first `k` of them.
fn top_indices(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(k);
    order
}

/// Per row, the top values and their indices, on the host.
type TopK = (Vec<Vec<f32>>, Vec<Vec<u32>>);

/// Top `k` of each row of `scores` `[rows, n]` f32, best first, ties by lower index, computed on
/// the device by `k` argmax passes; returns the values and indices on the host.
fn top_k_rows(scores: &Tensor, k: usize) -> Result<TopK> {
    let (rows, n) = scores.dims2()?;
    let mut work = scores.clone();
    let mut picks = Vec::with_capacity(k);
    let minus_inf = Tensor::full(f32::NEG_INFINITY, (rows, 1), scores.device())?;
    for i in 0..k {
        let best = work.argmax_keepdim(D::Minus1)?;
        picks.push(best.clone());
        if i + 1 < k {
            work = work.scatter_add(&best, &minus_inf, 1)?;
        }
    }
    let index = Tensor::cat(&picks, 1)?;
    let values = scores.gather(&index, 1)?;
    let mut index: Vec<Vec<u32>> = index.to_vec2()?;
    let mut values: Vec<Vec<f32>> = values.to_vec2()?;
    // Once a row's best remaining value is −∞, everything left is −∞ (a NaN-free row) and argmax
    // may return a position already taken: take the lowest positions not taken instead.
    for (row, vals) in index.iter_mut().zip(&mut values) {
        let mut taken = std::collections::HashSet::new();
        let Some(first) = (0..row.len()).find(|&j| vals[j] == f32::NEG_INFINITY || !taken.insert(row[j])) else {
            continue;
        };
        let taken: std::collections::HashSet<u32> = row[..first].iter().copied().collect();
        let mut free = (0..n as u32).filter(|i| !taken.contains(i));
        for (slot, value) in row[first..].iter_mut().zip(&mut vals[first..]) {
            *slot = free.next().unwrap_or(0);
            *value = f32::NEG_INFINITY;
        }
    }
    Ok((values, index))
}

/// `length ^ length_penalty` as transformers computes it (a Python float, then f32 for the f32
/// tensor it divides).
fn length_norm(length: usize, length_penalty: f64) -> f32 {
    (length as f64).powf(length_penalty) as f32
}

/// Beam search over `decoder` for `prefixes.len()` batch items, as transformers'
/// `generate(num_beams=K)` runs it.
///
/// Each batch item keeps `K` running hypotheses and up to `K` finished ones. A step:
///
/// 1. the model's last-position logits of every running row, in f32, go through `log_softmax`,
///    then the [logits processors](super::LogitsProcessors) (no-repeat n-gram, min new tokens, forced
///    BOS / EOS), and each row's running score (the sum of its log-probabilities) is added;
/// 2. the top `2K` candidates over `K × vocab` (`max(2, 1 + #EOS) · K`) are taken, best first;
/// 3. a candidate *hits a stop* when its token is an EOS id or the sequence reaches
///    `prompt + max_new_tokens` tokens. Among the first `K` candidates, those that hit become
///    finished hypotheses with score `sum_logprobs / generated_len ^ length_penalty`, where
///    `generated_len` counts the generated tokens including the EOS and **excluding the prompt**
///    (the padded prompt of a decoder-only model, the decoder start of an encoder-decoder);
///    the finished set keeps the best `K` of the old and new ones;
/// 4. the `K` best candidates that did not hit (hits get −1e9) become the running beams, and
///    the model's rows (KV caches, masks, positions) follow them.
///
/// The first step has only beam 0 active (beams 1.. start at −1e9), so the `K` copies of the
/// prompt do not produce `K` identical beams. Scores are f32 with transformers' operation order,
/// so −1e9 absorbs small log-probabilities exactly as it does there.
///
/// **Stopping** ([`EarlyStopping`], transformers' `early_stopping`): a batch item is *done* when
/// all `K` finished slots are filled and the best running score divided by
/// `len ^ length_penalty` is not above the worst finished score, where `len` is the current
/// generated length ([`Heuristic`](EarlyStopping::Heuristic) and
/// [`OnBeamsDone`](EarlyStopping::OnBeamsDone)) or, for [`Never`](EarlyStopping::Never) with a
/// positive length penalty, `max_new_tokens` (the best length a running beam could still reach).
/// A done item accepts no more finished hypotheses; with `OnBeamsDone` an item also accepts no
/// more once its `K` slots are filled, and the search ends as soon as every item has `K`
/// finished hypotheses. The search ends when every item is done, or at `max_new_tokens`, or
/// when all candidates hit a stop.
///
/// **Result**: per batch item the best finished hypothesis: its prefix followed by its generated
/// tokens (ending with the EOS when it produced one). transformers returns these rows right-padded
/// to the longest with [`SearchLimits::fill_token_id`]; tcat returns them unpadded.
///
/// **Ties**: candidates of equal score are ordered by their index (lower first: beam-major, then
/// token id; finished hypotheses already held before new ones), which is what a stable sort
/// gives. `torch.topk` does not document its order for ties; with real-valued model scores they
/// do not occur, except among −1e9 and −∞ filler candidates, which only matter when the
/// vocabulary has fewer than `2K` usable tokens.
///
/// Per step the host receives the `[batch, 2K]` candidate ids and scores and sends the `[batch·K]`
/// running scores, the rows to keep and the next ids (plus the banned ids when n-gram blocking is
/// on); logits stay on the device and the top-k runs there (repeated argmax).
///
/// # Arguments
///
/// `prefixes` are each batch item's tokens that count as already present, all of one length
/// (transformers' `input_ids`: a decoder-only model's left-padded prompt, pads included; an
/// encoder-decoder's decoder start): n-gram blocking sees them, lengths are counted from their
/// end, and they are returned in front of the generated tokens. `first_ids` `[batch·K, n]` is
/// what the first [`StepDecoder::step`] is fed: each batch item's row repeated `K` times
/// consecutively (as `repeat_interleave`). Returns per batch item its prefix followed by the
/// best hypothesis' tokens, unpadded.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_models::generation::{BeamSettings, SearchLimits, StepDecoder, beam_search};
///
/// /// Vocabulary {0: EOS, 1, 2}: after the prefix, 1 is likelier than 2, but 2 then ends at
/// /// once with certainty while 1 hesitates.
/// struct Toy(Vec<u32>);
/// impl StepDecoder for Toy {
///     fn step(&mut self, ids: &Tensor) -> tcat_core::Result<Tensor> {
///         let last: Vec<u32> = ids.to_vec2::<u32>()?.iter().map(|r| *r.last().unwrap()).collect();
///         self.0 = last.clone();
///         let logits: Vec<f32> = last
///             .iter()
///             .flat_map(|&t| match t {
///                 1 => [0.0, 0.0, 0.0],      // uniform
///                 2 => [10.0, -10.0, -10.0], // EOS
///                 _ => [-10.0, 1.0, 0.0],    // prefer 1 over 2
///             })
///             .collect();
///         Ok(Tensor::from_vec(logits, (last.len(), 3), &Device::Cpu)?)
///     }
///     fn select_rows(&mut self, _rows: &Tensor) -> tcat_core::Result<()> {
///         Ok(())
///     }
/// }
/// let limits = SearchLimits::new(3, vec![0], 0);
/// let first = Tensor::new(&[[7u32], [7]], &Device::Cpu).unwrap();
/// let mut toy = Toy(vec![]);
/// // Greedy decoding would take 1 first; two beams find the better path through 2.
/// let best = beam_search(&mut toy, &[vec![7]], &first, &BeamSettings::new(2), &limits).unwrap();
/// assert_eq!(best, [vec![7, 2, 0]]); // log p(2) + log p(EOS|2) beats every path through 1
/// ```
pub fn beam_search(
    decoder: &mut dyn StepDecoder,
    prefixes: &[Vec<u32>],
    first_ids: &Tensor,
    settings: &BeamSettings,
    limits: &SearchLimits,
) -> Result<Vec<Vec<u32>>> {
    let batch = prefixes.len();
    let k = settings.num_beams;
    if batch == 0 {
        return Err(Error::InvalidInput("beam search needs at least one row".into()));
    }
    if k == 0 {
        return Err(Error::InvalidInput("num_beams must be at least 1".into()));
    }
    if !settings.length_penalty.is_finite() {
        return Err(Error::InvalidInput(format!("length_penalty must be finite, got {}", settings.length_penalty)));
    }
    let prompt_len = prefixes[0].len();
    if let Some(p) = prefixes.iter().find(|p| p.len() != prompt_len) {
        return Err(Error::InvalidInput(format!(
            "beam search prefixes must have one length (pad them): found {} and {prompt_len} tokens",
            p.len()
        )));
    }
    let rows = batch.checked_mul(k).ok_or_else(|| Error::InvalidInput("batch × num_beams overflows".into()))?;
    let (first_rows, _) = first_ids.dims2()?;
    if first_rows != rows {
        return Err(Error::InvalidInput(format!(
            "first_ids has {first_rows} rows, expected batch {batch} × num_beams {k} = {rows}"
        )));
    }
    if limits.max_new_tokens == 0 {
        return Ok(prefixes.to_vec());
    }
    let max_length = prompt_len.saturating_add(limits.max_new_tokens);
    let keep = 2.max(1 + limits.eos_token_ids.len()) * k;
    let lp = settings.length_penalty;
    let early = settings.early_stopping;
    let device = first_ids.device().clone();

    let mut running: Vec<Vec<Running>> = (0..batch)
        .map(|_| (0..k).map(|j| Running { tokens: vec![], score: if j == 0 { 0.0 } else { NEG } }).collect())
        .collect();
    let mut finished: Vec<Vec<Finished>> =
        (0..batch).map(|_| vec![Finished { tokens: vec![], score: NEG, done: false }; k]).collect();
    let mut unsatisfied = vec![true; batch];
    let mut processors: Option<LogitsProcessors> = None;
    let mut ids = first_ids.clone();
    let mut cur_len = prompt_len;
    let mut sequences: Vec<Vec<u32>> = vec![vec![]; rows];
    loop {
        let logits = decoder.step(&ids)?.to_dtype(DType::F32)?;
        let (logit_rows, vocab) = logits.dims2()?;
        if logit_rows != rows {
            return Err(Error::InvalidInput(format!(
                "the decoder returned {logit_rows} rows of logits, expected {rows}"
            )));
        }
        if keep > k.saturating_mul(vocab) {
            return Err(Error::InvalidInput(format!(
                "num_beams {k} needs {keep} candidates per step, more than num_beams × vocab_size = {}",
                k * vocab
            )));
        }
        let processors = match &processors {
            Some(p) => p,
            None => processors.insert(LogitsProcessors::new(
                limits,
                settings.no_repeat_ngram_size,
                prompt_len,
                vocab,
                &device,
            )?),
        };
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        if processors.is_active() {
            for (r, seq) in sequences.iter_mut().enumerate() {
                seq.clear();
                seq.extend_from_slice(&prefixes[r / k]);
                seq.extend_from_slice(&running[r / k][r % k].tokens);
            }
        }
        let log_probs = processors.apply(&log_probs, rows, |r| &sequences[r])?;
        let running_scores: Vec<f32> = running.iter().flatten().map(|b| b.score).collect();
        let running_scores = Tensor::from_vec(running_scores, (rows, 1), &device)?;
        let accumulated = log_probs.broadcast_add(&running_scores)?.reshape((batch, k * vocab))?;
        let (values, indices) = top_k_rows(&accumulated, keep)?;

        let reaches_max = cur_len + 1 >= max_length;
        let generated_len = cur_len + 1 - prompt_len;
        let mut select = Vec::with_capacity(rows);
        let mut all_hit = true;
        for b in 0..batch {
            let candidates: Vec<Candidate> = values[b]
                .iter()
                .zip(&indices[b])
                .map(|(&score, &index)| {
                    let (beam, token) = (index as usize / vocab, (index as usize % vocab) as u32);
                    let hit = reaches_max || limits.eos_token_ids.contains(&token);
                    Candidate { beam, token, score, hit }
                })
                .collect();
            all_hit &= candidates.iter().all(|c| c.hit);
            let extend = |c: &Candidate| {
                let mut tokens = running[b][c.beam].tokens.clone();
                tokens.push(c.token);
                tokens
            };
            // e. The next running beams: the best candidates that did not hit a stop.
            let running_scores: Vec<f32> =
                candidates.iter().map(|c| c.score + if c.hit { NEG } else { -0.0 }).collect();
            let next: Vec<Running> = top_indices(&running_scores, k)
                .into_iter()
                .map(|j| {
                    select.push((b * k + candidates[j].beam) as u32);
                    Running { tokens: extend(&candidates[j]), score: running_scores[j] }
                })
                .collect();
            // f. The finished set: the best `K` of the held ones and the new finished candidates.
            let full = early == EarlyStopping::OnBeamsDone && finished[b].iter().all(|f| f.done);
            let norm = length_norm(generated_len, lp);
            let mut merged_scores: Vec<f32> = finished[b].iter().map(|f| f.score).collect();
            for (j, c) in candidates.iter().enumerate() {
                let just_finished = c.hit && j < k;
                let mut s = c.score / norm;
                s += if full { NEG } else { -0.0 };
                s += if unsatisfied[b] { -0.0 } else { NEG };
                s += if just_finished { -0.0 } else { NEG };
                merged_scores.push(s);
            }
            let kept: Vec<Finished> = top_indices(&merged_scores, k)
                .into_iter()
                .map(|m| match m.checked_sub(k) {
                    None => finished[b][m].clone(),
                    Some(j) => {
                        let c = &candidates[j];
                        Finished { tokens: extend(c), score: merged_scores[m], done: c.hit && j < k }
                    }
                })
                .collect();
            running[b] = next;
            finished[b] = kept;
        }
        cur_len += 1;
        // g. Whether each batch item can still improve.
        let best_len = match early == EarlyStopping::Never && lp > 0.0 {
            true => max_length - prompt_len,
            false => cur_len - prompt_len,
        };
        for b in 0..batch {
            let best_possible = running[b][0].score / length_norm(best_len, lp);
            let worst = finished[b].iter().map(|f| f.score).fold(f32::INFINITY, f32::min);
            unsatisfied[b] &= finished[b].iter().any(|f| best_possible > if f.done { worst } else { NEG });
        }
        let improvement_possible = unsatisfied.iter().any(|&u| u);
        let all_finished = finished.iter().flatten().all(|f| f.done);
        let open = !(all_finished && early == EarlyStopping::OnBeamsDone);
        if !(improvement_possible && open && !all_hit) {
            break;
        }
        // Reordering copies every cache; when each beam continues itself there is nothing to move.
        if select.iter().enumerate().any(|(i, &r)| r as usize != i) {
            decoder.select_rows(&Tensor::from_vec(select, rows, &device)?)?;
        }
        let last: Vec<u32> = running.iter().flatten().map(|r| *r.tokens.last().expect("one token per step")).collect();
        ids = Tensor::from_vec(last, (rows, 1), &device)?;
    }
    Ok(prefixes.iter().zip(&finished).map(|(p, f)| p.iter().chain(&f[0].tokens).copied().collect()).collect())
}

/// A [`DecoderModel`] as a [`StepDecoder`]: left-padded rows with a key-padding mask, positions
/// counted from the mask (as transformers derives them), and one KV cache per layer.
struct CausalSteps<'a> {
    model: &'a DecoderModel,
    caches: Vec<KvCache>,
    /// `[rows, seen]` u32: 1 for real tokens, 0 for padding.
    mask: Tensor,
    /// `[rows, 1]`: the position of each row's last token (`None` before the first step).
    last_positions: Option<Tensor>,
    padded: bool,
}

impl StepDecoder for CausalSteps<'_> {
    fn step(&mut self, ids: &Tensor) -> Result<Tensor> {
        let positions = match &self.last_positions {
            None => positions_from_attention_mask(&self.mask)?,
            Some(last) => {
                if self.padded {
                    self.mask = Tensor::cat(&[&self.mask, &self.mask.narrow(1, 0, 1)?.ones_like()?], 1)?;
                }
                (last + 1.0)?
            }
        };
        let attention = match self.padded {
            true => AttentionMask::causal().with_key_padding(self.mask.clone()),
            false => AttentionMask::causal(),
        };
        let logits = self.model.forward_last(ids, &positions, &attention, Some(&mut self.caches))?;
        let n = positions.dim(1)?;
        self.last_positions = Some(positions.narrow(1, n - 1, 1)?.contiguous()?);
        Ok(logits)
    }

    fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for cache in &mut self.caches {
            cache.select_rows(rows)?;
        }
        self.mask = self.mask.index_select(rows, 0)?;
        if let Some(last) = &self.last_positions {
            self.last_positions = Some(last.index_select(rows, 0)?);
        }
        Ok(())
    }
}

/// Beam search over a causal language model (transformers' `generate(num_beams=K)` on a
/// left-padded batch): returns per prompt the prompt followed by the best hypothesis' tokens
/// (ending with its EOS when it produced one), without padding.
///
/// Prompts are left-padded with the model's pad id into one batch; the padding takes part in
/// n-gram blocking as it does in transformers (its `input_ids` hold it), and lengths for the
/// length penalty count generated tokens only. `limits.eos_token_ids` is usually
/// `model.eos_token_ids()`.
pub fn generate_beam(
    model: &DecoderModel,
    prompts: &[Vec<u32>],
    settings: &BeamSettings,
    limits: &SearchLimits,
) -> Result<Vec<Vec<u32>>> {
    if prompts.is_empty() {
        return Err(Error::InvalidInput("no prompt to generate from".into()));
    }
    if settings.num_beams == 0 {
        return Err(Error::InvalidInput("num_beams must be at least 1".into()));
    }
    let device = model.device().clone();
    let pad = model.pad_token_id();
    let batch = Batch::left_padded(prompts, pad, &device)?;
    batch.check_vocab(model.vocab_size())?;
    let longest = batch.seq_len();
    if let Some(at) = model.rotary_switch()
        && longest <= at
        && longest + limits.max_new_tokens > at
    {
        return Err(Error::NotImplemented {
            what: format!(
                "beam search across LongRoPE's switch at {at} tokens (greedy and sampled decoding re-run the \
                 sequence there; beams do not yet)"
            ),
        });
    }
    let total = longest.checked_add(limits.max_new_tokens).ok_or_else(|| {
        Error::InvalidInput(format!(
            "max_new_tokens {} plus the {longest}-token prompt overflows",
            limits.max_new_tokens
        ))
    })?;
    model.check_length(total).map_err(|e| match e {
        Error::SequenceTooLong { len, max, limit } => Error::InvalidInput(format!(
            "a {longest}-token prompt plus max_new_tokens {} needs {len} tokens, more than the model's {max} \
             positions ({limit}); max_new_tokens can be at most {} here",
            limits.max_new_tokens,
            max.saturating_sub(longest)
        )),
        e => e,
    })?;
    let k = settings.num_beams;
    let rows = prompts.len().checked_mul(k).ok_or_else(|| Error::InvalidInput("batch × num_beams overflows".into()))?;
    model.check_decoding_memory(rows, total, "the number of prompts, --num-beams or --max-new-tokens")?;
    let prefixes: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| std::iter::repeat_n(pad, longest - p.len()).chain(p.iter().copied()).collect())
        .collect();
    let repeat: Vec<u32> = (0..rows as u32).map(|r| r / k as u32).collect();
    let repeat = Tensor::from_vec(repeat, rows, &device)?;
    let first_ids = batch.input_ids().index_select(&repeat, 0)?;
    let mut steps = CausalSteps {
        model,
        caches: model.new_caches(total),
        mask: batch.attention_mask().index_select(&repeat, 0)?,
        last_positions: None,
        padded: batch.is_padded(),
    };
    let best = beam_search(&mut steps, &prefixes, &first_ids, settings, limits)?;
    Ok(best.into_iter().zip(prompts).map(|(row, p)| row[longest - p.len()..].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_indices_are_stable() {
        assert_eq!(top_indices(&[1.0, 3.0, 3.0, -1.0, 2.0], 4), [1, 2, 4, 0]);
    }

    #[test]
    fn device_top_k_orders_ties_by_index_and_fills_minus_infinity() {
        let dev = candle_core::Device::Cpu;
        let inf = f32::NEG_INFINITY;
        let t = Tensor::new(&[[0.5f32, 2.0, inf, 2.0, inf, 1.0], [inf, inf, 3.0, inf, inf, inf]], &dev).unwrap();
        let (v, i) = top_k_rows(&t, 5).unwrap();
        assert_eq!(i, [vec![1, 3, 5, 0, 2], vec![2, 0, 1, 3, 4]]);
        assert_eq!(v[0], [2.0, 2.0, 1.0, 0.5, inf]);
        assert_eq!(v[1][..2], [3.0, inf]);
    }
}
