//! The image models: a Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16
//! Words", §3.1: patches, a class token and learned positions into a pre-norm encoder, eq. 1–4)
//! and CLIP's dual encoder (Radford et al. 2021, "Learning Transferable Visual Models From
//! Natural Language Supervision", §2.3–2.4: a causal text tower pooled at its end-of-text token
//! and a ViT image tower, each linearly projected into a joint space where the scaled cosine
//! similarity is the image–text logit, Figure 3).

use candle_core::{DType, Device, Module, Tensor};
use tcat_attention::AttentionMask;
use tcat_blocks::{Embeddings, Norm, PatchEmbeddings, Pooler, SentencePooling, Stack};
use tcat_core::{Error, Linear, Result};
use tcat_position::sequential_position_ids;

use crate::Batch;

/// How an image tower turns its tokens into one vector per image.
#[derive(Debug, Clone)]
pub enum ClassPooling {
    /// No pooled output (a ViT saved without its pooler).
    None,
    /// ViT's (and BERT's) pooler: `tanh(W · h_cls + b)` on the class token's final state.
    Dense(Pooler),
    /// CLIP's image embedding before projection: the class token's state through the tower's
    /// final LayerNorm (`post_layernorm`; the other tokens are returned unnormalised).
    Norm(Norm),
}

/// A Vision Transformer: [`PatchEmbeddings`] (class token and learned positions), an optional
/// norm before the layers (CLIP's `pre_layrnorm`), the layer [`Stack`] and its class-token
/// pooling ([`ClassPooling`]).
///
/// ```
/// use tcat_models::spec::*;
/// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vit");
/// let source = tcat_models::ModelSource::resolve(dir.to_str().unwrap())?;
/// let model = tcat_models::Model::load(&source, &candle_core::Device::Cpu, candle_core::DType::F32)?;
/// let vit = model.as_vision().unwrap();
/// assert_eq!(vit.image_size(), Some(32));
/// let pixels = candle_core::Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &candle_core::Device::Cpu)?;
/// assert_eq!(vit.hidden_states(&pixels)?.dims(), [1, 17, 32]);
/// # Ok::<(), tcat_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct VisionModel {
    patches: PatchEmbeddings,
    pre_norm: Option<Norm>,
    stack: Stack,
    pooling: ClassPooling,
    classifier: Option<Linear>,
}

impl VisionModel {
    /// A vision tower from its blocks.
    pub fn new(patches: PatchEmbeddings, pre_norm: Option<Norm>, stack: Stack, pooling: ClassPooling) -> Self {
        Self { patches, pre_norm, stack, pooling, classifier: None }
    }

    /// Adds an image classifier `[labels, hidden]` on the class token's final state
    /// (`ViTForImageClassification`'s `classifier`, Dosovitskiy et al. 2020, eq. 4).
    pub fn with_classifier(mut self, classifier: Linear) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Whether the checkpoint has an image classifier.
    pub fn has_classifier(&self) -> bool {
        self.classifier.is_some()
    }

    /// Class logits `[batch, labels]` from hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let classifier = self
            .classifier
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("this checkpoint has no image classifier (`classifier`)".into()))?;
        Ok(classifier.forward(&hidden.narrow(1, 0, 1)?.squeeze(1)?)?)
    }

    /// The square image side the position table is for.
    pub fn image_size(&self) -> Option<usize> {
        self.patches.image_size()
    }

    /// Patch side in pixels.
    pub fn patch_size(&self) -> usize {
        self.patches.patch_size()
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.patches.hidden_size()
    }

    /// Colour channels the tower reads.
    pub fn channels(&self) -> usize {
        self.patches.channels()
    }

    /// Whether the tower has a pooled output.
    pub fn has_pooler(&self) -> bool {
        !matches!(self.pooling, ClassPooling::None)
    }

    /// The last hidden states `[batch, 1 + patches, hidden]` of `pixel_values` `[batch,
    /// channels, H, W]` (already preprocessed), as `ViTModel` / `CLIPVisionModel` return them.
    /// An image of another size than the position table's, a tensor of another rank or an
    /// integer dtype is an error naming what was expected.
    pub fn hidden_states(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let x = self.patches.forward(pixel_values).map_err(|e| Error::InvalidInput(format!("pixel_values: {e}")))?;
        let x = match &self.pre_norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
        Ok(self.stack.forward(&x, &AttentionMask::none(), None, None)?)
    }

    /// The pooled output `[batch, hidden]` from hidden states (ViT's `pooler_output`, CLIP's
    /// vision `pooler_output`).
    pub fn pooled(&self, hidden: &Tensor) -> Result<Tensor> {
        let class = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(match &self.pooling {
            ClassPooling::None => return Err(Error::InvalidInput("this checkpoint has no pooler".into())),
            ClassPooling::Dense(pooler) => pooler.forward(hidden)?,
            ClassPooling::Norm(norm) => norm.forward(&class)?,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.patches.device()
    }
}

/// Where CLIP's text tower takes the sentence vector (`CLIPTextTransformer`'s rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EosPooling {
    /// The first occurrence of this end-of-text id in each row (position 0 when a row has none),
    /// for configs whose `eos_token_id` is not 2.
    FirstEos(u32),
    /// The first position of each row's highest token id: checkpoints saved with the legacy
    /// `eos_token_id` 2, where the end-of-text token was the last of the vocabulary.
    HighestId,
}

impl EosPooling {
    /// The rule for a config's `eos_token_id`, as transformers applies it.
    ///
    /// ```
    /// use tcat_models::EosPooling;
    /// assert_eq!(EosPooling::for_eos(2), EosPooling::HighestId);
    /// assert_eq!(EosPooling::for_eos(49407), EosPooling::FirstEos(49407));
    /// ```
    pub fn for_eos(eos_token_id: u32) -> Self {
        if eos_token_id == 2 { Self::HighestId } else { Self::FirstEos(eos_token_id) }
    }

    /// The pooled position of each row of `ids`.
    pub fn positions(self, ids: &[Vec<u32>]) -> Vec<usize> {
        ids.iter()
            .map(|row| match self {
                Self::FirstEos(eos) => row.iter().position(|&t| t == eos).unwrap_or(0),
                Self::HighestId => {
                    let max = row.iter().copied().max().unwrap_or(0);
                    row.iter().position(|&t| t == max).unwrap_or(0)
                }
            })
            .collect()
    }
}

/// CLIP's text tower: token and learned position embeddings, causal pre-norm layers with a
/// final LayerNorm, pooled at the end-of-text token.
#[derive(Debug, Clone)]
pub struct TextTower {
    embeddings: Embeddings,
    stack: Stack,
    causal: bool,
    pooling: EosPooling,
    pad_token_id: u32,
}

impl TextTower {
    /// A text tower from its blocks; `causal` masks future tokens (CLIP's text tower does).
    pub fn new(embeddings: Embeddings, stack: Stack, causal: bool, pooling: EosPooling, pad_token_id: u32) -> Self {
        Self { embeddings, stack, causal, pooling, pad_token_id }
    }

    /// The last hidden states `[batch, seq, hidden]` (after the final norm), as
    /// `CLIPTextModel` returns them; padding (the batch's attention mask) is masked.
    pub fn hidden_states(&self, batch: &Batch) -> Result<Tensor> {
        batch.check_vocab(self.embeddings.vocab_size())?;
        let (b, s) = batch.input_ids().dims2()?;
        let max = self.embeddings.max_positions().unwrap_or(usize::MAX);
        if s > max {
            return Err(Error::SequenceTooLong {
                len: s,
                max,
                limit: "the text position table (max_position_embeddings)".into(),
            });
        }
        let positions = sequential_position_ids(b, s, 0, batch.input_ids().device())?;
        let x = self.embeddings.forward(batch.input_ids(), Some(&positions), None)?;
        let mut mask = if self.causal { AttentionMask::causal() } else { AttentionMask::none() };
        if batch.is_padded() {
            mask = mask.with_key_padding(batch.attention_mask().clone());
        }
        Ok(self.stack.forward(&x, &mask, Some(&positions), None)?)
    }

    /// The pooled states `[batch, hidden]`: each row's state at its [`EosPooling`] position.
    pub fn pooled(&self, batch: &Batch, hidden: &Tensor) -> Result<Tensor> {
        let ids: Vec<Vec<u32>> = batch.input_ids().to_dtype(DType::U32)?.to_device(&Device::Cpu)?.to_vec2()?;
        let (b, s, h) = hidden.dims3()?;
        let flat: Vec<u32> =
            self.pooling.positions(&ids).iter().enumerate().map(|(r, &p)| (r * s + p) as u32).collect();
        let index = Tensor::new(flat, hidden.device())?;
        Ok(hidden.reshape((b * s, h))?.index_select(&index, 0)?)
    }

    /// The pooling rule.
    pub fn pooling(&self) -> EosPooling {
        self.pooling
    }

    /// The id that pads batches.
    pub fn pad_token_id(&self) -> u32 {
        self.pad_token_id
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.vocab_size()
    }

    /// Longest sequence the position table covers.
    pub fn max_sequence_len(&self) -> usize {
        self.embeddings.max_positions().unwrap_or(usize::MAX)
    }
}

/// CLIP (Radford et al. 2021): a [`TextTower`] and a [`VisionModel`], each projected without
/// bias into a joint space; `logit_scale` is the log of the learned temperature's inverse.
#[derive(Debug, Clone)]
pub struct DualEncoderModel {
    text: TextTower,
    vision: VisionModel,
    text_projection: Linear,
    visual_projection: Linear,
    logit_scale: Tensor,
}

impl DualEncoderModel {
    /// A dual encoder from its towers, projections and the scalar `logit_scale`.
    pub fn new(
        text: TextTower,
        vision: VisionModel,
        text_projection: Linear,
        visual_projection: Linear,
        logit_scale: Tensor,
    ) -> Self {
        Self { text, vision, text_projection, visual_projection, logit_scale }
    }

    /// The text tower.
    pub fn text(&self) -> &TextTower {
        &self.text
    }

    /// The image tower.
    pub fn vision(&self) -> &VisionModel {
        &self.vision
    }

    /// Width of the joint space.
    pub fn projection_dim(&self) -> usize {
        self.text_projection.out_features()
    }

    /// The projected text features `[batch, dim]` (`CLIPModel.get_text_features`, not normalised).
    pub fn text_features(&self, batch: &Batch) -> Result<Tensor> {
        let hidden = self.text.hidden_states(batch)?;
        let pooled = self.text.pooled(batch, &hidden)?;
        Ok(self.text_projection.forward(&pooled)?)
    }

    /// The projected image features `[batch, dim]` (`CLIPModel.get_image_features`, not
    /// normalised) of preprocessed `pixel_values` `[batch, 3, H, W]`.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let hidden = self.vision.hidden_states(pixel_values)?;
        let pooled = self.vision.pooled(&hidden)?;
        Ok(self.visual_projection.forward(&pooled)?)
    }

    /// L2-normalised text embeddings `[batch, dim]` (`CLIPModel`'s `text_embeds`).
    pub fn text_embeds(&self, batch: &Batch) -> Result<Tensor> {
        Ok(SentencePooling::l2_normalize(&self.text_features(batch)?)?)
    }

    /// L2-normalised image embeddings `[batch, dim]` (`CLIPModel`'s `image_embeds`).
    pub fn image_embeds(&self, pixel_values: &Tensor) -> Result<Tensor> {
        Ok(SentencePooling::l2_normalize(&self.image_features(pixel_values)?)?)
    }

    /// `exp(logit_scale)`, the factor on the cosine similarities.
    pub fn logit_scale(&self) -> Result<f32> {
        Ok(self.logit_scale.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.exp()?.to_scalar::<f32>()?)
    }

    /// `logits_per_image` `[images, texts]` = `exp(logit_scale) · image_embeds · text_embedsᵀ`
    /// from normalised embeddings (its transpose is `logits_per_text`); a softmax over the texts
    /// gives zero-shot classification probabilities.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Result<Tensor> {
        let scale = self.logit_scale.to_dtype(image_embeds.dtype())?.exp()?;
        Ok(image_embeds.matmul(&text_embeds.t()?)?.broadcast_mul(&scale)?)
    }

    /// The id that pads text batches.
    pub fn pad_token_id(&self) -> u32 {
        self.text.pad_token_id()
    }
}
