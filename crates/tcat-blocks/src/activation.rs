//! The activation functions of the catalogued feed-forward layers.
//!
//! Contiguous f32 tensors on the CPU are mapped by [`tcat_core::math`]'s branch-free
//! approximations on every core (vectorised where the CPU allows); other dtypes and devices use
//! candle's own ops.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// A feed-forward activation, named as Hugging Face configs name it.
///
/// ```
/// use tcat_blocks::Activation;
/// assert_eq!("gelu".parse::<Activation>().unwrap(), Activation::Gelu);
/// assert_eq!("gelu_new".parse::<Activation>().unwrap(), Activation::GeluTanh);
/// assert!("swish2".parse::<Activation>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the exact erf (Hendrycks & Gimpel 2016): BERT's `gelu`.
    Gelu,
    /// GELU's tanh approximation: GPT-2's `gelu_new`, also `gelu_pytorch_tanh`.
    GeluTanh,
    /// `x · σ(1.702 x)`: CLIP's `quick_gelu`.
    QuickGelu,
    /// `max(0, x)`: the original Transformer, OPT, T5 v1.0.
    Relu,
    /// `x · σ(x)` (SiLU / swish): LLaMA's gate.
    Silu,
    /// `tanh(x)`: DeBERTa-v2's default convolution activation, BERT's pooler.
    Tanh,
}

impl std::str::FromStr for Activation {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        Ok(match name {
            // `gelu_python` is transformers' erf GELU written out; `gelu_accurate` its tanh
            // approximation with the same constants as `gelu_new`.
            "gelu" | "gelu_python" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_accurate" => Activation::GeluTanh,
            "quick_gelu" => Activation::QuickGelu,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            other => {
                return Err(format!(
                    "unknown activation `{other}`; expected gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu, silu \
                     or tanh"
                ));
            }
        })
    }
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            // Strided views are rare here (activations follow a matmul): copy them first.
            return x.contiguous()?.apply_op1_no_bwd(&CpuActivation(self));
        }
        self.apply_candle(x)
    }

    /// The activation by candle's tensor ops (any device and dtype).
    pub fn apply_candle(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// The elementwise map of an activation over a CPU f32 tensor.
struct CpuActivation(Activation);

impl CustomOp1 for CpuActivation {
    fn name(&self) -> &'static str {
        "tcat-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        use tcat_core::math::{erf, map, sigmoid, tanh};
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("{}: expects a contiguous f32 tensor", self.name());
        };
        let xs = &data[start..end];
        let out = match self.0 {
            Activation::Gelu => map(xs, |x| 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))),
            Activation::GeluTanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                map(xs, |x| 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x))))
            }
            Activation::QuickGelu => map(xs, |x| x * sigmoid(1.702 * x)),
            Activation::Silu => map(xs, |x| x * sigmoid(x)),
            Activation::Relu => map(xs, |x| x.max(0.0)),
            Activation::Tanh => map(xs, tanh),
        };
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// [`Activation::apply`] as a candle [`Module`](candle_core::Module).
impl candle_core::Module for Activation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The CPU map against candle's ops, densely over the range where activations differ from
    /// their asymptotes, and on a strided view.
    #[test]
    fn cpu_map_equals_candle_ops() {
        let xs: Vec<f32> = (0..=40_000).map(|i| -12.0 + 24.0 * i as f32 / 40_000.0).collect();
        let t = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
        for act in [
            Activation::Gelu,
            Activation::GeluTanh,
            Activation::QuickGelu,
            Activation::Silu,
            Activation::Relu,
            Activation::Tanh,
        ] {
            let fast = act.apply(&t).unwrap().to_vec1::<f32>().unwrap();
            let slow = act.apply_candle(&t).unwrap().to_vec1::<f32>().unwrap();
            for ((x, f), s) in xs.iter().zip(&fast).zip(&slow) {
                assert!((f - s).abs() <= 1e-6 * x.abs().max(1.0), "{act:?}({x}): {f} vs candle {s}");
            }
        }
        let m = Tensor::from_vec(xs[..600].to_vec(), (20, 30), &Device::Cpu).unwrap().t().unwrap();
        let fast = Activation::Gelu.apply(&m).unwrap().to_vec2::<f32>().unwrap();
        let slow = Activation::Gelu.apply_candle(&m).unwrap().to_vec2::<f32>().unwrap();
        for (f, s) in fast.iter().flatten().zip(slow.iter().flatten()) {
            assert!((f - s).abs() <= 1e-5, "strided: {f} vs {s}");
        }
    }

    /// Each activation against its textbook formula in f64.
    #[test]
    fn activations_match_their_formulas() {
        let xs = [-3.0f64, -1.2, -0.3, 0.0, 0.4, 1.1, 2.7];
        let t = Tensor::new(&xs, &Device::Cpu).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let erf = |x: f64| {
            // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead.
            let mut sum = 0.0;
            let mut term = x;
            for n in 0..60 {
                sum += term / (2 * n + 1) as f64;
                term *= -x * x / (n + 1) as f64;
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        };
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let cases: [(Activation, &dyn Fn(f64) -> f64); 5] = [
            (Activation::Gelu, &|x| 0.5 * x * (1.0 + erf(x / 2f64.sqrt()))),
            (Activation::GeluTanh, &|x| {
                0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
            }),
            (Activation::QuickGelu, &|x| x * sigmoid(1.702 * x)),
            (Activation::Relu, &|x: f64| x.max(0.0)),
            (Activation::Silu, &|x| x * sigmoid(x)),
        ];
        for (act, formula) in cases {
            let got = act.apply(&t).unwrap().to_vec1::<f32>().unwrap();
            for (x, g) in xs.iter().zip(got) {
                assert!((g as f64 - formula(*x)).abs() < 1e-5, "{act:?}({x}) = {g}, expected {}", formula(*x));
            }
        }
    }
}
