//! Conditioning one sequence on another through cross-attention.
//!
//! - [`AttentionalPooler`]: CoCa's attentional pooling (Yu et al. 2022, "CoCa: Contrastive
//!   Captioners are Image-Text Foundation Models", §3.2; the pooling by multi-head attention of
//!   Lee et al. 2019, "Set Transformer", §3.2): `n` learned queries cross-attend to the image
//!   tokens, giving `n` pooled tokens whatever the image size (1 for the contrastive embedding,
//!   256 for the captioning decoder). Queries and tokens are normalised first, as open_clip's
//!   CoCa does.
//! - [`TextConditioning`]: how a text-to-image diffusion U-Net reads its text encoder (the U-Net
//!   itself is out of scope). Latent Diffusion (Rombach et al. 2022, "High-Resolution Image
//!   Synthesis with Latent Diffusion Models", §3.3) and Imagen (Saharia et al. 2022, §2.4)
//!   cross-attend from the image tokens to the text states; GLIDE (Nichol et al. 2021, "GLIDE",
//!   §2.3 / §4) projects the text states into each attention layer's keys and values and
//!   concatenates them with the image tokens' own. Either way the result is added back to the
//!   image tokens (a residual branch behind a norm).

use candle_core::{Module, Result, Tensor};
use tcat_attention::{AttentionMask, MultiHeadAttention};
use tcat_core::Linear;

use crate::Norm;

/// CoCa's attentional pooler: `n` learned queries cross-attending to a sequence.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_attention::{MultiHeadAttention, QkvProjection};
/// use tcat_blocks::{AttentionalPooler, Norm};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let lin = || Linear::new(Tensor::randn(0f32, 0.3, (8, 8), &dev).unwrap(), None);
/// let qkv = QkvProjection::Separate { q: lin(), k: lin(), v: lin() };
/// let attention = MultiHeadAttention::new(qkv, lin(), 2, 2, 4).unwrap();
/// let norm = || Norm::layer_norm(Tensor::ones(8, DType::F32, &dev).unwrap(), Tensor::zeros(8, DType::F32, &dev).unwrap(), 1e-5);
/// let queries = Tensor::randn(0f32, 1., (3, 8), &dev).unwrap(); // 3 pooled tokens
/// let pooler = AttentionalPooler::new(queries, attention, norm(), norm()).unwrap();
/// let image_tokens = Tensor::randn(0f32, 1., (2, 10, 8), &dev).unwrap();
/// assert_eq!(pooler.forward(&image_tokens, None).unwrap().dims(), &[2, 3, 8]);
/// ```
#[derive(Debug, Clone)]
pub struct AttentionalPooler {
    queries: Tensor,
    attention: MultiHeadAttention,
    query_norm: Norm,
    context_norm: Norm,
}

impl AttentionalPooler {
    /// The pooler from its learned `queries` (`[n, width]`), a cross-attention with separate
    /// projections ([`QkvProjection::Separate`](tcat_attention::QkvProjection::Separate)), and the norms of the queries and of the pooled sequence.
    pub fn new(queries: Tensor, attention: MultiHeadAttention, query_norm: Norm, context_norm: Norm) -> Result<Self> {
        queries.dims2()?;
        Ok(Self { queries, attention, query_norm, context_norm })
    }

    /// How many tokens the pooler returns.
    pub fn num_queries(&self) -> usize {
        self.queries.dim(0).unwrap_or(0)
    }

    /// Pools `tokens` (`[batch, seq, context width]`; `keep` `[batch, seq]` non-zero at real
    /// tokens) into `[batch, n, width]`, `width` being the queries' (CoCa's image tokens may be
    /// wider or narrower than the text decoder that reads the pooled ones).
    pub fn forward(&self, tokens: &Tensor, keep: Option<&Tensor>) -> Result<Tensor> {
        let batch = tokens.dims3()?.0;
        let (n, width) = self.queries.dims2()?;
        let queries = self.query_norm.forward(&self.queries.to_dtype(tokens.dtype())?)?;
        let queries = queries.unsqueeze(0)?.broadcast_as((batch, n, width))?.contiguous()?;
        let context = self.context_norm.forward(tokens)?;
        let mask = match keep {
            Some(keep) => AttentionMask::none().with_key_padding(keep.clone()),
            None => AttentionMask::none(),
        };
        self.attention.forward_cross(&queries, &context, &mask)
    }
}

/// How image tokens read the text states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditioningKind {
    /// Cross-attention: queries from the image tokens, keys and values from the text states
    /// (Latent Diffusion's spatial transformer, Imagen).
    CrossAttention,
    /// The text states projected to keys and values and placed before the image tokens' own
    /// in a self-attention (GLIDE's `encoder_kv`).
    ConcatenatedKeys,
}

/// A text-conditioning branch of a diffusion U-Net's attention layer: `x + attend(norm(x), text)`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_attention::{MultiHeadAttention, QkvProjection};
/// use tcat_blocks::{ConditioningKind, Norm, TextConditioning};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let lin = |o, i| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
/// // Image tokens 8 wide, text states 6 wide.
/// let qkv = QkvProjection::Separate { q: lin(8, 8), k: lin(8, 6), v: lin(8, 6) };
/// let attention = MultiHeadAttention::new(qkv, lin(8, 8), 2, 2, 4).unwrap();
/// let norm = Norm::layer_norm(Tensor::ones(8, DType::F32, &dev).unwrap(), Tensor::zeros(8, DType::F32, &dev).unwrap(), 1e-5);
/// let block = TextConditioning::cross_attention(norm, attention);
/// assert_eq!(block.kind(), ConditioningKind::CrossAttention);
/// let image = Tensor::randn(0f32, 1., (1, 16, 8), &dev).unwrap();
/// let text = Tensor::randn(0f32, 1., (1, 5, 6), &dev).unwrap();
/// assert_eq!(block.forward(&image, &text, None).unwrap().dims(), &[1, 16, 8]);
/// ```
#[derive(Debug, Clone)]
pub struct TextConditioning {
    norm: Norm,
    attention: MultiHeadAttention,
    text_kv: Option<Linear>,
}

impl TextConditioning {
    /// Cross-attention from the image tokens to the text: `attention`'s separate query projection reads
    /// the image width, its key and value projections the text width.
    pub fn cross_attention(norm: Norm, attention: MultiHeadAttention) -> Self {
        Self { norm, attention, text_kv: None }
    }

    /// GLIDE's concatenated keys: `attention` (separate projections) projects the image
    /// tokens (queries, keys and values), `text_kv` the text states to `[keys | values]` (`text width → 2 · heads ·
    /// head_dim`); the image tokens attend to the text's keys, then their own.
    pub fn concatenated_keys(norm: Norm, attention: MultiHeadAttention, text_kv: Linear) -> Result<Self> {
        let width = attention.num_kv_heads() * attention.head_dim();
        if text_kv.out_features() != 2 * width {
            candle_core::bail!(
                "text conditioning: the text projection gives {} features, expected keys and values of {width} each",
                text_kv.out_features()
            );
        }
        Ok(Self { norm, attention, text_kv: Some(text_kv) })
    }

    /// Width of the image tokens.
    pub fn image_width(&self) -> usize {
        self.attention.num_heads() * self.attention.head_dim()
    }

    /// Which way the image tokens read the text.
    pub fn kind(&self) -> ConditioningKind {
        match self.text_kv {
            None => ConditioningKind::CrossAttention,
            Some(_) => ConditioningKind::ConcatenatedKeys,
        }
    }

    /// The image tokens `x` (`[batch, tokens, width]`) conditioned on `text`
    /// (`[batch, text_len, text_width]`; `text_keep` `[batch, text_len]` non-zero at real tokens).
    pub fn forward(&self, x: &Tensor, text: &Tensor, text_keep: Option<&Tensor>) -> Result<Tensor> {
        let (batch, tokens, _) = x.dims3()?;
        let (text_batch, text_len, _) = text.dims3()?;
        if text_batch != batch {
            candle_core::bail!("text conditioning: {text_batch} rows of text for {batch} rows of image tokens");
        }
        let h = self.norm.forward(x)?;
        let branch = match &self.text_kv {
            None => {
                let mask = match text_keep {
                    Some(keep) => AttentionMask::none().with_key_padding(keep.clone()),
                    None => AttentionMask::none(),
                };
                self.attention.forward_cross(&h, text, &mask)?
            }
            Some(text_kv) => {
                let (heads, head_dim) = (self.attention.num_kv_heads(), self.attention.head_dim());
                let split = |t: Tensor| -> Result<Tensor> {
                    t.reshape((batch, text_len, heads, head_dim))?.transpose(1, 2)?.contiguous()
                };
                let kv = text_kv.forward(text)?;
                let width = heads * head_dim;
                let (text_k, text_v) = (split(kv.narrow(2, 0, width)?)?, split(kv.narrow(2, width, width)?)?);
                let q = self.attention.project_q(&h)?;
                let (k, v) = self.attention.project_kv(&h)?;
                let k = Tensor::cat(&[&text_k, &k], 2)?;
                let v = Tensor::cat(&[&text_v, &v], 2)?;
                let mask = match text_keep {
                    Some(keep) => {
                        let own = Tensor::ones((batch, tokens), keep.dtype(), keep.device())?;
                        AttentionMask::none().with_key_padding(Tensor::cat(&[keep, &own], 1)?)
                    }
                    None => AttentionMask::none(),
                };
                self.attention.attend(&q, &k, &v, &mask)?
            }
        };
        x + branch
    }
}
