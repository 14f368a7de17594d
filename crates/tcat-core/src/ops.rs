//! Small tensor operations candle lacks or implements in a way that does not scale.

use candle_core::{DType, Device, Result, Tensor};

/// Inclusive prefix sums along the last axis of a `[rows, n]` tensor, computed in f32 on its
/// device.
///
/// candle's `cumsum` multiplies by an `n × n` triangular matrix: 10 GB for a 50k vocabulary,
/// 256 MB for an 8k-token mask. This sums blocks of 256 with a `256 × 256` triangle, then adds
/// the prefix sums of the block totals (a `blocks × blocks` triangle): O(n · (256 + blocks))
/// work and O(n) memory.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2., 3.], [0., 1., 0.]], &Device::Cpu).unwrap();
/// let sums = tcat_core::prefix_sum(&x).unwrap();
/// assert_eq!(sums.to_vec2::<f32>().unwrap(), [[1., 3., 6.], [0., 1., 1.]]);
/// ```
pub fn prefix_sum(x: &Tensor) -> Result<Tensor> {
    const BLOCK: usize = 256;
    let (rows, n) = x.dims2()?;
    let x = x.to_dtype(DType::F32)?;
    let blocks = n.div_ceil(BLOCK);
    let padded = match blocks * BLOCK - n {
        0 => x,
        pad => x.pad_with_zeros(1, 0, pad)?,
    };
    let within = padded.reshape((rows * blocks, BLOCK))?.matmul(&upper_triangle(BLOCK, padded.device())?)?;
    let within = within.reshape((rows, blocks, BLOCK))?;
    let totals = within.narrow(2, BLOCK - 1, 1)?.squeeze(2)?;
    let before = (totals.matmul(&upper_triangle(blocks, padded.device())?)? - &totals)?;
    let sums = within.broadcast_add(&before.unsqueeze(2)?)?.reshape((rows, blocks * BLOCK))?;
    sums.narrow(1, 0, n)
}

/// `[n, n]` f32 with ones on and above the diagonal: `x · U` sums each row's prefixes.
fn upper_triangle(n: usize, device: &Device) -> Result<Tensor> {
    let i = Tensor::arange(0u32, n as u32, device)?;
    i.unsqueeze(1)?.broadcast_le(&i.unsqueeze(0)?)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_sum_matches_a_running_total() {
        for n in [1, 5, 256, 257, 1000] {
            let x = Tensor::randn(0f32, 1., (3, n), &Device::Cpu).unwrap();
            let got: Vec<Vec<f32>> = prefix_sum(&x).unwrap().to_vec2().unwrap();
            for (row, got) in x.to_vec2::<f32>().unwrap().iter().zip(&got) {
                let mut total = 0f64;
                for (v, g) in row.iter().zip(got) {
                    total += *v as f64;
                    assert!((total - *g as f64).abs() < 1e-3, "n {n}: {total} vs {g}");
                }
            }
        }
    }
}
