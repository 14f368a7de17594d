//! Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019).

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
