//! ALiBi, attention with linear biases (Press et al. 2022, "Train Short, Test Long"): no position
//! embeddings; each head adds `slope_h · j` to the score of key `j`, which, softmax being
//! invariant to a per-row shift, is the paper's `−slope_h · (i − j)` penalty on distance.

use candle_core::{DType, Device, Result, Tensor};

/// The head slopes of the paper: a geometric sequence starting at `2^(−8/n)` for `n` a power of
/// two; otherwise the slopes of the largest power of two below `n`, then every other slope of
/// twice that many heads (§3, footnote; BLOOM's implementation).
///
/// ```
/// let s = tcat_position::alibi_slopes(8);
/// assert_eq!(s, (1..=8).map(|i| 2f64.powi(-i)).collect::<Vec<_>>());
/// let s6 = tcat_position::alibi_slopes(6);
/// assert_eq!(s6, [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
/// ```
pub fn alibi_slopes(heads: usize) -> Vec<f64> {
    let pow2 = 1usize << (usize::BITS - 1 - heads.max(1).leading_zeros());
    let geometric = |n: usize| {
        let start = 2f64.powf(-8.0 / n as f64);
        (1..=n).map(move |i| start.powi(i as i32))
    };
    let mut slopes: Vec<f64> = geometric(pow2).collect();
    if pow2 < heads {
        slopes.extend(geometric(2 * pow2).step_by(2).take(heads - pow2));
    }
    slopes
}

/// ALiBi biases for attention scores.
#[derive(Debug, Clone)]
pub struct Alibi {
    slopes: Tensor,
}

impl Alibi {
    /// Slopes for `heads` heads, kept in `dtype` on `device`.
    pub fn new(heads: usize, dtype: DType, device: &Device) -> Result<Self> {
        let slopes = Tensor::new(alibi_slopes(heads).iter().map(|&s| s as f32).collect::<Vec<_>>(), device)?;
        Ok(Self { slopes: slopes.to_dtype(dtype)? })
    }

    /// The bias `[batch, heads, 1, kv_len]` for keys at `key_positions` (`[batch, kv_len]`,
    /// the keys' indices among their row's real tokens).
    pub fn bias(&self, key_positions: &Tensor) -> Result<Tensor> {
        let (b, kv) = key_positions.dims2()?;
        let h = self.slopes.dim(0)?;
        let pos = key_positions.to_dtype(self.slopes.dtype())?.reshape((b, 1, 1, kv))?;
        pos.broadcast_mul(&self.slopes.reshape((1, h, 1, 1))?)
    }
}
