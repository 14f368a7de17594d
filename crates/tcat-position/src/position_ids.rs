//! Rules that turn a batch into position ids. Computed on the batch's device.

use candle_core::{DType, Result, Tensor};

/// `[batch, seq]` ids `offset, offset+1, …` for every row (BERT, GPT-2 without padding, and
/// each decoding step after `offset` cached tokens).
///
/// ```
/// let ids = tcat_position::sequential_position_ids(2, 3, 4, &candle_core::Device::Cpu).unwrap();
/// assert_eq!(ids.to_vec2::<u32>().unwrap(), [[4, 5, 6], [4, 5, 6]]);
/// ```
pub fn sequential_position_ids(
    batch: usize,
    seq: usize,
    offset: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    Tensor::arange(offset as u32, (offset + seq) as u32, device)?
        .reshape((1, seq))?
        .broadcast_as((batch, seq))?
        .contiguous()
}

/// RoBERTa's rule: real tokens count from `padding_idx + 1`, padding tokens get `padding_idx`.
/// `input_ids` is `[batch, seq]`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let ids = Tensor::new(&[[0u32, 7, 9, 1, 1]], &Device::Cpu).unwrap();
/// let pos = tcat_position::padding_aware_position_ids(&ids, 1).unwrap();
/// assert_eq!(pos.to_vec2::<u32>().unwrap(), [[2, 3, 4, 1, 1]]);
/// ```
pub fn padding_aware_position_ids(input_ids: &Tensor, padding_idx: u32) -> Result<Tensor> {
    let real = input_ids.ne(&input_ids.ones_like()?.affine(0.0, padding_idx as f64)?)?;
    let real = real.to_dtype(DType::F32)?; // cumsum runs as a float matmul in candle
    let counted = (real.cumsum(1)? * &real)?;
    (counted + padding_idx as f64)?.to_dtype(DType::U32)
}

/// Position ids of a (left- or right-) padded batch from its `[batch, seq]` 0/1 attention mask:
/// each real token's index among the real tokens of its row; padding positions get 0. During
/// decoding, pass the mask of every token so far and keep the last columns.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let mask = Tensor::new(&[[0u32, 0, 1, 1], [1, 1, 1, 1]], &Device::Cpu).unwrap();
/// let pos = tcat_position::positions_from_attention_mask(&mask).unwrap();
/// assert_eq!(pos.to_vec2::<u32>().unwrap(), [[0, 0, 0, 1], [0, 1, 2, 3]]);
/// ```
pub fn positions_from_attention_mask(mask: &Tensor) -> Result<Tensor> {
    let real = mask.ne(&mask.zeros_like()?)?.to_dtype(DType::F32)?;
    let counted = (tcat_core::prefix_sum(&real)? - 1.0)?;
    (counted * &real)?.to_dtype(DType::U32)
}
