//! The position-wise feed-forward network (Vaswani et al. 2017, §3.3): `W₂ act(W₁ x + b₁) + b₂`.

use candle_core::{Module, Result, Tensor};
use tcat_core::Linear;

use crate::Activation;

/// Two projections around an activation, applied to every position independently.
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
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl FeedForward {
    /// A feed-forward network from its `hidden → inner` and `inner → hidden` projections.
    pub fn new(up: Linear, down: Linear, activation: Activation) -> Self {
        Self { up, down, activation }
    }

    /// Applies the network to `[.., hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&self.activation.apply(&self.up.forward(x)?)?)
    }
}
