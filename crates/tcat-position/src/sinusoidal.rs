//! The fixed sinusoidal position encoding (Vaswani et al. 2017, §3.5):
//! `PE(p, 2i) = sin(p / 10000^(2i/d))`, `PE(p, 2i+1) = cos(p / 10000^(2i/d))`.

use candle_core::{DType, Device, Result, Tensor};

/// Where the sine and cosine halves go in each vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinusoidalLayout {
    /// `sin` at even and `cos` at odd dimensions, as in the paper (XLM, DistilBERT).
    Interleaved,
    /// All sines, then all cosines (Marian, fairseq).
    HalfSplit,
}

/// A `[positions, dim]` table of sinusoidal encodings (`dim` must be even).
///
/// ```
/// use candle_core::{DType, Device};
/// use tcat_position::{sinusoidal_table, SinusoidalLayout};
/// let t = sinusoidal_table(3, 4, SinusoidalLayout::Interleaved, DType::F32, &Device::Cpu).unwrap();
/// let row1 = t.get(1).unwrap().to_vec1::<f32>().unwrap();
/// assert!((row1[0] - 1f32.sin()).abs() < 1e-6 && (row1[1] - 1f32.cos()).abs() < 1e-6);
/// assert!((row1[2] - 0.01f32.sin()).abs() < 1e-6); // 1 / 10000^(2/4)
/// ```
pub fn sinusoidal_table(
    positions: usize,
    dim: usize,
    layout: SinusoidalLayout,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    if !dim.is_multiple_of(2) {
        candle_core::bail!("sinusoidal positions need an even dimension, got {dim}");
    }
    let half = dim / 2;
    let mut table = vec![0f32; positions * dim];
    for p in 0..positions {
        for i in 0..half {
            let angle = p as f64 / 10000f64.powf(2.0 * i as f64 / dim as f64);
            let (sin_at, cos_at) = match layout {
                SinusoidalLayout::Interleaved => (2 * i, 2 * i + 1),
                SinusoidalLayout::HalfSplit => (i, half + i),
            };
            table[p * dim + sin_at] = angle.sin() as f32;
            table[p * dim + cos_at] = angle.cos() as f32;
        }
    }
    Tensor::from_vec(table, (positions, dim), device)?.to_dtype(dtype)
}
