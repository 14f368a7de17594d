//! The input embedding: token vectors plus absolute positions and segments, then an optional
//! norm (BERT, Devlin et al. 2018, §3.2 and Figure 2).

use candle_core::{Result, Tensor};
use tcat_position::AbsolutePositions;

use crate::Norm;

/// `norm(word[ids] + position[pos] + token_type[types])`, each part optional but the first.
///
/// BERT uses all three parts and a LayerNorm; DistilBERT drops the token types; GPT-2 drops
/// token types and the norm. Position ids are the caller's: each family has its own rule (see
/// `tcat_position`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_blocks::Embeddings;
/// let dev = Device::Cpu;
/// let word = Tensor::arange(0f32, 6., &dev).unwrap().reshape((3, 2)).unwrap();
/// let emb = Embeddings::new(word, None, None, None);
/// let ids = Tensor::new(&[[2u32, 0]], &dev).unwrap();
/// assert_eq!(emb.forward(&ids, None, None).unwrap().to_vec3::<f32>().unwrap(), [[[4., 5.], [0., 1.]]]);
/// ```
#[derive(Debug, Clone)]
pub struct Embeddings {
    word: Tensor,
    position: Option<AbsolutePositions>,
    token_type: Option<Tensor>,
    norm: Option<Norm>,
    word_scale: Option<f64>,
}

impl Embeddings {
    /// Embeddings from the `[vocab, dim]` word table and the optional parts.
    pub fn new(
        word: Tensor,
        position: Option<AbsolutePositions>,
        token_type: Option<Tensor>,
        norm: Option<Norm>,
    ) -> Self {
        Self { word, position, token_type, norm, word_scale: None }
    }

    /// Multiplies the word vectors by `scale` before the positions are added (CTRL and the
    /// original Transformer scale by `√d_model`, Vaswani et al. 2017, §3.4).
    pub fn with_word_scale(mut self, scale: f64) -> Self {
        self.word_scale = Some(scale);
        self
    }

    /// The `[vocab, dim]` word table (shared with a tied output head).
    pub fn word_table(&self) -> &Tensor {
        &self.word
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.word.dims()[0]
    }

    /// The most positions the position table covers, if it has one.
    pub fn max_positions(&self) -> Option<usize> {
        self.position.as_ref().map(AbsolutePositions::max_positions)
    }

    /// Embeds `input_ids` `[batch, seq]` at `position_ids` (required when there is a position
    /// table) with optional `token_type_ids` (zeros when absent and there is a table).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        position_ids: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let mut x = self.word.index_select(&input_ids.flatten_all()?, 0)?.reshape((b, s, ()))?;
        if let Some(scale) = self.word_scale {
            x = (x * scale)?;
        }
        if let Some(position) = &self.position {
            let Some(ids) = position_ids else {
                candle_core::bail!("embeddings: this model needs position ids");
            };
            x = (x + position.forward(ids)?)?;
        }
        if let Some(table) = &self.token_type {
            let types = match token_type_ids {
                Some(t) => table.index_select(&t.flatten_all()?, 0)?.reshape((b, s, ()))?,
                None => table.get(0)?.reshape((1, 1, ()))?.broadcast_as(x.shape())?,
            };
            x = x.broadcast_add(&types)?;
        }
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}

/// Embeds `input_ids` `[batch, seq]` at positions `0..seq` without token types: the
/// single-input path of candle's [`Module`](candle_core::Module).
impl candle_core::Module for Embeddings {
    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let positions = match self.position {
            Some(_) => {
                let (b, s) = input_ids.dims2()?;
                Some(tcat_position::sequential_position_ids(b, s, 0, input_ids.device())?)
            }
            None => None,
        };
        Embeddings::forward(self, input_ids, positions.as_ref(), None)
    }
}
