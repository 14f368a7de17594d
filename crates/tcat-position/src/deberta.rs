//! DeBERTa's disentangled attention terms (He et al. 2021, "DeBERTa: Decoding-enhanced BERT with
//! Disentangled Attention", eq. 2–4; v2's log-bucketed positions and shared keys).
//!
//! Besides content-to-content `q_i · k_j`, each score gets content-to-position
//! `q_i · K^r_{δ(i,j)}` and position-to-content `k_j · Q^r_{δ(i,j)}`, where `K^r` and `Q^r` are the
//! shared relative position embeddings projected by the layer's key and query projections
//! (`[heads, 2·span, head_dim]`), and `δ(i,j) = clamp(r(i,j) + span, 0, 2·span − 1)` with
//! `r(i,j) = i − j`, log-bucketed in v2. All three terms are scaled by `1/√(head_dim · 3)` (one
//! more factor per extra term). [`disentangled_bias`] returns the two position terms, scaled, as
//! the additive bias the one attention takes; the caller attends with scale
//! `1/√(head_dim · scale_factor)`. Index conventions follow `transformers`' `DebertaV2`.

use candle_core::{DType, Device, Result, Tensor};

/// DeBERTa-v2's log buckets of relative positions: offsets within `bucket_size / 2` are kept,
/// larger ones share logarithmically wider buckets reaching `max_position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBuckets {
    /// `position_buckets` in the config.
    pub bucket_size: usize,
    /// `max_relative_positions` in the config.
    pub max_position: usize,
}

/// `transformers`' `make_log_bucket_position` on an integer tensor of relative positions
/// (returns i64): `sign(r) · (⌈ln(|r| / mid) / ln((max − 1) / mid) · (mid − 1)⌉ + mid)` for
/// `|r| > mid = bucket_size / 2`, `r` itself otherwise, in f32 as transformers computes it.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_position::{log_bucket_position, LogBuckets};
/// let rel = Tensor::new(&[-40i64, -5, 0, 3, 4, 9, 40], &Device::Cpu).unwrap();
/// let b = log_bucket_position(&rel, LogBuckets { bucket_size: 8, max_position: 16 }).unwrap();
/// assert_eq!(b.to_vec1::<i64>().unwrap(), [-10, -5, 0, 3, 4, 6, 10]); // as transformers computes them
/// ```
pub fn log_bucket_position(relative: &Tensor, buckets: LogBuckets) -> Result<Tensor> {
    let mid = buckets.bucket_size / 2;
    if mid < 2 || buckets.max_position <= mid + 1 {
        candle_core::bail!("log buckets: need bucket_size ≥ 4 and max_position > bucket_size / 2 + 1, got {buckets:?}");
    }
    let rel = relative.to_dtype(DType::F32)?;
    let abs = rel.abs()?;
    let device = rel.device();
    let scalar = |x: f32| Tensor::new(x, device);
    let small = abs.lt(mid as f64)?;
    let abs_pos = small.where_cond(&scalar(mid as f32 - 1.0)?.broadcast_as(abs.shape())?, &abs)?;
    let denominator = scalar(((buckets.max_position - 1) as f64 / mid as f64) as f32)?.log()?;
    let log_pos = abs_pos.broadcast_div(&scalar(mid as f32)?)?.log()?.broadcast_div(&denominator)?;
    let log_pos = ((log_pos * (mid as f64 - 1.0))?.ceil()? + mid as f64)?;
    let signed = (log_pos * rel.sign()?)?;
    abs_pos.le(mid as f64)?.where_cond(&rel, &signed)?.to_dtype(DType::I64)
}

/// `r(i, j) = i − j` for `q_len` queries and `kv_len` keys (`[q_len, kv_len]` i64), log-bucketed
/// when `buckets` is given (DeBERTa-v2's `build_relative_position`).
pub fn deberta_relative_positions(
    q_len: usize,
    kv_len: usize,
    buckets: Option<LogBuckets>,
    device: &Device,
) -> Result<Tensor> {
    let q = Tensor::arange(0i64, q_len as i64, device)?.reshape((q_len, 1))?;
    let k = Tensor::arange(0i64, kv_len as i64, device)?.reshape((1, kv_len))?;
    let rel = q.broadcast_sub(&k)?;
    match buckets {
        Some(b) => log_bucket_position(&rel, b),
        None => Ok(rel),
    }
}

/// The content-to-position and position-to-content terms of DeBERTa's disentangled attention,
/// each multiplied by `scale`, as an additive bias `[batch, heads, len, len]`.
///
/// - `q`, `k`: the layer's projected queries and keys, `[batch, heads, len, head_dim]`;
/// - `pos_query`, `pos_key`: the relative embeddings' first `2·span` rows through the query and
///   key projections, split into heads, `[heads, 2·span, head_dim]`; `None` leaves out the
///   position-to-content (`p2c`) or content-to-position (`c2p`) term;
/// - `relative`: `r(i, j)` from [`deberta_relative_positions`], `[len, len]`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_position::{deberta_relative_positions, disentangled_bias};
/// let dev = Device::Cpu;
/// let (q, k) = (Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev).unwrap(), Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev).unwrap());
/// let pos = Tensor::randn(0f32, 1., (2, 6, 4), &dev).unwrap(); // span 3
/// let rel = deberta_relative_positions(5, 5, None, &dev).unwrap();
/// let bias = disentangled_bias(&q, &k, Some(&pos), Some(&pos), &rel, 3, (4.0f64 * 3.0).powf(-0.5)).unwrap();
/// assert_eq!(bias.dims(), &[1, 2, 5, 5]);
/// ```
pub fn disentangled_bias(
    q: &Tensor,
    k: &Tensor,
    pos_query: Option<&Tensor>,
    pos_key: Option<&Tensor>,
    relative: &Tensor,
    span: usize,
    scale: f64,
) -> Result<Tensor> {
    let (batch, heads, len, head_dim) = q.dims4()?;
    if k.dims() != q.dims() {
        candle_core::bail!("disentangled attention: keys {:?} differ from queries {:?}", k.dims(), q.dims());
    }
    if relative.dims() != [len, len] {
        candle_core::bail!("disentangled attention: relative positions {:?}, expected [{len}, {len}]", relative.dims());
    }
    if span == 0 {
        candle_core::bail!("disentangled attention: the span must be at least 1");
    }
    for p in [pos_query, pos_key].into_iter().flatten() {
        if p.dims() != [heads, 2 * span, head_dim] {
            candle_core::bail!(
                "disentangled attention: position embeddings {:?}, expected [{heads}, {}, {head_dim}]",
                p.dims(),
                2 * span
            );
        }
    }
    let (q, k) = (&q.contiguous()?, &k.contiguous()?); // views (e.g. heads split by a transpose)
    // δ(i, j) = clamp(r(i, j) + span, 0, 2·span − 1), the row of the position embeddings.
    let delta =
        (relative.to_dtype(DType::F32)? + span as f64)?.clamp(0f32, (2 * span - 1) as f32)?.to_dtype(DType::U32)?;
    let shape = (batch, heads, len, len);
    let mut bias = Tensor::zeros(shape, q.dtype(), q.device())?;
    if let Some(pos_key) = pos_key {
        // c2p[i, j] = q_i · K^r[δ(i, j)]
        let all = q.broadcast_matmul(&pos_key.t()?.unsqueeze(0)?)?; // [b, h, len, 2·span]
        bias = (bias + all.contiguous()?.gather(&delta.broadcast_as(shape)?.contiguous()?, 3)?)?;
    }
    if let Some(pos_query) = pos_query {
        // p2c[i, j] = k_j · Q^r[δ(i, j)]: gather row j of k·Q^rᵀ at δ(i, j), then transpose.
        let all = k.broadcast_matmul(&pos_query.t()?.unsqueeze(0)?)?; // [b, h, len (keys), 2·span]
        let index = delta.t()?.broadcast_as(shape)?.contiguous()?;
        bias = (bias + all.contiguous()?.gather(&index, 3)?.transpose(2, 3)?)?;
    }
    bias * scale
}
