//! The input embedding: token vectors plus absolute positions, segments and languages, then an
//! optional norm (BERT, Devlin et al. 2018, §3.2 and Figure 2; XLM's language embeddings,
//! Lample & Conneau 2019, §3.3) and an optional projection to the hidden width (ALBERT's
//! factorised embedding parameterisation, Lan et al. 2019, §3.1; ELECTRA, Clark et al. 2020,
//! §3.2), or a projection before the norm (DeBERTa's `embed_proj`, He et al. 2021).

use candle_core::{Module, Result, Tensor};
use tcat_core::Linear;
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
    /// The `[vocab, dim]` table, held as a projection so that a quantized table shared with a
    /// tied head is looked up row by row without a dense copy.
    word: Linear,
    device: candle_core::Device,
    position: Option<AbsolutePositions>,
    token_type: Option<Tensor>,
    norm: Option<Norm>,
    word_scale: Option<f64>,
    language: Option<Tensor>,
    projection: Option<(Linear, ProjectionPlace)>,
}

/// Where an [`Embeddings`] projection to the hidden width sits relative to its norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProjectionPlace {
    /// The normalised sum is projected (ALBERT, ELECTRA).
    AfterNorm,
    /// The sum is projected, then normalised at the hidden width (DeBERTa).
    BeforeNorm,
}

impl Embeddings {
    /// Embeddings from the `[vocab, dim]` word table (a tensor, or a projection whose weight
    /// rows are the table, e.g. a quantized table shared with a tied head: see
    /// [`Linear::weight_rows`]) and the optional parts.
    pub fn new(
        word: impl Into<Linear>,
        position: Option<AbsolutePositions>,
        token_type: Option<Tensor>,
        norm: Option<Norm>,
    ) -> Self {
        let word = word.into();
        let device = word.device();
        Self { word, device, position, token_type, norm, word_scale: None, language: None, projection: None }
    }

    /// Adds a `[languages, dim]` language table, looked up by the language ids of
    /// [`forward_with_languages`](Self::forward_with_languages) (XLM, Lample & Conneau 2019,
    /// §3.3). Without language ids nothing is added, as in the reference.
    pub fn with_languages(mut self, table: Tensor) -> Self {
        self.language = Some(table);
        self
    }

    /// Projects the (normalised) sum from the table width E to the hidden width H: ALBERT's
    /// factorised embeddings (Lan et al. 2019, §3.1, O(V·E + E·H) parameters instead of
    /// O(V·H)) and ELECTRA's `embeddings_project`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::Embeddings;
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let word = Tensor::new(&[[1f32, 2.], [3., 4.]], &dev).unwrap();
    /// // E = 2 to H = 3: [a, b] -> [a, b, a + b]
    /// let w = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev).unwrap();
    /// let emb = Embeddings::new(word, None, None, None).with_projection(Linear::new(w, None));
    /// let ids = Tensor::new(&[[1u32]], &dev).unwrap();
    /// assert_eq!(emb.forward(&ids, None, None).unwrap().to_vec3::<f32>().unwrap(), [[[3., 4., 7.]]]);
    /// ```
    pub fn with_projection(mut self, projection: Linear) -> Self {
        self.projection = Some((projection, ProjectionPlace::AfterNorm));
        self
    }

    /// Projects the sum from the table width E to the hidden width H *before* the norm, which
    /// then normalises H-wide vectors: DeBERTa's `embed_proj` (He et al. 2021, used when its
    /// `embedding_size` differs from `hidden_size`).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::{Embeddings, Norm};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let word = Tensor::new(&[[1f32, 2.], [3., 4.]], &dev).unwrap();
    /// // E = 2 to H = 3: [a, b] -> [a, b, a + b], then an RMS norm over the three.
    /// let w = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev).unwrap();
    /// let norm = Norm::rms_norm(Tensor::ones(3, candle_core::DType::F32, &dev).unwrap(), 1e-12);
    /// let emb = Embeddings::new(word, None, None, Some(norm)).with_projection_before_norm(Linear::new(w, None));
    /// let out = emb.forward(&Tensor::new(&[[1u32]], &dev).unwrap(), None, None).unwrap();
    /// let rms = ((9f32 + 16. + 49.) / 3.).sqrt();
    /// let want = [3. / rms, 4. / rms, 7. / rms];
    /// let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    /// assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6));
    /// ```
    pub fn with_projection_before_norm(mut self, projection: Linear) -> Self {
        self.projection = Some((projection, ProjectionPlace::BeforeNorm));
        self
    }

    /// Rows of the language table (0 without one).
    pub fn languages(&self) -> usize {
        self.language.as_ref().map_or(0, |t| t.dims()[0])
    }

    /// Multiplies the word vectors by `scale` before the positions are added (CTRL and the
    /// original Transformer scale by `√d_model`, Vaswani et al. 2017, §3.4).
    pub fn with_word_scale(mut self, scale: f64) -> Self {
        self.word_scale = Some(scale);
        self
    }

    /// The `[vocab, dim]` word table when it is held dense (`None` when quantized).
    pub fn word_table(&self) -> Option<&Tensor> {
        self.word.weight()
    }

    /// The word table as a projection (its weight rows are the token vectors): what a tied
    /// output head shares.
    pub fn word_projection(&self) -> &Linear {
        &self.word
    }

    /// The device of the word table.
    pub fn device(&self) -> &candle_core::Device {
        &self.device
    }

    /// The dtype of the token vectors (f32 for a quantized table).
    pub fn dtype(&self) -> candle_core::DType {
        self.word.dtype()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.word.out_features()
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
        self.forward_with_languages(input_ids, position_ids, token_type_ids, None)
    }

    /// [`forward`](Self::forward) with the language id `[batch, seq]` of every token, whose
    /// vectors are added before the norm (XLM). Ids outside the language table are an error.
    pub fn forward_with_languages(
        &self,
        input_ids: &Tensor,
        position_ids: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
        language_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let words = self.words(input_ids)?;
        self.forward_vectors(&words, position_ids, token_type_ids, language_ids)
    }

    /// The (scaled) token vectors `[batch, seq, dim]` of `input_ids` `[batch, seq]`, before
    /// positions, segments, languages, norm and projection are applied.
    pub fn words(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let x = self.word.weight_rows(input_ids)?.reshape((b, s, ()))?;
        match self.word_scale {
            Some(scale) => x * scale,
            None => Ok(x),
        }
    }

    /// [`forward_with_languages`](Self::forward_with_languages) from token vectors `[batch,
    /// seq, dim]` instead of ids: positions, segments, languages, norm and projection applied to
    /// vectors that need not come from the table. A multimodal decoder places projected image
    /// tokens among the [`words`](Self::words) this way (PaLM-E, Driess et al. 2023, §3).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::Embeddings;
    /// let dev = Device::Cpu;
    /// let word = Tensor::arange(0f32, 6., &dev).unwrap().reshape((3, 2)).unwrap();
    /// let emb = Embeddings::new(word, None, None, None);
    /// let ids = Tensor::new(&[[2u32, 0]], &dev).unwrap();
    /// let via_ids = emb.forward(&ids, None, None).unwrap();
    /// let via_vectors = emb.forward_vectors(&emb.words(&ids).unwrap(), None, None, None).unwrap();
    /// assert_eq!(via_ids.to_vec3::<f32>().unwrap(), via_vectors.to_vec3::<f32>().unwrap());
    /// ```
    pub fn forward_vectors(
        &self,
        vectors: &Tensor,
        position_ids: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
        language_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, s, _) = vectors.dims3()?;
        let mut x = vectors.clone();
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
        if let Some(ids) = language_ids {
            let Some(table) = &self.language else {
                candle_core::bail!("embeddings: language ids given to a model without a language table");
            };
            if ids.dims() != [b, s] {
                candle_core::bail!(
                    "embeddings: language ids have shape {:?}, expected the token ids' {:?}",
                    ids.dims(),
                    [b, s]
                );
            }
            let ids = ids.flatten_all()?;
            let max = ids.to_dtype(candle_core::DType::U32)?.max(0)?.to_scalar::<u32>()?;
            if max as usize >= table.dims()[0] {
                candle_core::bail!(
                    "embeddings: language id {max} is outside the language table ({} rows)",
                    table.dims()[0]
                );
            }
            x = (x + table.index_select(&ids, 0)?.reshape((b, s, ()))?)?;
        }
        if let Some((projection, ProjectionPlace::BeforeNorm)) = &self.projection {
            x = projection.forward(&x)?;
        }
        if let Some(norm) = &self.norm {
            x = norm.forward(&x)?;
        }
        match &self.projection {
            Some((projection, ProjectionPlace::AfterNorm)) => projection.forward(&x),
            _ => Ok(x),
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
