//! Memory-efficient fused attention for the CPU: tiled, with an online softmax (Milakov &
//! Gimelshein 2018, "Online normalizer calculation for softmax"; Dao et al. 2022,
//! "FlashAttention", Algorithm 1), so the `q_len × kv_len` scores are never materialised.
//!
//! Each query keeps a running maximum `m`, a running normaliser `l` and an unnormalised output
//! `o`; for every tile of keys, `m' = max(m, max_j s_j)`, `o ← o·e^{m−m'} + Σ_j e^{s_j−m'} v_j`,
//! `l ← l·e^{m−m'} + Σ_j e^{s_j−m'}`, and finally `out = o / l`. Memory is O(tile) per thread
//! besides the inputs and the output. Key tiles that the mask hides entirely are skipped, so a
//! causal mask halves the work and a sliding window of `w` keys makes it O(n·w).

use candle_core::{DType, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::{AttentionMask, Causality, SparsePattern, scaled_dot_product_attention, split_grouped_shape};

/// Queries per parallel task.
const QUERY_TILE: usize = 32;
/// Keys per tile of the online softmax.
const KEY_TILE: usize = 128;

/// How much of a tile of (query, key) pairs a mask lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TileVisibility {
    /// No pair is visible: the tile is skipped.
    Hidden,
    /// Some pairs are visible: each is tested.
    Partial,
    /// Every pair is visible: none is tested.
    Visible,
}

/// Which keys each query sees, by absolute position: what a tiled kernel asks of a mask.
/// Queries sit at the end of the keys (query `i` of `q_len` at position `i + kv_len − q_len`).
trait Visibility: Sync {
    fn allows(&self, query: usize, key: usize) -> bool;
    /// For queries `q0..q1` and keys `k0..k1` (absolute positions, non-empty ranges).
    fn tile(&self, q0: usize, q1: usize, k0: usize, k1: usize) -> TileVisibility;
}

/// A mask's causality and sparse pattern together.
struct MaskVisibility {
    causality: Causality,
    pattern: Option<SparsePattern>,
    kv_len: usize,
}

impl Visibility for MaskVisibility {
    fn allows(&self, query: usize, key: usize) -> bool {
        self.causality.allows(query, key) && self.pattern.is_none_or(|p| p.allows(query, key, self.kv_len))
    }

    fn tile(&self, q0: usize, q1: usize, k0: usize, k1: usize) -> TileVisibility {
        let causal = causal_tile(self.causality, q0, q1, k0, k1);
        match (causal, &self.pattern) {
            (TileVisibility::Hidden, _) | (_, None) => causal,
            (_, Some(pattern)) => match pattern.tile(q0, q1, k0, k1, self.kv_len) {
                (false, _) => TileVisibility::Hidden,
                (true, true) if causal == TileVisibility::Visible => TileVisibility::Visible,
                _ => TileVisibility::Partial,
            },
        }
    }
}

/// How much of the tile of queries `q0..q1` and keys `k0..k1` a causality lets through.
fn causal_tile(causality: Causality, q0: usize, q1: usize, k0: usize, k1: usize) -> TileVisibility {
    let (first_q, last_q, first_k, last_k) = (q0, q1 - 1, k0, k1 - 1);
    match causality {
        Causality::Bidirectional => TileVisibility::Visible,
        Causality::Causal if first_k > last_q => TileVisibility::Hidden,
        Causality::Causal if last_k <= first_q => TileVisibility::Visible,
        Causality::Causal => TileVisibility::Partial,
        Causality::SlidingWindow { window } => {
            if first_k > last_q || last_k + window <= first_q {
                TileVisibility::Hidden
            } else if last_k <= first_q && first_k + window > last_q {
                TileVisibility::Visible
            } else {
                TileVisibility::Partial
            }
        }
    }
}

/// Scaled dot-product attention computed tile by tile with an online softmax, equal to
/// [`scaled_dot_product_attention`] (same shapes, masks, grouped-query heads without repeated
/// keys, additive biases) but with memory independent of `q_len × kv_len`.
///
/// A query that sees no key at all gets the uniform average of all values, as the
/// materialised path gives (it replaces masked scores by the dtype's minimum). Computation is
/// in f32 whatever the input dtype; the output has the dtype of `v`. On devices other than the
/// CPU this calls [`scaled_dot_product_attention`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{fused_attention, scaled_dot_product_attention, AttentionMask};
/// let dev = Device::Cpu;
/// let q = Tensor::randn(0f32, 1., (2, 4, 300, 16), &dev).unwrap();
/// let kv = Tensor::randn(0f32, 1., (2, 2, 300, 16), &dev).unwrap();
/// let mask = AttentionMask::causal().with_sliding_window(64);
/// let fused = fused_attention(&q, &kv, &kv, &mask, 0.25).unwrap();
/// let dense = scaled_dot_product_attention(&q, &kv, &kv, &mask, 0.25).unwrap();
/// let diff = (fused - dense).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
/// assert!(diff < 1e-5);
/// ```
pub fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask, scale: f64) -> Result<Tensor> {
    if !q.device().is_cpu() {
        return scaled_dot_product_attention(q, k, v, mask, scale);
    }
    let (batch, heads, q_len, head_dim) = q.dims4()?;
    let (kb, kv_heads, kv_len, kd) = k.dims4()?;
    if k.dims() != v.dims() || kb != batch || kd != head_dim {
        candle_core::bail!(
            "fused attention: queries {:?}, keys {:?} and values {:?} do not fit",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let (_, group) = split_grouped_shape(heads, kv_heads)?;
    if mask.explicit().is_some() || (q_len > kv_len && mask.causality() != Causality::Bidirectional) {
        // An explicit q_len × kv_len mask is already materialised, and queries before the first
        // key (a negative cache offset) are rare: both go to the materialised path.
        return scaled_dot_product_attention(q, k, v, mask, scale);
    }
    let f32_data = |t: &Tensor| t.to_dtype(DType::F32)?.contiguous();
    // Keys transposed to [batch, kv_heads, head_dim, kv_len]: a query's scores against a tile of
    // keys are then head_dim contiguous axpys.
    let (qf, kf, vf) = (f32_data(q)?, f32_data(&k.transpose(2, 3)?)?, f32_data(v)?);
    let keep: Option<Vec<u8>> = match mask.key_padding() {
        None => None,
        Some(keep) => {
            if keep.dims() != [batch, kv_len] {
                candle_core::bail!("key padding mask has shape {:?}, expected [{batch}, {kv_len}]", keep.dims());
            }
            Some(keep.ne(0u32)?.flatten_all()?.to_vec1::<u8>()?)
        }
    };
    let biases: Vec<Tensor> = mask
        .biases()
        .iter()
        .map(|b| b.to_dtype(DType::F32)?.broadcast_as((batch, heads, q_len, kv_len)))
        .collect::<Result<_>>()?;
    let guards: Vec<_> = [&qf, &kf, &vf].into_iter().chain(&biases).map(|t| t.storage_and_layout()).collect();
    let views: Vec<BiasView<'_>> = guards
        .iter()
        .map(|(s, l)| match &**s {
            Storage::Cpu(cpu) => {
                Ok(BiasView { data: &cpu.as_slice::<f32>()?[l.start_offset()..], stride: l.stride().to_vec() })
            }
            _ => candle_core::bail!("fused attention: tensor not on the CPU"),
        })
        .collect::<Result<_>>()?;
    let (q_data, k_data, v_data, bias_slices) = (views[0].data, views[1].data, views[2].data, &views[3..]);
    if let Some(pattern) = mask.pattern() {
        pattern.validate()?;
    }
    let segments: Option<Vec<u32>> = match mask.segments() {
        None => None,
        Some(ids) => {
            if ids.dims() != [batch, kv_len] || q_len > kv_len {
                candle_core::bail!(
                    "segment ids have shape {:?}, expected [{batch}, {kv_len}] with q_len = {q_len} ≤ kv_len",
                    ids.dims()
                );
            }
            Some(ids.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?)
        }
    };
    let visibility = MaskVisibility { causality: mask.causality(), pattern: mask.pattern().copied(), kv_len };
    let shape = Shape { q_len, kv_len, head_dim, scale: scale as f32 };
    let mut out = vec![0f32; batch * heads * q_len * head_dim];
    out.par_chunks_mut(q_len * head_dim).enumerate().for_each(|(bh, out_bh)| {
        let (b, h) = (bh / heads, bh % heads);
        let kvh = b * kv_heads + h / group;
        let q_bh = &q_data[bh * q_len * head_dim..][..q_len * head_dim];
        let k_bh = &k_data[kvh * kv_len * head_dim..][..kv_len * head_dim];
        let v_bh = &v_data[kvh * kv_len * head_dim..][..kv_len * head_dim];
        let keep_b = keep.as_ref().map(|k| &k[b * kv_len..][..kv_len]);
        let segments_b = segments.as_ref().map(|s| &s[b * kv_len..][..kv_len]);
        out_bh.par_chunks_mut(QUERY_TILE * head_dim).enumerate().for_each(|(tile, out_tile)| {
            let q0 = tile * QUERY_TILE;
            let rows = out_tile.len() / head_dim;
            let ctx = TileContext {
                shape: &shape,
                b,
                h,
                keep: keep_b,
                segments: segments_b,
                biases: bias_slices,
                visibility: &visibility,
            };
            ctx.run(&q_bh[q0 * head_dim..][..rows * head_dim], k_bh, v_bh, q0, out_tile);
        });
    });
    drop(views);
    drop(guards);
    Tensor::from_vec(out, (batch, heads, q_len, head_dim), q.device())?.to_dtype(v.dtype())
}

/// The f32 data of a CPU tensor from its first element, with its strides; for a bias broadcast
/// to `[batch, heads, q_len, kv_len]`, zero strides where it is broadcast.
struct BiasView<'a> {
    data: &'a [f32],
    stride: Vec<usize>,
}

impl BiasView<'_> {
    fn row(&self, b: usize, h: usize, i: usize) -> (usize, usize) {
        (b * self.stride[0] + h * self.stride[1] + i * self.stride[2], self.stride[3])
    }
}

struct Shape {
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
    scale: f32,
}

/// Everything one query tile needs.
struct TileContext<'a, V: Visibility> {
    shape: &'a Shape,
    b: usize,
    h: usize,
    keep: Option<&'a [u8]>,
    /// Segment ids of the batch row's keys (block-diagonal masks).
    segments: Option<&'a [u32]>,
    biases: &'a [BiasView<'a>],
    visibility: &'a V,
}

impl<V: Visibility> TileContext<'_, V> {
    /// Attends queries `q0..q0 + rows` (their data in `q`) over all keys into `out`; `kt` holds
    /// the keys transposed, `[head_dim, kv_len]`.
    fn run(&self, q: &[f32], kt: &[f32], v: &[f32], q0: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if *HAS_AVX2_FMA {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
            return unsafe { self.run_avx2(q, kt, v, q0, out) };
        }
        self.run_generic(q, kt, v, q0, out)
    }

    /// [`run_generic`](Self::run_generic) compiled for AVX2 + FMA, so its loops vectorise 8-wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, q: &[f32], kt: &[f32], v: &[f32], q0: usize, out: &mut [f32]) {
        self.run_generic(q, kt, v, q0, out)
    }

    #[inline(always)]
    fn run_generic(&self, q: &[f32], kt: &[f32], v: &[f32], q0: usize, out: &mut [f32]) {
        let Shape { q_len, kv_len, head_dim: d, scale, .. } = *self.shape;
        let rows = q.len() / d;
        let offset = kv_len - q_len.min(kv_len);
        let (abs0, abs1) = (q0 + offset, q0 + rows + offset);
        let mut max = vec![f32::NEG_INFINITY; rows];
        let mut sum = vec![0f32; rows];
        let mut scores = vec![0f32; KEY_TILE];
        out.fill(0.0);
        for k0 in (0..kv_len).step_by(KEY_TILE) {
            let k1 = (k0 + KEY_TILE).min(kv_len);
            let tile = self.visibility.tile(abs0, abs1, k0, k1);
            if tile == TileVisibility::Hidden {
                continue;
            }
            let scores = &mut scores[..k1 - k0];
            for r in 0..rows {
                let (i, abs) = (q0 + r, abs0 + r);
                // Scores of one query against the tile: d contiguous axpys over the keys.
                scores.fill(0.0);
                for (x, &qx) in q[r * d..][..d].iter().enumerate() {
                    axpy(qx * scale, &kt[x * kv_len + k0..x * kv_len + k1], scores);
                }
                for bias in self.biases {
                    let (at, stride) = bias.row(self.b, self.h, i);
                    for (j, s) in (k0..k1).zip(scores.iter_mut()) {
                        *s += bias.data[at + j * stride];
                    }
                }
                if tile == TileVisibility::Partial || self.keep.is_some() || self.segments.is_some() {
                    for (j, s) in (k0..k1).zip(scores.iter_mut()) {
                        let visible = (tile == TileVisibility::Visible || self.visibility.allows(abs, j))
                            && self.keep.is_none_or(|keep| keep[j] != 0)
                            && self.segments.is_none_or(|seg| seg[abs] == seg[j]);
                        if !visible {
                            *s = f32::NEG_INFINITY;
                        }
                    }
                }
                let tile_max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                if tile_max == f32::NEG_INFINITY {
                    continue;
                }
                let new_max = max[r].max(tile_max);
                let rescale = (max[r] - new_max).exp();
                let o = &mut out[r * d..][..d];
                if rescale != 1.0 {
                    o.iter_mut().for_each(|x| *x *= rescale);
                    sum[r] *= rescale;
                }
                exp_shifted(scores, new_max);
                sum[r] += scores.iter().sum::<f32>();
                for (j, &p) in (k0..k1).zip(scores.iter()) {
                    if p != 0.0 {
                        axpy(p, &v[j * d..][..d], o);
                    }
                }
                max[r] = new_max;
            }
        }
        for r in 0..rows {
            let o = &mut out[r * d..][..d];
            if sum[r] > 0.0 {
                let inv = 1.0 / sum[r];
                o.iter_mut().for_each(|x| *x *= inv);
            } else {
                // No visible key: the materialised path's scores are all the same minimum, so
                // its softmax is uniform over every key.
                for j in 0..kv_len {
                    axpy(1.0 / kv_len as f32, &v[j * d..][..d], o);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
static HAS_AVX2_FMA: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));

/// `x ← exp(x − shift)` over a slice, in straight-line arithmetic that vectorises (Cephes'
/// `expf`: range reduction by ln 2 and a degree-6 polynomial, relative error ≈ 1e-7). Results
/// below e^-87 (masked scores among them) are 0.
#[inline(always)]
fn exp_shifted(xs: &mut [f32], shift: f32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    for x in xs.iter_mut() {
        let t = *x - shift;
        let underflow = t < -87.0;
        let t = t.clamp(-87.0, 88.0);
        // n = round(t / ln 2) without a libm call: truncate, then correct negatives.
        let f = t * LOG2E + 0.5;
        let mut n = f as i32;
        if (n as f32) > f {
            n -= 1;
        }
        let nf = n as f32;
        let r = t - nf * 0.693_359_4 - nf * -2.121_944_4e-4;
        let z = r * r;
        let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
            + 1.666_666_5e-1)
            * r
            + 0.5;
        let y = p * z + r + 1.0;
        let scaled = y * f32::from_bits(((n + 127) as u32) << 23);
        *x = if underflow { 0.0 } else { scaled };
    }
}

/// `y += a · x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomial_exp_is_within_a_few_ulps() {
        let mut xs: Vec<f32> = (-9000..=0).map(|i| i as f32 / 100.0).collect();
        let want: Vec<f64> = xs.iter().map(|&x| ((x - 1.5) as f64).exp()).collect(); // from the f32 difference
        exp_shifted(&mut xs, 1.5);
        for (i, (&got, &want)) in xs.iter().zip(&want).enumerate() {
            if want < (-87f64).exp() {
                assert_eq!(got, 0.0);
            } else {
                assert!(
                    ((got as f64 - want) / want).abs() < 3e-7,
                    "x = {}: {got} vs {want}",
                    i as f32 / 100.0 - 90.0 - 1.5
                );
            }
        }
        let mut masked = [f32::NEG_INFINITY, 0.0];
        exp_shifted(&mut masked, 0.0);
        assert_eq!(masked, [0.0, 1.0]);
    }

    #[test]
    fn tiles_agree_with_pairs() {
        for causality in [Causality::Bidirectional, Causality::Causal, Causality::SlidingWindow { window: 5 }] {
            for (q0, q1, k0, k1) in [(0, 4, 0, 4), (10, 14, 0, 4), (3, 6, 5, 9), (20, 30, 12, 18), (8, 9, 4, 9)] {
                let pairs: Vec<bool> = (q0..q1).flat_map(|i| (k0..k1).map(move |j| causality.allows(i, j))).collect();
                let expected = match (pairs.iter().all(|&p| p), pairs.iter().any(|&p| p)) {
                    (true, _) => TileVisibility::Visible,
                    (false, false) => TileVisibility::Hidden,
                    _ => TileVisibility::Partial,
                };
                assert_eq!(causal_tile(causality, q0, q1, k0, k1), expected, "{causality:?} {q0}..{q1} x {k0}..{k1}");
            }
        }
    }
}
