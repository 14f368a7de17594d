//! The plain attention that the fast paths are tested against.
//!
//! Every step is spelled out on the host in `f64`: keys and values repeated per query head,
//! the mask decided element by element, softmax by explicit exponentials. It is slow on
//! purpose, and it is what a reader should read first.

use candle_core::{Result, Tensor};

use crate::{AttentionMask, Causality};

/// Reference scaled dot-product attention with the same contract as
/// [`scaled_dot_product_attention`](crate::scaled_dot_product_attention).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask, scale: f64) -> Result<Tensor> {
    let (batch, heads, q_len, head_dim) = q.dims4()?;
    let (_, kv_heads, kv_len, _) = k.dims4()?;
    let group = heads / kv_heads;
    let qv: Vec<f64> = q.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1()?;
    let kvv: Vec<f64> = k.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1()?;
    let vv: Vec<f64> = v.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1()?;
    let keep: Option<Vec<Vec<f64>>> =
        mask.key_padding().map(|t| t.to_dtype(candle_core::DType::F64)?.to_vec2()).transpose()?;
    let mut bias: Option<Vec<f64>> = None;
    for b in mask.biases() {
        let b: Vec<f64> = b
            .broadcast_as((batch, heads, q_len, kv_len))?
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        bias = Some(match bias {
            None => b,
            Some(sum) => sum.iter().zip(&b).map(|(x, y)| x + y).collect(),
        });
    }
    let segments: Option<Vec<Vec<f64>>> =
        mask.segments().map(|t| t.to_dtype(candle_core::DType::F64)?.to_vec2()).transpose()?;
    let explicit: Option<Vec<f64>> = mask
        .explicit()
        .map(|t| t.broadcast_as((batch, 1, q_len, kv_len))?.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1())
        .transpose()?;
    let offset = kv_len as i64 - q_len as i64;
    let mut out = vec![0f64; batch * heads * q_len * head_dim];
    for b in 0..batch {
        for h in 0..heads {
            let kvh = h / group; // query head h reads key/value head h / group
            for i in 0..q_len {
                let mut scores = vec![0f64; kv_len];
                for (j, score) in scores.iter_mut().enumerate() {
                    let visible_causal = match mask.causality() {
                        Causality::Bidirectional => true,
                        Causality::Causal => (j as i64) <= i as i64 + offset,
                        Causality::SlidingWindow { window } => {
                            let p = i as i64 + offset;
                            (j as i64) <= p && (j as i64) > p - window as i64
                        }
                    };
                    let visible_pad = keep.as_ref().is_none_or(|keep| keep[b][j] != 0.0);
                    let p = i as i64 + offset; // the query's absolute position
                    let visible_pattern = mask.patterns().iter().all(|pat| p >= 0 && pat.allows(p as usize, j, kv_len));
                    let visible_segment = segments.as_ref().is_none_or(|s| p >= 0 && s[b][p as usize] == s[b][j]);
                    let visible_explicit = explicit.as_ref().is_none_or(|e| e[(b * q_len + i) * kv_len + j] != 0.0);
                    if !(visible_causal && visible_pad && visible_pattern && visible_segment && visible_explicit) {
                        *score = f64::NEG_INFINITY;
                        continue;
                    }
                    let mut dot = 0.0;
                    for d in 0..head_dim {
                        dot += qv[((b * heads + h) * q_len + i) * head_dim + d]
                            * kvv[((b * kv_heads + kvh) * kv_len + j) * head_dim + d];
                    }
                    let scaled = match mask.logit_softcap() {
                        Some(cap) => cap * (dot * scale / cap).tanh(),
                        None => dot * scale,
                    };
                    *score =
                        scaled + bias.as_ref().map_or(0.0, |bias| bias[((b * heads + h) * q_len + i) * kv_len + j]);
                }
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = if max == f64::NEG_INFINITY {
                    vec![1.0 / kv_len as f64; kv_len] // every key masked: uniform, like the fast path
                } else {
                    scores.iter().map(|s| (s - max).exp()).collect()
                };
                let total: f64 = weights.iter().sum();
                for (j, w) in weights.iter().enumerate() {
                    for d in 0..head_dim {
                        out[((b * heads + h) * q_len + i) * head_dim + d] +=
                            w / total * vv[((b * kv_heads + kvh) * kv_len + j) * head_dim + d];
                    }
                }
            }
        }
    }
    Tensor::from_vec(out, (batch, heads, q_len, head_dim), q.device())?.to_dtype(q.dtype())
}
