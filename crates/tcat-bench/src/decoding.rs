//! Decoding with multi-head latent attention beside standard multi-head attention of the same
//! width (DeepSeek-AI 2024, "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts
//! Language Model", arXiv 2405.04434, §2.1 and Table 1): what the cache holds per token and how
//! fast one token decodes after a context of a given length.
//!
//! Both layers have `heads` query heads over `hidden = heads · head_dim`. Standard attention
//! caches keys and values, `2 · heads · head_dim` numbers per token; latent attention (queries
//! projected directly, `nope_dim = value_dim = head_dim`, `rope_dim = head_dim / 2`, a latent of
//! `rank = 4 · head_dim`, DeepSeek-V2's proportions) caches `rank + rope_dim`. Neither applies
//! rotary positions here (the same cost for both). A run fills the cache with `context` random
//! tokens, then times single-token steps, each device-synchronised; the median step gives
//! tokens/s.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Result, Tensor};
use tcat_attention::{
    AttentionMask, KvCache, LatentAttention, LatentDims, LatentQuery, MultiHeadAttention, QkvProjection,
};
use tcat_core::Linear;

use crate::median;

/// The attention layer decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeLayer {
    /// Multi-head attention caching per-head keys and values.
    Standard,
    /// Multi-head latent attention caching one latent and one shared rotary key per token.
    Latent,
}

impl DecodeLayer {
    /// The name in reports: `mha` or `mla`.
    pub fn name(self) -> &'static str {
        match self {
            DecodeLayer::Standard => "mha",
            DecodeLayer::Latent => "mla",
        }
    }
}

/// One decoding measurement.
#[derive(Debug, Clone)]
pub struct DecodeMeasurement {
    /// The layer.
    pub layer: DecodeLayer,
    /// Tokens cached before the timed steps.
    pub context: usize,
    /// Cache bytes per token, layer and batch row.
    pub cache_bytes_per_token: usize,
    /// Median time of one single-token step.
    pub step: Duration,
    /// Tokens per second (batch rows / median step).
    pub tokens_per_second: f64,
}

/// The latent widths paired with standard attention of `heads × head_dim` (DeepSeek-V2's
/// proportions: latent 4 · head_dim, rotary part head_dim / 2).
///
/// ```
/// let dims = tcat_bench::latent_dims(16, 128);
/// assert_eq!((dims.rank, dims.rope_dim, dims.cached_per_token()), (512, 64, 576));
/// ```
pub fn latent_dims(heads: usize, head_dim: usize) -> LatentDims {
    LatentDims {
        heads,
        nope_dim: head_dim,
        rope_dim: (head_dim / 2).max(2) & !1,
        value_dim: head_dim,
        rank: 4 * head_dim,
    }
}

enum Layer {
    Standard(MultiHeadAttention),
    Latent(LatentAttention),
}

impl Layer {
    fn forward(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let mask = AttentionMask::causal();
        match self {
            Layer::Standard(a) => a.forward(x, &mask, None, Some(cache)),
            Layer::Latent(a) => a.forward(x, &mask, None, Some(cache)),
        }
    }
}

fn random_linear(out: usize, inp: usize, dtype: DType, device: &Device) -> Result<Linear> {
    let w = Tensor::randn(0f32, (1.0 / inp as f32).sqrt(), (out, inp), device)?.to_dtype(dtype)?;
    Ok(Linear::new(w, None))
}

fn build(layer: DecodeLayer, heads: usize, head_dim: usize, dtype: DType, device: &Device) -> Result<(Layer, usize)> {
    let hidden = heads * head_dim;
    let lin = |o, i| random_linear(o, i, dtype, device);
    Ok(match layer {
        DecodeLayer::Standard => {
            let qkv = QkvProjection::stacked(lin(hidden, hidden)?, lin(hidden, hidden)?, lin(hidden, hidden)?);
            let attention = MultiHeadAttention::new(qkv, lin(hidden, hidden)?, heads, heads, head_dim)?;
            (Layer::Standard(attention), 2 * heads * head_dim)
        }
        DecodeLayer::Latent => {
            let d = latent_dims(heads, head_dim);
            let attention = LatentAttention::new(
                LatentQuery::Direct(lin(heads * d.qk_dim(), hidden)?),
                lin(d.rank + d.rope_dim, hidden)?,
                Tensor::ones(d.rank, dtype, device)?,
                lin(heads * (d.nope_dim + d.value_dim), d.rank)?,
                lin(hidden, heads * d.value_dim)?,
                d,
                1e-6,
            )?;
            (Layer::Latent(attention), d.cached_per_token())
        }
    })
}

/// Decodes `steps` tokens one by one after `context` cached ones, `batch` rows at a time, with
/// `layer` of `heads × head_dim`; returns the median step and the cache size per token.
///
/// ```
/// use candle_core::{DType, Device};
/// use tcat_bench::{DecodeLayer, measure_decoding};
/// let mha = measure_decoding(DecodeLayer::Standard, 1, 4, 16, 32, 3, DType::F32, &Device::Cpu).unwrap();
/// let mla = measure_decoding(DecodeLayer::Latent, 1, 4, 16, 32, 3, DType::F32, &Device::Cpu).unwrap();
/// assert_eq!(mha.cache_bytes_per_token, 2 * 4 * 16 * 4); // keys and values of 4 heads × 16, f32
/// assert_eq!(mla.cache_bytes_per_token, (64 + 8) * 4); // latent 64 and rotary key 8, f32
/// assert!(mla.tokens_per_second > 0.0);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn measure_decoding(
    layer: DecodeLayer,
    batch: usize,
    heads: usize,
    head_dim: usize,
    context: usize,
    steps: usize,
    dtype: DType,
    device: &Device,
) -> Result<DecodeMeasurement> {
    if batch == 0 || heads == 0 || head_dim < 2 || steps == 0 {
        candle_core::bail!(
            "decoding bench: expected batch, heads and steps ≥ 1 and head_dim ≥ 2, found {batch}, {heads}, {steps}, {head_dim}"
        );
    }
    let (attention, per_token) = build(layer, heads, head_dim, dtype, device)?;
    let hidden = heads * head_dim;
    let mut cache = KvCache::new(context + steps + 1);
    let prompt = Tensor::randn(0f32, 1., (batch, context.max(1), hidden), device)?.to_dtype(dtype)?;
    attention.forward(&prompt, &mut cache)?;
    let token = Tensor::randn(0f32, 1., (batch, 1, hidden), device)?.to_dtype(dtype)?;
    // One untimed warm-up step.
    attention.forward(&token, &mut cache)?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps.saturating_sub(1).max(1) {
        let start = Instant::now();
        attention.forward(&token, &mut cache)?;
        device.synchronize()?;
        times.push(start.elapsed());
    }
    let step = median(&times);
    Ok(DecodeMeasurement {
        layer,
        context,
        cache_bytes_per_token: per_token * dtype.size_in_bytes(),
        step,
        tokens_per_second: batch as f64 / step.as_secs_f64().max(1e-12),
    })
}

/// A table of decoding measurements: layer, context, cache bytes per token, median step,
/// tokens/s, and the cache and speed ratios to standard attention at the same context.
pub fn decode_table(rows: &[DecodeMeasurement]) -> String {
    let mut out = format!(
        "{:<6} {:>8} {:>14} {:>12} {:>12} {:>10} {:>10}\n",
        "layer", "context", "cache B/token", "step", "tokens/s", "cache/mha", "speed/mha"
    );
    for r in rows {
        let base = rows.iter().find(|b| b.layer == DecodeLayer::Standard && b.context == r.context);
        let (cache, speed) = match base {
            Some(b) => (
                format!("{:.3}", r.cache_bytes_per_token as f64 / b.cache_bytes_per_token as f64),
                format!("{:.2}x", r.tokens_per_second / b.tokens_per_second),
            ),
            None => ("-".into(), "-".into()),
        };
        out += &format!(
            "{:<6} {:>8} {:>14} {:>12} {:>12.1} {:>10} {:>10}\n",
            r.layer.name(),
            r.context,
            r.cache_bytes_per_token,
            format!("{:.3?}", r.step),
            r.tokens_per_second,
            cache,
            speed
        );
    }
    out
}
