//! The activation functions of the catalogued feed-forward layers.

use candle_core::{Result, Tensor};

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
}

impl std::str::FromStr for Activation {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "quick_gelu" => Activation::QuickGelu,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => {
                return Err(format!(
                    "unknown activation `{other}`; expected gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu or silu"
                ));
            }
        })
    }
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
