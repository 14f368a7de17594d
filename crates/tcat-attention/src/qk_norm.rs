//! Query-key normalisation: RMS-normalising queries and keys before positions are applied and
//! scores taken, which bounds the attention logits (Dehghani et al. 2023, "Scaling Vision
//! Transformers to 22 Billion Parameters", §3.1; Henry et al. 2020, "Query-Key Normalization for
//! Transformers"). OLMoE normalises each whole projection (all heads together); Qwen3
//! normalises every head on its own with one shared gain; Gemma 3 does the same with gains
//! `1 + w` applied in f32 before the cast ([`QkNorm::plus_one`]). (OLMo 2's gain applied before
//! the cast without the offset is not covered here.)

use candle_core::{D, DType, Result, Tensor};

/// Over which features a [`QkNorm`] computes its root mean square.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNormScope {
    /// The whole projection, all heads together (OLMoE: gains of `heads × head_dim`).
    Projection,
    /// Each head alone (Qwen3: gains of `head_dim`, shared by the heads).
    Head,
}

/// RMS norms with learned gains for the queries and the keys of one attention module:
/// `x / √(mean(x²) + ε) · g`, computed in f32 and returned in the input's dtype.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{QkNorm, QkNormScope};
/// let dev = Device::Cpu;
/// let norm = QkNorm::new(Tensor::ones(2, candle_core::DType::F32, &dev).unwrap(),
///     Tensor::ones(2, candle_core::DType::F32, &dev).unwrap(), 0., QkNormScope::Head).unwrap();
/// let q = Tensor::new(&[[[[3f32, 4.]]]], &dev).unwrap(); // [batch, heads, seq, head_dim]
/// let y = norm.queries(&q).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
/// let rms = (12.5f32).sqrt();
/// assert!((y[0] - 3. / rms).abs() < 1e-6 && (y[1] - 4. / rms).abs() < 1e-6);
/// ```
#[derive(Debug, Clone)]
pub struct QkNorm {
    query: Tensor,
    key: Tensor,
    eps: f64,
    scope: QkNormScope,
    plus_one: bool,
}

impl QkNorm {
    /// Norms with query gains `query` and key gains `key` (1-D: the projection widths for
    /// [`QkNormScope::Projection`], `head_dim` for [`QkNormScope::Head`]).
    pub fn new(query: Tensor, key: Tensor, eps: f64, scope: QkNormScope) -> Result<Self> {
        if query.rank() != 1 || key.rank() != 1 {
            candle_core::bail!(
                "query/key norm gains must be vectors, found shapes {:?} and {:?}",
                query.dims(),
                key.dims()
            );
        }
        Ok(Self { query, key, eps, scope, plus_one: false })
    }

    /// Gemma 3's convention: the stored gains are offsets `w` and the norm multiplies by
    /// `1 + w`, in f32, before casting back (`Gemma3RMSNorm`; Gemma 3 technical report 2025).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_attention::{QkNorm, QkNormScope};
    /// let dev = Device::Cpu;
    /// let zeros = Tensor::zeros(2, DType::F32, &dev).unwrap();
    /// let norm = QkNorm::new(zeros.clone(), zeros, 0., QkNormScope::Head).unwrap().plus_one();
    /// let q = Tensor::new(&[[[[3f32, 4.]]]], &dev).unwrap();
    /// let y = norm.queries(&q).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    /// assert!((y[0] - 3. / 12.5f32.sqrt()).abs() < 1e-6); // zero offsets: unit gains
    /// ```
    pub fn plus_one(mut self) -> Self {
        self.plus_one = true;
        self
    }

    /// Number of query gains.
    pub fn queries_width(&self) -> usize {
        self.query.dims()[0]
    }

    /// Number of key gains.
    pub fn keys_width(&self) -> usize {
        self.key.dims()[0]
    }

    /// Which features one root mean square covers.
    pub fn scope(&self) -> QkNormScope {
        self.scope
    }

    /// Normalised queries: `x` is `[batch, seq, heads × head_dim]` for
    /// [`QkNormScope::Projection`], `[batch, heads, seq, head_dim]` for [`QkNormScope::Head`].
    pub fn queries(&self, x: &Tensor) -> Result<Tensor> {
        self.norm(x, &self.query)
    }

    fn norm(&self, x: &Tensor, gain: &Tensor) -> Result<Tensor> {
        if self.plus_one { rms_plus_one(x, gain, self.eps) } else { rms(x, gain, self.eps) }
    }

    /// Normalised keys, laid out as for [`queries`](Self::queries).
    pub fn keys(&self, x: &Tensor) -> Result<Tensor> {
        self.norm(x, &self.key)
    }
}

/// `x / √(mean(x²) + ε) · gain` over the last dimension, in f32.
pub(crate) fn rms(x: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
    let width = x.dim(D::Minus1)?;
    if gain.dim(0)? != width {
        candle_core::bail!("query/key norm has {} gains for {width} features", gain.dim(0)?);
    }
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let inv = (x32.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x32.broadcast_mul(&inv)?.to_dtype(dtype)?.broadcast_mul(&gain.to_dtype(dtype)?)
}

/// `x / √(mean(x²) + ε) · (1 + w)` over the last dimension, all in f32, then cast back.
fn rms_plus_one(x: &Tensor, offsets: &Tensor, eps: f64) -> Result<Tensor> {
    let width = x.dim(D::Minus1)?;
    if offsets.dim(0)? != width {
        candle_core::bail!("query/key norm has {} gains for {width} features", offsets.dim(0)?);
    }
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let inv = (x32.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    let gain = (offsets.to_dtype(DType::F32)? + 1.0)?;
    x32.broadcast_mul(&inv)?.broadcast_mul(&gain)?.to_dtype(dtype)
}
