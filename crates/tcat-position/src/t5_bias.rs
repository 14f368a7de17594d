//! T5's bucketed relative position bias (Raffel et al. 2020, "Exploring the Limits of Transfer
//! Learning with a Unified Text-to-Text Transformer", §2.1).
//!
//! Each head learns one scalar per bucket of the relative position `key − query`, added to the
//! attention logits. Small offsets get a bucket each; larger ones share logarithmically wider
//! buckets up to `max_distance`, beyond which all fall in the last bucket. Encoders
//! (bidirectional) split the buckets between keys before and after the query; decoders
//! (causal) only bucket keys at or before it. The numerics follow `transformers`'
//! `T5Attention._relative_position_bucket`: the log is taken in f32 and truncated.

use candle_core::{DType, Device, Result, Tensor};

/// Which relative positions a [`RelativePositionBias`] tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDirection {
    /// Keys before and after the query get separate buckets (T5's encoder).
    Bidirectional,
    /// Only keys at or before the query are bucketed; later ones share bucket 0 (T5's decoder,
    /// where a causal mask hides them anyway).
    Causal,
}

/// T5's relative position bias: a `[num_buckets, heads]` table indexed by the bucket of each
/// query/key offset, giving the additive bias `[1, heads, q_len, kv_len]` for
/// [`AttentionMask::with_bias`](https://docs.rs/tcat-attention). T5 computes it once per stack
/// (in the first layer) and shares it with every layer.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_position::{BucketDirection, RelativePositionBias};
/// let dev = Device::Cpu;
/// let table = Tensor::arange(0f32, 16., &dev).unwrap().reshape((8, 2)).unwrap(); // 8 buckets, 2 heads
/// let bias = RelativePositionBias::new(table, BucketDirection::Bidirectional, 20).unwrap();
/// let buckets = bias.buckets(3, 3, &dev).unwrap().to_vec2::<u32>().unwrap();
/// assert_eq!(buckets, [[0, 5, 6], [1, 0, 5], [2, 1, 0]]); // keys after the query use buckets 4..8
/// assert_eq!(bias.bias(3, 3).unwrap().dims(), &[1, 2, 3, 3]);
/// ```
#[derive(Debug, Clone)]
pub struct RelativePositionBias {
    table: Tensor,
    direction: BucketDirection,
    max_distance: usize,
}

impl RelativePositionBias {
    /// `table` is the learned `[num_buckets, heads]` embedding
    /// (`relative_attention_bias.weight` in T5 checkpoints).
    pub fn new(table: Tensor, direction: BucketDirection, max_distance: usize) -> Result<Self> {
        let (num_buckets, _) = table.dims2()?;
        let usable = match direction {
            BucketDirection::Bidirectional => num_buckets / 2,
            BucketDirection::Causal => num_buckets,
        };
        if usable < 2 {
            candle_core::bail!("relative position bias: {num_buckets} buckets are too few for {direction:?} bucketing");
        }
        if max_distance <= usable / 2 {
            candle_core::bail!(
                "relative position bias: max_distance {max_distance} must exceed the {} exact buckets",
                usable / 2
            );
        }
        Ok(Self { table, direction, max_distance })
    }

    /// Buckets in the table.
    pub fn num_buckets(&self) -> usize {
        self.table.dims()[0]
    }

    /// Heads the bias covers.
    pub fn num_heads(&self) -> usize {
        self.table.dims()[1]
    }

    /// The bucket of every (query, key) pair, `[q_len, kv_len]` u32, with the queries at the end
    /// of the keys (query `i` at position `kv_len − q_len + i`, as when decoding with a cache).
    pub fn buckets(&self, q_len: usize, kv_len: usize, device: &Device) -> Result<Tensor> {
        if q_len > kv_len {
            candle_core::bail!("relative position bias: {q_len} queries but only {kv_len} keys");
        }
        let offset = (kv_len - q_len) as i64;
        let queries = Tensor::arange(offset, offset + q_len as i64, device)?.reshape((q_len, 1))?;
        let keys = Tensor::arange(0i64, kv_len as i64, device)?.reshape((1, kv_len))?;
        relative_position_bucket(&keys.broadcast_sub(&queries)?, self.direction, self.num_buckets(), self.max_distance)
    }

    /// The bias `[1, heads, q_len, kv_len]` on the table's device and in its dtype.
    pub fn bias(&self, q_len: usize, kv_len: usize) -> Result<Tensor> {
        let buckets = self.buckets(q_len, kv_len, self.table.device())?;
        let values = self.table.index_select(&buckets.flatten_all()?, 0)?; // [q·k, heads]
        values.reshape((q_len, kv_len, self.num_heads()))?.permute((2, 0, 1))?.unsqueeze(0)?.contiguous()
    }
}

/// T5's bucket of each relative position `key − query` (an integer tensor of any shape), as
/// u32 in `0..num_buckets`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_position::{relative_position_bucket, BucketDirection};
/// let rel = Tensor::new(&[-200i64, -20, -3, 0, 3, 20], &Device::Cpu).unwrap();
/// let b = relative_position_bucket(&rel, BucketDirection::Causal, 32, 128).unwrap();
/// assert_eq!(b.to_vec1::<u32>().unwrap(), [31, 17, 3, 0, 0, 0]); // as transformers computes them
/// ```
pub fn relative_position_bucket(
    relative: &Tensor,
    direction: BucketDirection,
    num_buckets: usize,
    max_distance: usize,
) -> Result<Tensor> {
    let relative = relative.to_dtype(DType::F32)?;
    let (buckets, base, distance) = match direction {
        BucketDirection::Bidirectional => {
            let half = num_buckets / 2;
            (half, (relative.gt(0f64)?.to_dtype(DType::F32)? * half as f64)?, relative.abs()?)
        }
        BucketDirection::Causal => (num_buckets, relative.zeros_like()?, relative.neg()?.relu()?),
    };
    let exact = (buckets / 2) as f64;
    if exact < 1.0 || max_distance as f64 <= exact {
        candle_core::bail!(
            "relative position buckets: {num_buckets} buckets and max_distance {max_distance} do not fit"
        );
    }
    // exact + trunc(ln(d / exact) / ln(max_distance / exact) · (buckets − exact)), capped at the
    // last bucket; f32 as transformers computes it, so the boundaries land identically.
    // Divisions by tensors, not candle's scalar affine (a multiply by the reciprocal), so that
    // each rounds as PyTorch's f32 division does.
    let divide = |t: &Tensor, by: f32| t.broadcast_div(&Tensor::new(by, t.device())?);
    let scale = (max_distance as f64 / exact).ln() as f32;
    let large = (divide(&divide(&distance, exact as f32)?.log()?, scale)? * (buckets as f64 - exact))?;
    let large = (large.clamp(0f32, f32::MAX)?.floor()? + exact)?.clamp(0f32, (buckets - 1) as f32)?;
    let bucket = distance.lt(exact)?.where_cond(&distance, &large)?;
    (bucket + base)?.to_dtype(DType::U32)
}
