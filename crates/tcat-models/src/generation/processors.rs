//! Logits processors shared by greedy decoding and beam search, with Hugging Face
//! transformers' semantics (`generation/logits_process.py`, 5.23): the rules are on
//! [`LogitsProcessors`].

use candle_core::{DType, Device, Tensor};
use tcat_core::{Error, Result};

/// When and how a search ends, and the processors that depend on the length (transformers'
/// `max_new_tokens`, `eos_token_id`, `pad_token_id`, `min_new_tokens`, `forced_bos_token_id`,
/// `forced_eos_token_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchLimits {
    /// Tokens generated per row at most.
    pub max_new_tokens: usize,
    /// A hypothesis ends when it produces one of these.
    pub eos_token_ids: Vec<u32>,
    /// The padding id of the model (see [`fill_token_id`](Self::fill_token_id) for what
    /// transformers pads its returned rows with).
    pub pad_token_id: u32,
    /// EOS is banned until this many tokens were generated (0: never).
    pub min_new_tokens: usize,
    /// Forced as the token that follows a one-token sequence (the decoder start of an
    /// encoder-decoder; mBART's target language).
    pub forced_bos_token_id: Option<u32>,
    /// Forced at the last position `max_new_tokens` allows (several ids: any of them).
    pub forced_eos_token_id: Option<Vec<u32>>,
    /// Token sequences that must not be generated (`bad_words_ids`, transformers'
    /// `NoBadWordsLogitsProcessor`): the last token of a sequence gets −∞ whenever the row ends
    /// with the others (a one-token sequence is always banned: Marian bans its pad token).
    pub bad_words_ids: Vec<Vec<u32>>,
}

impl SearchLimits {
    /// Up to `max_new_tokens` tokens, ending at `eos_token_ids`, without the optional
    /// processors.
    ///
    /// ```
    /// let limits = tcat_models::generation::SearchLimits::new(16, vec![2], 1);
    /// assert_eq!((limits.min_new_tokens, limits.forced_bos_token_id), (0, None));
    /// ```
    pub fn new(max_new_tokens: usize, eos_token_ids: Vec<u32>, pad_token_id: u32) -> Self {
        Self {
            max_new_tokens,
            eos_token_ids,
            pad_token_id,
            min_new_tokens: 0,
            forced_bos_token_id: None,
            forced_eos_token_id: None,
            bad_words_ids: Vec::new(),
        }
    }

    /// What transformers fills the end of the shorter returned rows with:
    /// `pad_token_id or eos_token_id[0]` when there is an EOS (so a pad id of **0** falls back to
    /// the first EOS id: Python's `or` on a zero tensor), and −1 (`None` here) without one.
    ///
    /// ```
    /// use tcat_models::generation::SearchLimits;
    /// assert_eq!(SearchLimits::new(4, vec![2], 5).fill_token_id(), Some(5));
    /// assert_eq!(SearchLimits::new(4, vec![2], 0).fill_token_id(), Some(2));
    /// assert_eq!(SearchLimits::new(4, vec![], 5).fill_token_id(), None);
    /// ```
    pub fn fill_token_id(&self) -> Option<u32> {
        let first_eos = *self.eos_token_ids.first()?;
        Some(if self.pad_token_id == 0 { first_eos } else { self.pad_token_id })
    }
}

/// The tokens banned as the next token of `row` by no-repeat n-gram blocking of size `n`:
/// every token that followed an earlier occurrence of the row's last `n − 1` tokens (with
/// `n = 1`, every token of the row). Ascending, without repeats; empty when `n` is 0 or the row
/// is shorter than `n`.
///
/// This is transformers' rule exactly: all windows of `n` tokens, the last one included, whose
/// first `n − 1` tokens equal the row's suffix ban their last token.
///
/// ```
/// use tcat_models::generation::no_repeat_ngram_bans;
/// // "a b" was followed by c: after "… a b" again, c is banned.
/// assert_eq!(no_repeat_ngram_bans(&[1, 2, 3, 1, 2], 3), [3]);
/// assert_eq!(no_repeat_ngram_bans(&[1, 2, 1, 4, 1], 2), [2, 4]);
/// assert!(no_repeat_ngram_bans(&[1, 2], 3).is_empty());
/// ```
pub fn no_repeat_ngram_bans(row: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || row.len() < n {
        return vec![];
    }
    let suffix = &row[row.len() + 1 - n..];
    let mut banned: Vec<u32> = row.windows(n).filter(|w| &w[..n - 1] == suffix).map(|w| w[n - 1]).collect();
    banned.sort_unstable();
    banned.dedup();
    banned
}

/// Checks that decoding `rows` rows (prompts × beams) of up to `capacity` positions fits in
/// memory before anything is allocated: the KV caches (`cache_elements` of `dtype_bytes`
/// each, [`Stack::cache_elements`](tcat_blocks::Stack::cache_elements)) and a few `[rows,
/// vocab]` f32 score tensors per step. `what` names the settings to lower.
pub(crate) fn check_decoding_memory(
    cache_elements: Option<u64>,
    dtype_bytes: usize,
    rows: usize,
    vocab: usize,
    what: &str,
) -> Result<()> {
    // Logits, log-probabilities, processed scores and the candidates' copy.
    let scores = (rows as u64).checked_mul(vocab as u64).and_then(|n| n.checked_mul(4 * 4));
    let needed =
        cache_elements.and_then(|n| n.checked_mul(dtype_bytes as u64)).zip(scores).and_then(|(a, b)| a.checked_add(b));
    let available = crate::build::available_memory();
    match (needed, available) {
        (Some(needed), Some(available)) if needed <= available => Ok(()),
        (Some(_), None) => Ok(()),
        (needed, available) => Err(Error::InvalidInput(format!(
            "decoding {rows} rows needs {} for its KV caches and scores, more than the {} available; lower {what}",
            needed.map_or("more bytes than a u64 counts".to_string(), |n| format!("{} MiB", n >> 20)),
            available.map_or("memory".to_string(), |n| format!("{} MiB", n >> 20)),
        ))),
    }
}

/// The tokens `bad_words` ban as the next token of `row`: the last token of every sequence
/// whose other tokens end the row (transformers' `NoBadWordsLogitsProcessor`).
///
/// ```
/// use tcat_models::generation::bad_words_bans;
/// assert_eq!(bad_words_bans(&[5, 6], &[vec![9], vec![6, 7], vec![5, 7]]), [9, 7]);
/// ```
pub fn bad_words_bans(row: &[u32], bad_words: &[Vec<u32>]) -> Vec<u32> {
    bad_words
        .iter()
        .filter_map(|w| {
            let (last, prefix) = w.split_last()?;
            row.ends_with(prefix).then_some(*last)
        })
        .collect()
}

/// The processors of one generation, built once for a vocabulary and a device and applied to
/// every step's `[rows, vocab]` scores (f32 logits for greedy decoding, log-probabilities for
/// beam search, as transformers applies them).
///
/// Applied in transformers' order:
///
/// 1. **no-repeat n-gram** (`NoRepeatNGramLogitsProcessor`, from fairseq; Paulus et al. 2017,
///    "A Deep Reinforced Model for Abstractive Summarization", §2.5): a token that would
///    complete an n-gram already present in the row gets −∞. The row is the whole sequence as
///    transformers' `input_ids` holds it: for a decoder-only model the prompt **including its
///    left padding**, for an encoder-decoder the decoder start token, then the generated tokens.
/// 2. **min new tokens** (`MinNewTokensLengthLogitsProcessor`): EOS gets −∞ while fewer than
///    `min_new_tokens` tokens were generated. (transformers' `min_length` counts the prompt:
///    it is `min_new_tokens = min_length − prompt length`.)
/// 3. **forced BOS** (`ForcedBOSTokenLogitsProcessor`): when the sequence holds exactly one
///    token (an encoder-decoder's decoder start, or a one-token prompt), every token but
///    `forced_bos_token_id` gets −∞ and that one 0.
/// 4. **forced EOS** (`ForcedEOSTokenLogitsProcessor`): at the last position allowed by
///    `max_new_tokens`, every token but the `forced_eos_token_id`s gets −∞ and those 0.
///
/// The scores stay on the device; what goes up per step is at most the banned ids of the rows
/// that have any (n-gram blocking needs the rows' tokens, which generation holds on the host).
#[derive(Debug, Clone)]
pub struct LogitsProcessors {
    no_repeat_ngram_size: usize,
    bad_words: Vec<Vec<u32>>,
    prompt_len: usize,
    max_length: usize,
    min_new_tokens: usize,
    vocab: usize,
    /// `[1, vocab]`: −∞ at the EOS ids, 0 elsewhere (min new tokens).
    eos_ban: Option<Tensor>,
    /// `[1, vocab]`: 0 at the forced id(s), −∞ elsewhere.
    forced_bos: Option<Tensor>,
    forced_eos: Option<Tensor>,
}

impl LogitsProcessors {
    /// The processors `limits` and `no_repeat_ngram_size` ask for, for sequences whose first
    /// `prompt_len` tokens (padding and decoder start included) are given, over a vocabulary of
    /// `vocab` scores on `device`. A forced id outside the vocabulary is an error; EOS ids
    /// outside it are ignored (the model cannot produce them).
    pub fn new(
        limits: &SearchLimits,
        no_repeat_ngram_size: usize,
        prompt_len: usize,
        vocab: usize,
        device: &Device,
    ) -> Result<Self> {
        let row = |ids: &[u32], inside: f32, outside: f32| -> Result<Tensor> {
            let mut v = vec![outside; vocab];
            for &id in ids {
                if let Some(slot) = v.get_mut(id as usize) {
                    *slot = inside;
                }
            }
            Ok(Tensor::from_vec(v, (1, vocab), device)?)
        };
        let check = |what: &str, ids: &[u32]| -> Result<()> {
            match ids.iter().find(|&&id| id as usize >= vocab) {
                Some(id) => {
                    Err(Error::InvalidInput(format!("{what} {id} is outside the vocabulary (vocab_size {vocab})")))
                }
                None => Ok(()),
            }
        };
        let forced_bos = match limits.forced_bos_token_id {
            Some(id) => {
                check("forced_bos_token_id", &[id])?;
                Some(row(&[id], 0.0, f32::NEG_INFINITY)?)
            }
            None => None,
        };
        let forced_eos = match &limits.forced_eos_token_id {
            Some(ids) if !ids.is_empty() => {
                check("forced_eos_token_id", ids)?;
                Some(row(ids, 0.0, f32::NEG_INFINITY)?)
            }
            _ => None,
        };
        let eos_ban = match limits.min_new_tokens > 0 && !limits.eos_token_ids.is_empty() {
            true => Some(row(&limits.eos_token_ids, f32::NEG_INFINITY, 0.0)?),
            false => None,
        };
        Ok(Self {
            no_repeat_ngram_size,
            bad_words: limits.bad_words_ids.iter().filter(|w| !w.is_empty()).cloned().collect(),
            prompt_len,
            max_length: prompt_len.saturating_add(limits.max_new_tokens),
            min_new_tokens: limits.min_new_tokens,
            vocab,
            eos_ban,
            forced_bos,
            forced_eos,
        })
    }

    /// Whether any processor is configured (otherwise [`apply`](Self::apply) returns its
    /// input).
    pub fn is_active(&self) -> bool {
        self.no_repeat_ngram_size > 0
            || !self.bad_words.is_empty()
            || self.eos_ban.is_some()
            || self.forced_bos.is_some()
            || self.forced_eos.is_some()
    }

    /// Processes the `[rows, vocab]` f32 `scores` of the next token of every row, whose tokens
    /// so far are `row(r)` (all of one length: the prompt length plus the tokens generated).
    pub fn apply<'a>(&self, scores: &Tensor, rows: usize, row: impl Fn(usize) -> &'a [u32]) -> Result<Tensor> {
        if !self.is_active() || rows == 0 {
            return Ok(scores.clone());
        }
        let cur_len = row(0).len();
        let mut scores = scores.clone();
        if (self.no_repeat_ngram_size > 0 && cur_len >= self.no_repeat_ngram_size) || !self.bad_words.is_empty() {
            let bans: Vec<Vec<u32>> = (0..rows)
                .map(|r| {
                    let mut b = no_repeat_ngram_bans(row(r), self.no_repeat_ngram_size);
                    b.extend(bad_words_bans(row(r), &self.bad_words));
                    b.sort_unstable();
                    b.dedup();
                    // Ids past the scores (an embedding table wider than the head) cannot be produced.
                    b.retain(|&id| (id as usize) < self.vocab);
                    b
                })
                .collect();
            let widest = bans.iter().map(Vec::len).max().unwrap_or(0);
            if widest > 0 {
                // Rows with fewer bans add 0 at token 0.
                let mut index = Vec::with_capacity(rows * widest);
                let mut source = Vec::with_capacity(rows * widest);
                for b in &bans {
                    index.extend(b.iter().copied().chain(std::iter::repeat_n(0, widest - b.len())));
                    source.extend(
                        std::iter::repeat_n(f32::NEG_INFINITY, b.len())
                            .chain(std::iter::repeat_n(0.0, widest - b.len())),
                    );
                }
                let device = scores.device();
                let index = Tensor::from_vec(index, (rows, widest), device)?;
                let source = Tensor::from_vec(source, (rows, widest), device)?;
                let penalty = Tensor::zeros((rows, self.vocab), DType::F32, device)?.scatter_add(&index, &source, 1)?;
                scores = (scores + penalty)?;
            }
        }
        if let Some(ban) = &self.eos_ban
            && cur_len.saturating_sub(self.prompt_len) < self.min_new_tokens
        {
            scores = scores.broadcast_add(ban)?;
        }
        if let Some(forced) = &self.forced_bos
            && cur_len == 1
        {
            scores = forced.broadcast_as(scores.shape())?.contiguous()?;
        }
        if let Some(forced) = &self.forced_eos
            && cur_len + 1 == self.max_length
        {
            scores = forced.broadcast_as(scores.shape())?.contiguous()?;
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The n-gram rule written out the way fairseq and transformers' old `_get_ngrams` did:
    /// a map from every (n−1)-gram of the row to the tokens that followed it, looked up with
    /// the row's last n−1 tokens.
    fn bans_by_map(row: &[u32], n: usize) -> Vec<u32> {
        let mut map: std::collections::HashMap<&[u32], Vec<u32>> = Default::default();
        if row.len() < n {
            return vec![];
        }
        for i in 0..=row.len() - n {
            map.entry(&row[i..i + n - 1]).or_default().push(row[i + n - 1]);
        }
        let mut b = map.get(&row[row.len() + 1 - n..]).cloned().unwrap_or_default();
        b.sort_unstable();
        b.dedup();
        b
    }

    #[test]
    fn ngram_bans_follow_the_written_out_rule() {
        let mut state = 7u64;
        for len in 0..40 {
            for n in 1..5 {
                let row: Vec<u32> = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((state >> 33) % 4) as u32
                    })
                    .collect();
                assert_eq!(no_repeat_ngram_bans(&row, n), bans_by_map(&row, n), "{row:?} n={n}");
            }
        }
        // A run of one token bans it (the last window matches its own suffix).
        assert_eq!(no_repeat_ngram_bans(&[5, 5, 5], 3), [5]);
        assert_eq!(no_repeat_ngram_bans(&[5, 6], 1), [5, 6]);
    }

    #[test]
    fn processors_apply_at_their_positions() {
        let dev = Device::Cpu;
        let limits = SearchLimits {
            min_new_tokens: 2,
            forced_bos_token_id: Some(3),
            forced_eos_token_id: Some(vec![1, 2]),
            ..SearchLimits::new(4, vec![1], 0)
        };
        let p = LogitsProcessors::new(&limits, 2, 1, 5, &dev).unwrap();
        let scores = Tensor::new(&[[0.5f32, 0.1, 0.2, 0.3, 0.4]], &dev).unwrap();
        let run = |row: &[u32]| -> Vec<f32> {
            let rows = [row.to_vec()];
            p.apply(&scores, 1, |r| &rows[r]).unwrap().squeeze(0).unwrap().to_vec1().unwrap()
        };
        let inf = f32::NEG_INFINITY;
        // Length 1: forced BOS (after min-length, which it overrides).
        assert_eq!(run(&[0]), [inf, inf, inf, 0.0, inf]);
        // Length 2 (1 generated < 2): EOS banned, and 0→3 is not followed by 3 yet.
        assert_eq!(run(&[0, 3]), [0.5, inf, 0.2, 0.3, 0.4]);
        // Length 3: 2 generated; bigram (3, 4) seen, so after 3 the token 4 is banned.
        assert_eq!(run(&[3, 4, 3]), [0.5, 0.1, 0.2, 0.3, inf]);
        // Length 4 = max_length − 1: forced EOS (either id).
        assert_eq!(run(&[0, 3, 4, 2]), [inf, 0.0, 0.0, inf, inf]);
        assert!(
            LogitsProcessors::new(&SearchLimits { forced_bos_token_id: Some(5), ..limits }, 0, 1, 5, &dev).is_err()
        );
    }
}
