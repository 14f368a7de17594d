//! A batch of token-id rows padded to one length, with its attention mask.

use candle_core::{Device, Tensor};
use tcat_core::{Error, Result};

/// Rows of token ids padded into `[batch, seq]` tensors.
///
/// ```
/// use tcat_models::Batch;
/// let dev = candle_core::Device::Cpu;
/// let b = Batch::right_padded(&[vec![5, 6, 7], vec![8]], None, 0, &dev).unwrap();
/// assert_eq!(b.input_ids().to_vec2::<u32>().unwrap(), [[5, 6, 7], [8, 0, 0]]);
/// assert_eq!(b.attention_mask().to_vec2::<u32>().unwrap(), [[1, 1, 1], [1, 0, 0]]);
/// let l = Batch::left_padded(&[vec![5, 6, 7], vec![8]], 0, &dev).unwrap();
/// assert_eq!(l.input_ids().to_vec2::<u32>().unwrap(), [[5, 6, 7], [0, 0, 8]]);
/// ```
#[derive(Debug, Clone)]
pub struct Batch {
    input_ids: Tensor,
    attention_mask: Tensor,
    token_type_ids: Option<Tensor>,
    language_ids: Option<Tensor>,
    lengths: Vec<usize>,
    max_id: u32,
    max_type_id: u32,
    left: bool,
}

impl Batch {
    /// Pads rows on the right with `pad_id` (encoders, and causal forward passes). With
    /// `token_types`, one row per input row of the same length.
    pub fn right_padded(
        rows: &[Vec<u32>],
        token_types: Option<&[Vec<u32>]>,
        pad_id: u32,
        device: &Device,
    ) -> Result<Self> {
        Self::build(rows, token_types, pad_id, false, device)
    }

    /// Pads rows on the left with `pad_id` (batched generation, so every row ends at the last
    /// column).
    pub fn left_padded(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Self> {
        Self::build(rows, None, pad_id, true, device)
    }

    /// Pads rows on the left with `pad_id`, with token types padded alike (XLNet's tokenizer
    /// pads on the left).
    ///
    /// ```
    /// use tcat_models::Batch;
    /// let dev = candle_core::Device::Cpu;
    /// let b = Batch::left_padded_with_types(&[vec![5, 6], vec![7]], &[vec![0, 1], vec![1]], 0, &dev).unwrap();
    /// assert_eq!(b.token_type_ids().unwrap().to_vec2::<u32>().unwrap(), [[0, 1], [0, 1]]);
    /// ```
    pub fn left_padded_with_types(
        rows: &[Vec<u32>],
        token_types: &[Vec<u32>],
        pad_id: u32,
        device: &Device,
    ) -> Result<Self> {
        Self::build(rows, Some(token_types), pad_id, true, device)
    }

    fn build(
        rows: &[Vec<u32>],
        token_types: Option<&[Vec<u32>]>,
        pad_id: u32,
        left: bool,
        device: &Device,
    ) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::InvalidInput("the batch has no rows".into()));
        }
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            return Err(Error::InvalidInput(format!("row {i} of the batch has no tokens")));
        }
        if let Some(types) = token_types {
            if types.len() != rows.len() {
                return Err(Error::InvalidInput(format!(
                    "{} rows of token type ids for {} rows of ids",
                    types.len(),
                    rows.len()
                )));
            }
            for (i, (t, r)) in types.iter().zip(rows).enumerate() {
                if t.len() != r.len() {
                    return Err(Error::InvalidInput(format!(
                        "row {i}: {} token type ids for {} ids",
                        t.len(),
                        r.len()
                    )));
                }
            }
        }
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let pad = |row: &[u32], fill: u32| -> Vec<u32> {
            let padding = std::iter::repeat_n(fill, seq - row.len());
            if left {
                padding.chain(row.iter().copied()).collect()
            } else {
                row.iter().copied().chain(padding).collect()
            }
        };
        let ids: Vec<u32> = rows.iter().flat_map(|r| pad(r, pad_id)).collect();
        let mask: Vec<u32> = rows.iter().flat_map(|r| pad(&vec![1; r.len()], 0)).collect();
        let shape = (rows.len(), seq);
        let token_type_ids = token_types
            .map(|types| Tensor::from_vec(types.iter().flat_map(|t| pad(t, 0)).collect::<Vec<u32>>(), shape, device))
            .transpose()?;
        Ok(Self {
            input_ids: Tensor::from_vec(ids, shape, device)?,
            attention_mask: Tensor::from_vec(mask, shape, device)?,
            token_type_ids,
            language_ids: None,
            lengths: rows.iter().map(Vec::len).collect(),
            max_id: rows.iter().flatten().copied().max().unwrap_or(0),
            max_type_id: token_types.map_or(0, |t| t.iter().flatten().copied().max().unwrap_or(0)),
            left,
        })
    }

    /// Adds a language id for every token (XLM's language embeddings): one row per input row,
    /// of the same length, padded like the ids (with language 0).
    ///
    /// ```
    /// use tcat_models::Batch;
    /// let dev = candle_core::Device::Cpu;
    /// let b = Batch::right_padded(&[vec![5, 6, 7], vec![8]], None, 0, &dev).unwrap();
    /// let b = b.with_languages(&[vec![0, 0, 1], vec![1]]).unwrap();
    /// assert_eq!(b.language_ids().unwrap().to_vec2::<u32>().unwrap(), [[0, 0, 1], [1, 0, 0]]);
    /// assert!(Batch::right_padded(&[vec![5, 6]], None, 0, &dev).unwrap().with_languages(&[vec![0]]).is_err());
    /// ```
    pub fn with_languages(mut self, languages: &[Vec<u32>]) -> Result<Self> {
        if languages.len() != self.lengths.len() {
            return Err(Error::InvalidInput(format!(
                "{} rows of language ids for {} rows of ids",
                languages.len(),
                self.lengths.len()
            )));
        }
        for (i, (l, &n)) in languages.iter().zip(&self.lengths).enumerate() {
            if l.len() != n {
                return Err(Error::InvalidInput(format!("row {i}: {} language ids for {n} ids", l.len())));
            }
        }
        let seq = self.seq_len();
        let padded: Vec<u32> = languages
            .iter()
            .flat_map(|row| {
                let padding = std::iter::repeat_n(0, seq - row.len());
                if self.left {
                    padding.chain(row.iter().copied()).collect::<Vec<_>>()
                } else {
                    row.iter().copied().chain(padding).collect()
                }
            })
            .collect();
        self.language_ids = Some(Tensor::from_vec(padded, (languages.len(), seq), self.input_ids.device())?);
        Ok(self)
    }

    /// `[batch, seq]` u32 language ids, when given.
    pub fn language_ids(&self) -> Option<&Tensor> {
        self.language_ids.as_ref()
    }

    /// `[batch, seq]` u32 token ids.
    pub fn input_ids(&self) -> &Tensor {
        &self.input_ids
    }

    /// `[batch, seq]` u32, 1 for real tokens and 0 for padding.
    pub fn attention_mask(&self) -> &Tensor {
        &self.attention_mask
    }

    /// `[batch, seq]` u32 segment ids, when given.
    pub fn token_type_ids(&self) -> Option<&Tensor> {
        self.token_type_ids.as_ref()
    }

    /// Unpadded length of each row.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Padded length.
    pub fn seq_len(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// Whether any row is shorter than the padded length.
    pub fn is_padded(&self) -> bool {
        self.lengths.iter().any(|&l| l != self.seq_len())
    }

    /// Fails with [`Error::TokenOutOfVocab`] if an id does not index a `vocab_size` table.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<()> {
        if self.max_id as usize >= vocab_size {
            return Err(Error::TokenOutOfVocab { id: self.max_id, vocab_size });
        }
        Ok(())
    }

    /// Fails if a token type id does not index a `type_vocab_size` table.
    pub fn check_token_types(&self, type_vocab_size: usize) -> Result<()> {
        if self.token_type_ids.is_some() && self.max_type_id as usize >= type_vocab_size {
            return Err(Error::InvalidInput(format!(
                "token type id {} is outside the segment vocabulary (type_vocab_size {type_vocab_size})",
                self.max_type_id
            )));
        }
        Ok(())
    }
}
