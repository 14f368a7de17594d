//! The position-wise feed-forward network (Vaswani et al. 2017, §3.3), plain or gated.

use candle_core::{Module, Result, Tensor};
use tcat_core::Linear;

use crate::Activation;

/// A feed-forward network applied to every position independently.
///
/// - Plain: `down(act(up(x)))`.
/// - Gated (GLU variants, Shazeer 2020, "GLU Variants Improve Transformer"):
///   `down(act(gate(x)) ⊙ up(x))`; SwiGLU with SiLU (LLaMA, PaLM), GeGLU with GELU (T5 v1.1).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_blocks::{Activation, FeedForward};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let up = Linear::new(Tensor::ones((8, 4), candle_core::DType::F32, &dev).unwrap(), None);
/// let down = Linear::new(Tensor::ones((4, 8), candle_core::DType::F32, &dev).unwrap(), None);
/// let ffn = FeedForward::new(up, down, Activation::Relu);
/// let y = ffn.forward(&Tensor::new(&[[[-1f32, -1., -1., -1.]]], &dev).unwrap()).unwrap();
/// assert_eq!(y.to_vec3::<f32>().unwrap(), [[[0., 0., 0., 0.]]]);
/// ```
#[derive(Debug, Clone)]
pub struct FeedForward {
    gate: Option<Linear>,
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl FeedForward {
    /// A plain network from its `hidden → inner` and `inner → hidden` projections.
    pub fn new(up: Linear, down: Linear, activation: Activation) -> Self {
        Self { gate: None, up, down, activation }
    }

    /// A gated network: `down(activation(gate(x)) ⊙ up(x))`.
    pub fn gated(gate: Linear, up: Linear, down: Linear, activation: Activation) -> Self {
        Self { gate: Some(gate), up, down, activation }
    }

    /// Applies the network to `[.., hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inner = match &self.gate {
            None => self.activation.apply(&self.up.forward(x)?)?,
            Some(gate) => (self.activation.apply(&gate.forward(x)?)? * self.up.forward(x)?)?,
        };
        self.down.forward(&inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn gated_matches_the_formula() {
        let dev = Device::Cpu;
        let lin = |o, i| Linear::new(Tensor::randn(0f32, 0.5, (o, i), &dev).unwrap(), None);
        let (gate, up, down) = (lin(6, 4), lin(6, 4), lin(4, 6));
        let ffn = FeedForward::gated(gate.clone(), up.clone(), down.clone(), Activation::Silu);
        let x = Tensor::randn(0f32, 1., (2, 3, 4), &dev).unwrap();
        let g = x.broadcast_matmul(&gate.weight().unwrap().t().unwrap()).unwrap();
        let silu = (&g * candle_nn::ops::sigmoid(&g).unwrap()).unwrap();
        let inner = (silu * x.broadcast_matmul(&up.weight().unwrap().t().unwrap()).unwrap()).unwrap();
        let want = inner.broadcast_matmul(&down.weight().unwrap().t().unwrap()).unwrap();
        let d: f32 = (ffn.forward(&x).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(d < 1e-5, "{d}");
    }
}
