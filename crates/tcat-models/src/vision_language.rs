//! Vision-language models: an image tower feeding a text decoder, in the two ways the catalog
//! names.
//!
//! - **Prefix embeddings** (PaLM-E, Driess et al. 2023, "PaLM-E: An Embodied Multimodal
//!   Language Model", §3 and §4.1): the image tower's output tokens, projected by one affine map
//!   to the decoder's token width, are placed before the text's word vectors, and the decoder
//!   runs causally over the joint sequence. The decoder is unchanged: the input path
//!   ([`DecoderModel::hidden_states_from_vectors`]) takes vectors instead of token ids.
//! - **Attentional pooling and cross-attention** (CoCa, Yu et al. 2022, "CoCa: Contrastive
//!   Captioners are Image-Text Foundation Models", §3.2): an attentional pooler turns the image
//!   tokens into a fixed number of tokens; the decoder's lower, unimodal layers see the text
//!   only, its upper, multimodal layers also cross-attend to the pooled tokens. (CoCa's
//!   contrastive half, a one-query pooler against the text's final token, is not built: this
//!   model is its captioning path.)
//!
//! Logits are returned for the text positions only, `[batch, seq, vocab]`: the image tokens
//! are inputs, never predicted.

use candle_core::{Module, Tensor};
use tcat_attention::AttentionMask;
use tcat_blocks::AttentionalPooler;
use tcat_core::{Error, Linear, Result};
use tcat_position::sequential_position_ids;

use crate::{Batch, DecoderModel, VisionModel};

/// How the image tokens reach the decoder.
#[derive(Debug, Clone)]
pub enum ImageConnection {
    /// Projected to the decoder's token width and placed before the text (PaLM-E).
    Prefix(Linear),
    /// Pooled into a fixed number of tokens that the decoder's cross-attending layers read
    /// (CoCa).
    Pooled(Box<AttentionalPooler>),
}

/// An image tower, its connection and a text decoder.
#[derive(Debug, Clone)]
pub struct VisionLanguageModel {
    image: VisionModel,
    connection: ImageConnection,
    decoder: DecoderModel,
}

impl VisionLanguageModel {
    /// Assembles the model. A prefix connection needs a decoder none of whose layers
    /// cross-attend; a pooled connection needs at least one that does.
    pub fn new(image: VisionModel, connection: ImageConnection, decoder: DecoderModel) -> Result<Self> {
        let crossing = decoder.stack().layers().iter().filter(|l| l.cross_attention().is_some()).count();
        match (&connection, crossing) {
            (ImageConnection::Prefix(_), 0) | (ImageConnection::Pooled(_), 1..) => {}
            (ImageConnection::Prefix(_), n) => {
                return Err(Error::InvalidInput(format!(
                    "a prefix-embedding decoder reads the image as input tokens; {n} of its layers cross-attend"
                )));
            }
            (ImageConnection::Pooled(_), _) => {
                return Err(Error::InvalidInput(
                    "pooled image tokens are read by cross-attention; no decoder layer cross-attends".into(),
                ));
            }
        }
        Ok(Self { image, connection, decoder })
    }

    /// The image tower.
    pub fn image(&self) -> &VisionModel {
        &self.image
    }

    /// The text decoder.
    pub fn decoder(&self) -> &DecoderModel {
        &self.decoder
    }

    /// How the image reaches the decoder.
    pub fn connection(&self) -> &ImageConnection {
        &self.connection
    }

    /// The image tokens the decoder reads from `pixel_values` `[batch, channels, H, W]`: the
    /// projected prefix `[batch, image tokens, embedding width]` or the pooled tokens `[batch,
    /// queries, hidden]`.
    pub fn image_tokens(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let hidden = self.image.hidden_states(pixel_values)?;
        Ok(match &self.connection {
            ImageConnection::Prefix(projection) => projection.forward(&hidden)?,
            ImageConnection::Pooled(pooler) => pooler.forward(&hidden, None)?,
        })
    }

    /// Logits `[batch, seq, vocab]` at the text positions of a right-padded `batch`, each row
    /// conditioned on its image (`pixel_values` has one image per row).
    pub fn logits(&self, pixel_values: &Tensor, batch: &Batch) -> Result<Tensor> {
        batch.check_vocab(self.decoder.vocab_size())?;
        let (b, s) = batch.input_ids().dims2()?;
        let images = pixel_values.dims().first().copied().unwrap_or(0);
        if images != b {
            return Err(Error::InvalidInput(format!(
                "{images} image(s) for {b} text row(s): a vision-language model reads one image per row"
            )));
        }
        if s == 0 {
            return Err(Error::InvalidInput("the text input is empty".into()));
        }
        let tokens = self.image_tokens(pixel_values)?;
        let device = batch.input_ids().device();
        let words = self.decoder.word_vectors(batch.input_ids())?;
        let hidden = match &self.connection {
            ImageConnection::Prefix(_) => {
                let n = tokens.dim(1)?;
                self.decoder.check_length(n + s)?;
                let vectors = Tensor::cat(&[&tokens.to_dtype(words.dtype())?, &words], 1)?;
                let positions = sequential_position_ids(b, n + s, 0, device)?;
                let mut mask = AttentionMask::causal();
                if batch.is_padded() {
                    let image = Tensor::ones((b, n), batch.attention_mask().dtype(), device)?;
                    mask = mask.with_key_padding(Tensor::cat(&[&image, batch.attention_mask()], 1)?);
                }
                let h = self.decoder.hidden_states_from_vectors(&vectors, &positions, &mask, None, None)?;
                h.narrow(1, n, s)?
            }
            ImageConnection::Pooled(_) => {
                self.decoder.check_length(s)?;
                let memory = self.decoder.stack().encoder_memory(&tokens.to_dtype(words.dtype())?, None)?;
                let positions = sequential_position_ids(b, s, 0, device)?;
                let mut mask = AttentionMask::causal();
                if batch.is_padded() {
                    mask = mask.with_key_padding(batch.attention_mask().clone());
                }
                self.decoder.hidden_states_from_vectors(&words, &positions, &mask, None, Some(&memory))?
            }
        };
        self.decoder.head_logits(&hidden)
    }

    /// The id used to pad batches.
    pub fn pad_token_id(&self) -> u32 {
        self.decoder.pad_token_id()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.decoder.vocab_size()
    }
}
