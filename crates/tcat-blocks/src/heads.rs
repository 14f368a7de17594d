//! Output heads: language-model projection, masked-LM head, [CLS] pooler, sentence pooling.

use candle_core::{D, DType, Module, Result, Tensor};
use tcat_core::Linear;

use crate::{Activation, Norm};

/// Projects hidden states to vocabulary logits; tied heads share the word-embedding table
/// (Press & Wolf 2017).
#[derive(Debug, Clone)]
pub struct LmHead {
    projection: Linear,
    input_scale: Option<f64>,
    logit_softcap: Option<f64>,
}

impl LmHead {
    /// A head whose weight is the `[vocab, hidden]` word-embedding table (no bias).
    pub fn tied(word_table: &Tensor) -> Self {
        Self { projection: Linear::new(word_table.clone(), None), input_scale: None, logit_softcap: None }
    }

    /// A head with its own projection.
    pub fn new(projection: Linear) -> Self {
        Self { projection, input_scale: None, logit_softcap: None }
    }

    /// Multiplies the hidden states by `scale` before the projection: T5 rescales by
    /// `d_model^-0.5` when its head is tied to the token table (Mesh TensorFlow's convention,
    /// kept by transformers' `T5ForConditionalGeneration`).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::LmHead;
    /// let table = Tensor::new(&[[1f32, 0.], [0., 1.]], &Device::Cpu).unwrap();
    /// let head = LmHead::tied(&table).with_input_scale(0.5);
    /// let logits = head.forward(&Tensor::new(&[[4f32, 2.]], &Device::Cpu).unwrap()).unwrap();
    /// assert_eq!(logits.to_vec2::<f32>().unwrap(), [[2., 1.]]);
    /// ```
    pub fn with_input_scale(mut self, scale: f64) -> Self {
        self.input_scale = Some(scale);
        self
    }

    /// Soft-caps the logits: `cap · tanh(logits / cap)`, so they stay within `(-cap, cap)`
    /// (Gemma 2's `final_logit_softcapping`; Gemma Team 2024, "Gemma 2: Improving Open Language
    /// Models at a Practical Size", §2). Computed in the logits' dtype, as transformers does.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::LmHead;
    /// let table = Tensor::new(&[[1f32, 0.], [0., 1.]], &Device::Cpu).unwrap();
    /// let head = LmHead::tied(&table).with_logit_softcap(3.0);
    /// let logits = head.forward(&Tensor::new(&[[30f32, 0.3]], &Device::Cpu).unwrap()).unwrap();
    /// let l = logits.to_vec2::<f32>().unwrap();
    /// assert!((l[0][0] - 3. * 10f32.tanh()).abs() < 1e-6 && (l[0][1] - 3. * 0.1f32.tanh()).abs() < 1e-6);
    /// ```
    pub fn with_logit_softcap(mut self, cap: f64) -> Self {
        self.logit_softcap = Some(cap);
        self
    }

    /// Logits `[.., vocab]` of `hidden` `[.., hidden]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = match self.input_scale {
            Some(scale) => self.projection.forward(&(hidden * scale)?)?,
            None => self.projection.forward(hidden)?,
        };
        match self.logit_softcap {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }
}

/// BERT's masked-LM head: `decoder(norm(act(dense(h))))` with the decoder usually tied to the
/// word embeddings plus its own bias (Devlin et al. 2018, Appendix A.1).
#[derive(Debug, Clone)]
pub struct MlmHead {
    transform: Linear,
    activation: Activation,
    norm: Norm,
    decoder: Linear,
}

impl MlmHead {
    /// A head from its transform, activation, norm and vocabulary decoder.
    pub fn new(transform: Linear, activation: Activation, norm: Norm, decoder: Linear) -> Self {
        Self { transform, activation, norm, decoder }
    }

    /// Vocabulary logits `[.., vocab]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = self.activation.apply(&self.transform.forward(hidden)?)?;
        self.decoder.forward(&self.norm.forward(&h)?)
    }
}

/// BERT's pooler: `tanh(dense(h[:, 0]))`, the `[CLS]` summary used by classification heads.
#[derive(Debug, Clone)]
pub struct Pooler {
    dense: Linear,
}

impl Pooler {
    /// A pooler from its dense layer.
    pub fn new(dense: Linear) -> Self {
        Self { dense }
    }

    /// `[batch, hidden]` from `[batch, seq, hidden]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        self.dense.forward(&hidden.narrow(1, 0, 1)?.squeeze(1)?)?.tanh()
    }
}

/// ELECTRA's discriminator (Clark et al. 2020, §2, replaced token detection): one logit per
/// token, `prediction(act(dense(h)))`, positive where the token looks replaced.
#[derive(Debug, Clone)]
pub struct ReplacedTokenHead {
    dense: Linear,
    activation: Activation,
    prediction: Linear,
}

impl ReplacedTokenHead {
    /// A head from its `[hidden, hidden]` dense layer, activation and `[1, hidden]` prediction.
    pub fn new(dense: Linear, activation: Activation, prediction: Linear) -> Self {
        Self { dense, activation, prediction }
    }

    /// Logits `[batch, seq]` from hidden states `[batch, seq, hidden]`.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::{Activation, ReplacedTokenHead};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let eye = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
    /// let sum = Linear::new(Tensor::new(&[[1f32, 1.]], &dev).unwrap(), None);
    /// let head = ReplacedTokenHead::new(Linear::new(eye, None), Activation::Relu, sum);
    /// let h = Tensor::new(&[[[1f32, -2.], [3., 4.]]], &dev).unwrap();
    /// assert_eq!(head.forward(&h).unwrap().to_vec2::<f32>().unwrap(), [[1., 7.]]);
    /// ```
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = self.activation.apply(&self.dense.forward(hidden)?)?;
        self.prediction.forward(&h)?.squeeze(D::Minus1)
    }
}

/// [`LmHead::forward`] as a candle [`Module`].
impl Module for LmHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        LmHead::forward(self, x)
    }
}

/// [`MlmHead::forward`] as a candle [`Module`].
impl Module for MlmHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        MlmHead::forward(self, x)
    }
}

/// [`Pooler::forward`] as a candle [`Module`].
impl Module for Pooler {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Pooler::forward(self, x)
    }
}

/// How token states become one sentence vector (Reimers & Gurevych 2019, Sentence-BERT §3).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_blocks::SentencePooling;
/// let dev = Device::Cpu;
/// let h = Tensor::new(&[[[1f32, 0.], [3., 4.], [9., 9.]]], &dev).unwrap();
/// let mask = Tensor::new(&[[1u32, 1, 0]], &dev).unwrap();
/// let mean = SentencePooling::Mean.pool(&h, &mask).unwrap();
/// assert_eq!(mean.to_vec2::<f32>().unwrap(), [[2., 2.]]);
/// let cls = SentencePooling::Cls.pool(&h, &mask).unwrap();
/// assert_eq!(cls.to_vec2::<f32>().unwrap(), [[1., 0.]]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentencePooling {
    /// Average of the real (unmasked) tokens.
    Mean,
    /// The first token's state.
    Cls,
}

impl SentencePooling {
    /// Pools `hidden` `[batch, seq, dim]` with `mask` `[batch, seq]` (non-zero for real tokens)
    /// into `[batch, dim]`.
    pub fn pool(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match self {
            SentencePooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            SentencePooling::Mean => {
                let m = mask.ne(&mask.zeros_like()?)?.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)
            }
        }
    }

    /// Scales each row of `[batch, dim]` to unit L2 norm.
    pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let norm = x32.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        x32.broadcast_div(&norm)?.to_dtype(dtype)
    }
}
