//! The attention function every tcat model calls.

use candle_core::{DType, Device, Result, Tensor};

use crate::AttentionShape;
use crate::mask::{AttentionMask, masked_fill_value};

/// Scaled dot-product attention, `softmax(Q Kᵀ · scale + bias, masked) V`
/// (Vaswani et al. 2017, eq. 1); with a [soft-cap](AttentionMask::with_logit_softcap) `c`, the
/// scaled scores become `c · tanh(Q Kᵀ · scale / c)` before the biases.
///
/// Shapes: `q` is `[batch, heads, q_len, head_dim]`; `k` and `v` are
/// `[batch, kv_heads, kv_len, head_dim]` with `heads` a multiple of `kv_heads`. Grouped-query
/// (Ainslie et al. 2023) and multi-query (Shazeer 2019) attention need no repeated keys: the
/// `heads / kv_heads` query heads of a group are folded into the query-length axis, so each
/// key/value head is multiplied once against all of its queries.
///
/// Masked scores are replaced (not added to) by the dtype's most negative finite value, so a
/// row with every key masked gives a finite uniform average rather than NaN.
///
/// Returns `[batch, heads, q_len, head_dim]`.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttentionMask,
    scale: f64,
) -> Result<Tensor> {
    let shape = AttentionShape::check(q, k, v)?;
    let AttentionShape { batch, heads, kv_heads, group, q_len, kv_len, head_dim } = shape;
    let plan = mask.plan(batch, q_len, kv_len)?;
    shape.check_biases(mask)?; // the scores add them one by one below

    // [b, kv_heads, group * q_len, d]: query heads of one group share their key/value head.
    let q = q.contiguous()?.reshape((batch, kv_heads, group * q_len, head_dim))?;
    let scores = q.matmul(&k.t()?)?;
    // Half-precision scores are softmaxed in f32, as the reference implementations do: bf16's
    // 8-bit mantissa would otherwise cost about 1% on the outputs.
    let value_dtype = v.dtype();
    let scores = match scores.dtype() {
        DType::F16 | DType::BF16 => scores.to_dtype(DType::F32)?,
        _ => scores,
    };
    let mut scores = (scores * scale)?.reshape((batch, heads, q_len, kv_len))?;
    if let Some(cap) = mask.logit_softcap() {
        scores = ((scores / cap)?.tanh()? * cap)?;
    }
    for bias in mask.biases() {
        scores = scores.broadcast_add(&bias.to_dtype(scores.dtype())?)?;
    }
    let scores = match plan.allowed(q.device())? {
        None => scores,
        Some(allowed) => {
            let allowed = allowed.broadcast_as(scores.shape())?;
            let fill = masked_fill_scalar(scores.dtype(), scores.device())?.broadcast_as(scores.shape())?;
            allowed.where_cond(&scores, &fill)?
        }
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?.to_dtype(value_dtype)?;
    let probs = probs.reshape((batch, kv_heads, group * q_len, kv_len))?;
    probs.matmul(&v.contiguous()?)?.reshape((batch, heads, q_len, head_dim))
}

/// The fill of masked scores as a 0-d tensor, set on `device` itself (candle's `const_set`):
/// no host-to-device copy per call. The scores are f32 or f64 here (half precision is
/// softmaxed in f32); other dtypes take a zero tensor shifted by the value.
fn masked_fill_scalar(dtype: DType, device: &Device) -> Result<Tensor> {
    let value = masked_fill_value(dtype);
    match dtype {
        DType::F32 => Tensor::full(value as f32, (), device),
        DType::F64 => Tensor::full(value, (), device),
        _ => Tensor::zeros((), dtype, device)?.affine(0.0, value),
    }
}

/// Splits `heads` query heads into `(kv_heads, heads / kv_heads)` groups, failing with a
/// message naming both counts when they do not divide.
///
/// ```
/// assert_eq!(tcat_attention::split_grouped_shape(12, 4).unwrap(), (4, 3));
/// assert!(tcat_attention::split_grouped_shape(12, 5).is_err());
/// ```
pub fn split_grouped_shape(heads: usize, kv_heads: usize) -> Result<(usize, usize)> {
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        candle_core::bail!("num_heads ({heads}) must be a positive multiple of num_kv_heads ({kv_heads})");
    }
    Ok((kv_heads, heads / kv_heads))
}
