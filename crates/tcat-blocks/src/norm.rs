//! Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019),
//! including Gemma's RMSNorm with a `1 + w` gain computed in f32 (Gemma Team 2024, "Gemma 2:
//! Improving Open Language Models at a Practical Size"; Gemma 3 technical report 2025).

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// A normalisation over the last dimension, run by candle-nn's fused kernels.
///
/// - LayerNorm: `(x − mean) / √(var + ε) · γ + β`.
/// - RMSNorm: `x / √(mean(x²) + ε) · γ` (T5's "LayerNorm", LLaMA).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let norm = tcat_blocks::Norm::layer_norm(
///     Tensor::ones(4, candle_core::DType::F32, &dev).unwrap(),
///     Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap(),
///     1e-5,
/// );
/// let y = norm.forward(&Tensor::new(&[[1f32, 2., 3., 4.]], &dev).unwrap()).unwrap();
/// let mean = y.mean_all().unwrap().to_scalar::<f32>().unwrap();
/// assert!(mean.abs() < 1e-6);
/// ```
#[derive(Debug, Clone)]
pub enum Norm {
    /// LayerNorm with gain and bias.
    LayerNorm {
        /// γ, `[dim]`.
        weight: Tensor,
        /// β, `[dim]`.
        bias: Tensor,
        /// ε.
        eps: f64,
    },
    /// RMSNorm with gain only.
    RmsNorm {
        /// γ, `[dim]`.
        weight: Tensor,
        /// ε.
        eps: f64,
    },
    /// Gemma's RMSNorm: `x / √(mean(x²) + ε) · (1 + w)`, the whole formula in f32 (input and
    /// gain), the result cast back to the input's dtype (see [`Norm::rms_norm_plus_one`]).
    RmsNormPlusOne {
        /// The stored offsets `w`, `[dim]`, kept as loaded.
        weight: Tensor,
        /// `1 + w` in f32, `[dim]`.
        gain: Tensor,
        /// ε.
        eps: f64,
    },
    /// No normalisation: the input passes unchanged. ModernBERT's first layer has no attention
    /// norm (Warner et al. 2024, "Smarter, Better, Faster, Longer: A Modern Bidirectional
    /// Encoder", §2.1.1: its embeddings already end in a LayerNorm, and transformers makes
    /// `layers.0.attn_norm` an `nn.Identity`).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let x = Tensor::new(&[[1f32, 2., 4.]], &Device::Cpu).unwrap();
    /// let y = tcat_blocks::Norm::Identity.forward(&x).unwrap();
    /// assert_eq!(y.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
    /// ```
    Identity,
}

impl Norm {
    /// A LayerNorm from its gain and bias.
    pub fn layer_norm(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Norm::LayerNorm { weight, bias, eps }
    }

    /// An RMSNorm from its gain.
    pub fn rms_norm(weight: Tensor, eps: f64) -> Self {
        Norm::RmsNorm { weight, eps }
    }

    /// Gemma's RMSNorm from its stored offsets `weight` (`w`; the gain is `1 + w`, so zeros are
    /// the identity gain). As transformers' `GemmaRMSNorm` / `Gemma2RMSNorm` / `Gemma3RMSNorm`
    /// compute it, the input is normalised in f32 and multiplied by `1 + w` in f32 before the
    /// cast back, so a half-precision model rounds once, at the end.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// let dev = Device::Cpu;
    /// let norm = tcat_blocks::Norm::rms_norm_plus_one(Tensor::new(&[0f32, 1.], &dev).unwrap(), 0.).unwrap();
    /// let y = norm.forward(&Tensor::new(&[[3f32, 4.]], &dev).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    /// let rms = 12.5f32.sqrt();
    /// assert!((y[0][0] - 3. / rms).abs() < 1e-6 && (y[0][1] - 2. * 4. / rms).abs() < 1e-6);
    /// ```
    pub fn rms_norm_plus_one(weight: Tensor, eps: f64) -> Result<Self> {
        let gain = (weight.to_dtype(DType::F32)? + 1.0)?;
        Ok(Norm::RmsNormPlusOne { weight, gain, eps })
    }

    /// Loads a LayerNorm's `weight` and `bias` under `vb` (falling back to the `gamma` / `beta`
    /// names of checkpoints converted from TensorFlow).
    pub fn load_layer_norm(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        let (w, b) = if !vb.contains_tensor("weight") && vb.contains_tensor("gamma") {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(Self::layer_norm(vb.get(dim, w)?, vb.get(dim, b)?, eps))
    }

    /// Loads an RMSNorm's `weight` under `vb`.
    pub fn load_rms_norm(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self::rms_norm(vb.get(dim, "weight")?, eps))
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        match self {
            Norm::LayerNorm { weight, bias, eps } => candle_nn::ops::layer_norm(&x, weight, bias, *eps as f32),
            Norm::RmsNorm { weight, eps } => candle_nn::ops::rms_norm(&x, weight, *eps as f32),
            Norm::RmsNormPlusOne { gain, eps, .. } => {
                let dtype = x.dtype();
                candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?, gain, *eps as f32)?.to_dtype(dtype)
            }
            Norm::Identity => Ok(x),
        }
    }

    /// The plain formula in f32, for tests of the fused kernels.
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let dim = x.dim(candle_core::D::Minus1)? as f64;
        let y = match self {
            Norm::LayerNorm { weight, bias, eps } => {
                let centred = x.broadcast_sub(&(x.sum_keepdim(candle_core::D::Minus1)? / dim)?)?;
                let var = (centred.sqr()?.sum_keepdim(candle_core::D::Minus1)? / dim)?;
                centred
                    .broadcast_div(&(var + *eps)?.sqrt()?)?
                    .broadcast_mul(&weight.to_dtype(DType::F32)?)?
                    .broadcast_add(&bias.to_dtype(DType::F32)?)?
            }
            Norm::RmsNorm { weight, eps } => {
                let ms = (x.sqr()?.sum_keepdim(candle_core::D::Minus1)? / dim)?;
                x.broadcast_div(&(ms + *eps)?.sqrt()?)?.broadcast_mul(&weight.to_dtype(DType::F32)?)?
            }
            Norm::RmsNormPlusOne { weight, eps, .. } => {
                let ms = (x.sqr()?.sum_keepdim(candle_core::D::Minus1)? / dim)?;
                let gain = (weight.to_dtype(DType::F32)? + 1.0)?;
                x.broadcast_div(&(ms + *eps)?.sqrt()?)?.broadcast_mul(&gain)?
            }
            Norm::Identity => x,
        };
        y.to_dtype(dtype)
    }
}

/// [`Norm::forward`] as a candle [`Module`](candle_core::Module).
impl candle_core::Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Norm::forward(self, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn fused_norms_match_the_formula() {
        let dev = Device::Cpu;
        for dim in [1usize, 7, 32, 384] {
            let x = (Tensor::randn(0f32, 3., (2, 5, dim), &dev).unwrap() + 1.5).unwrap();
            let w = Tensor::randn(1f32, 0.25, dim, &dev).unwrap();
            let b = Tensor::randn(0f32, 0.2, dim, &dev).unwrap();
            for norm in [Norm::layer_norm(w.clone(), b, 1e-5), Norm::rms_norm(w, 1e-6)] {
                let d = max_diff(&norm.forward(&x).unwrap(), &norm.forward_reference(&x).unwrap());
                assert!(d < 1e-4, "{norm:?} dim {dim}: {d}");
            }
        }
    }

    /// Gemma's `(1 + w)` RMSNorm against the formula in f64, element by element, and its
    /// half-precision path against the f32 one (one rounding at the end).
    #[test]
    fn plus_one_rms_norm_matches_an_f64_loop() {
        let dev = Device::Cpu;
        for dim in [1usize, 5, 64, 300] {
            let x = (Tensor::randn(0f32, 2., (3, dim), &dev).unwrap() + 0.5).unwrap();
            let w = Tensor::randn(0f32, 0.5, dim, &dev).unwrap();
            let eps = 1e-6;
            let norm = Norm::rms_norm_plus_one(w.clone(), eps).unwrap();
            let got: Vec<Vec<f32>> = norm.forward(&x).unwrap().to_vec2().unwrap();
            let (xs, ws): (Vec<Vec<f32>>, Vec<f32>) = (x.to_vec2().unwrap(), w.to_vec1().unwrap());
            for (row, got) in xs.iter().zip(&got) {
                let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / dim as f64;
                for ((&v, &g), &w) in row.iter().zip(got).zip(&ws) {
                    let want = v as f64 / (ms + eps).sqrt() * (1.0 + w as f64);
                    assert!((g as f64 - want).abs() < 1e-5 * want.abs().max(1.0), "dim {dim}: {g} vs {want}");
                }
            }
            let d = max_diff(&norm.forward(&x).unwrap(), &norm.forward_reference(&x).unwrap());
            assert!(d < 1e-5, "dim {dim}: fused vs reference {d}");
            let half = norm.forward(&x.to_dtype(DType::BF16).unwrap()).unwrap();
            assert_eq!(half.dtype(), DType::BF16);
            let d = max_diff(
                &half.to_dtype(DType::F32).unwrap(),
                &norm.forward(&x.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()).unwrap(),
            );
            assert!(d < 0.05, "dim {dim}: bf16 vs f32 {d}");
        }
    }

    #[test]
    fn gamma_beta_names_are_accepted() {
        let dev = Device::Cpu;
        let ts = std::collections::HashMap::from([
            ("gamma".to_string(), Tensor::ones(3, DType::F32, &dev).unwrap()),
            ("beta".to_string(), Tensor::zeros(3, DType::F32, &dev).unwrap()),
        ]);
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        assert!(Norm::load_layer_norm(vb, 3, 1e-12).is_ok());
    }
}
