//! DeBERTa-v2's n-gram induced input encoding ("nGiE"; He et al. 2021, "DeBERTa: Decoding-enhanced
//! BERT with Disentangled Attention", the v2 models of its public release): a 1-D convolution
//! over the tokens beside the first layer, so that the model reads local n-grams early. With
//! `x` the first layer's input, `y` its output and `m` the mask of real tokens,
//!
//! `out = LayerNorm(y + act(m ⊙ conv(m ⊙ x))) ⊙ m`,
//!
//! the convolution running over the sequence with `(k − 1) / 2` zeros of padding on each side
//! (an odd kernel `k`; the output is as long as the input) and `groups` channel groups. Padded
//! tokens read as zeros, as the reference's embeddings are masked: a padded row equals the row
//! alone.

use candle_core::{D, Result, Tensor};

use crate::{Activation, Norm};

/// A convolution over the tokens added to a layer's output, then normalised.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_blocks::{Activation, Norm, TokenConvolution};
/// let dev = Device::Cpu;
/// // Kernel 3 over 4 channels, one group: [out, in, k].
/// let weight = Tensor::randn(0f32, 0.3, (4, 4, 3), &dev).unwrap();
/// let bias = Tensor::zeros(4, DType::F32, &dev).unwrap();
/// let norm = Norm::layer_norm(Tensor::ones(4, DType::F32, &dev).unwrap(), Tensor::zeros(4, DType::F32, &dev).unwrap(), 1e-7);
/// let conv = TokenConvolution::new(weight, bias, 1, Activation::Tanh, norm).unwrap();
/// let (input, output) = (Tensor::randn(0f32, 1., (2, 5, 4), &dev).unwrap(), Tensor::randn(0f32, 1., (2, 5, 4), &dev).unwrap());
/// assert_eq!(conv.forward(&input, &output, None).unwrap().dims(), &[2, 5, 4]);
/// ```
#[derive(Debug, Clone)]
pub struct TokenConvolution {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    activation: Activation,
    norm: Norm,
}

impl TokenConvolution {
    /// The convolution from its `weight` `[hidden, hidden / groups, kernel]` (an odd kernel) and
    /// `bias` `[hidden]`, its activation and the norm after the sum.
    pub fn new(weight: Tensor, bias: Tensor, groups: usize, activation: Activation, norm: Norm) -> Result<Self> {
        let (out, per_group, kernel) = weight.dims3()?;
        if groups == 0 || !out.is_multiple_of(groups) || per_group * groups != out {
            candle_core::bail!(
                "token convolution: weight {:?} is not [hidden, hidden / groups, kernel] for {groups} groups",
                weight.dims()
            );
        }
        if kernel.is_multiple_of(2) {
            candle_core::bail!("token convolution: kernel size {kernel} must be odd to keep the sequence length");
        }
        if bias.dims() != [out] {
            candle_core::bail!("token convolution: bias {:?}, expected [{out}]", bias.dims());
        }
        Ok(Self { weight, bias, groups, activation, norm })
    }

    /// Kernel width in tokens.
    pub fn kernel_size(&self) -> usize {
        self.weight.dims()[2]
    }

    /// `norm(output + act(keep ⊙ conv(keep ⊙ input))) ⊙ keep` for `input` and `output`
    /// `[batch, seq, hidden]` (a layer's input and output) and `keep` `[batch, seq]` non-zero at
    /// real tokens.
    pub fn forward(&self, input: &Tensor, output: &Tensor, keep: Option<&Tensor>) -> Result<Tensor> {
        let padding = (self.kernel_size() - 1) / 2;
        let weight = self.weight.to_dtype(input.dtype())?;
        let keep = keep.map(|k| k.to_dtype(input.dtype())?.unsqueeze(D::Minus1)).transpose()?;
        let input = match &keep {
            Some(keep) => input.broadcast_mul(keep)?,
            None => input.clone(),
        };
        let conv = input.transpose(1, 2)?.contiguous()?.conv1d(&weight, padding, 1, 1, self.groups)?;
        let conv = conv.broadcast_add(&self.bias.to_dtype(input.dtype())?.unsqueeze(1)?)?.transpose(1, 2)?;
        let conv = match &keep {
            Some(keep) => conv.broadcast_mul(keep)?,
            None => conv.contiguous()?,
        };
        let out = self.norm.forward(&(output + self.activation.apply(&conv)?)?)?;
        match &keep {
            Some(keep) => out.broadcast_mul(keep),
            None => Ok(out),
        }
    }
}
