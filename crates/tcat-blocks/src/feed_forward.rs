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
    inner: Inner,
    down: Linear,
    activation: Activation,
}

/// The `hidden → inner` projections.
#[derive(Debug, Clone)]
enum Inner {
    Plain(Linear),
    /// Gate and up projections held apart (when they cannot be stacked).
    Gated {
        gate: Linear,
        up: Linear,
    },
    /// `[gate | up]` as one projection of twice the width: one matmul reads `x` once.
    GatedStacked(Linear),
}

impl FeedForward {
    /// A plain network from its `hidden → inner` and `inner → hidden` projections.
    pub fn new(up: Linear, down: Linear, activation: Activation) -> Self {
        Self { inner: Inner::Plain(up), down, activation }
    }

    /// The network's projections, inputs first (`down` last): for inspecting how the weights
    /// are held (dense or quantized).
    pub fn projections(&self) -> Vec<&Linear> {
        match &self.inner {
            Inner::Plain(up) | Inner::GatedStacked(up) => vec![up, &self.down],
            Inner::Gated { gate, up } => vec![gate, up, &self.down],
        }
    }

    /// A gated network: `down(activation(gate(x)) ⊙ up(x))`. Gate and up are stacked into one
    /// projection ([`Linear::stack_outputs`]) when they are held alike.
    pub fn gated(gate: Linear, up: Linear, down: Linear, activation: Activation) -> Self {
        let inner = match Linear::stack_outputs(&[gate.clone(), up.clone()]) {
            Ok(stacked) if gate.out_features() == up.out_features() => Inner::GatedStacked(stacked),
            _ => Inner::Gated { gate, up },
        };
        Self { inner, down, activation }
    }

    /// A gated network from one `[gate | up]` projection of twice the inner width (Phi-3's
    /// `gate_up_proj`): the first half gates, the second is gated.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_blocks::{Activation, FeedForward};
    /// use tcat_core::Linear;
    /// let dev = Device::Cpu;
    /// let lin = |o, i| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
    /// let (gate, up, down) = (lin(6, 4), lin(6, 4), lin(4, 6));
    /// let stacked = Linear::stack_outputs(&[gate.clone(), up.clone()]).unwrap();
    /// let a = FeedForward::gated_stacked(stacked, down.clone(), Activation::Silu).unwrap();
    /// let b = FeedForward::gated(gate, up, down, Activation::Silu);
    /// let x = Tensor::randn(0f32, 1., (2, 4), &dev).unwrap();
    /// let d = (a.forward(&x).unwrap() - b.forward(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
    /// assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    /// ```
    pub fn gated_stacked(gate_up: Linear, down: Linear, activation: Activation) -> Result<Self> {
        if gate_up.out_features() != 2 * down.in_features() {
            candle_core::bail!(
                "a stacked gate and up projection has {} outputs, expected twice the inner width {}",
                gate_up.out_features(),
                down.in_features()
            );
        }
        Ok(Self { inner: Inner::GatedStacked(gate_up), down, activation })
    }

    /// Applies the network to `[.., hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inner = match &self.inner {
            Inner::Plain(up) => self.activation.apply(&up.forward(x)?)?,
            Inner::Gated { gate, up } => (self.activation.apply(&gate.forward(x)?)? * up.forward(x)?)?,
            Inner::GatedStacked(gate_up) => {
                let both = gate_up.forward(x)?;
                let width = gate_up.out_features() / 2;
                let last = both.rank() - 1;
                (self.activation.apply(&both.narrow(last, 0, width)?)? * both.narrow(last, width, width)?)?
            }
        };
        self.down.forward(&inner)
    }
}

/// [`FeedForward::forward`] as a candle [`Module`].
impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        FeedForward::forward(self, x)
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
        let d: f32 = (ffn.forward(&x).unwrap() - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(d < 1e-5, "{d}");
        assert!(matches!(ffn.inner, Inner::GatedStacked(_)), "dense gate and up are stacked");
        // Held apart (as when the two cannot be stacked), the same formula.
        let apart = FeedForward { inner: Inner::Gated { gate, up }, down, activation: Activation::Silu };
        let d: f32 =
            (apart.forward(&x).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(d < 1e-5, "{d}");
    }
}
