//! Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive
//! Transformers with Linear Attention", eq. 4–6 and §3.4), the representative kernelised
//! attention of the catalog.
//!
//! The softmax kernel `exp(q·k)` is replaced by `φ(q)·φ(k)` with the feature map
//! `φ(x) = elu(x) + 1`, so attention factorises:
//! `out_i = φ(q_i)ᵀ S / φ(q_i)ᵀ z` with `S = Σ_j φ(k_j) v_jᵀ` and `z = Σ_j φ(k_j)`, summed over
//! every key (non-causal) or over `j ≤ i` (causal). Cost and memory are linear in the sequence
//! length. The causal form runs in chunks: within a chunk a masked `C × C` product, across
//! chunks the carried state `(S, z)`; with one token per call this is the paper's recurrent
//! form, O(1) per decoded token ([`LinearAttentionState`]).

use candle_core::{D, DType, Device, Result, Tensor};

use crate::{AttentionMask, Causality, split_grouped_shape};

/// Tokens per chunk of the causal form.
const CHUNK: usize = 64;

/// The feature map `φ(x) = elu(x) + 1` (positive everywhere, so the normaliser never vanishes).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[-1f32, 0., 2.], &Device::Cpu).unwrap();
/// let y = tcat_attention::elu_feature_map(&x).unwrap().to_vec1::<f32>().unwrap();
/// assert!((y[0] - (-1f32).exp()).abs() < 1e-6 && y[1] == 1.0 && y[2] == 3.0);
/// ```
pub fn elu_feature_map(x: &Tensor) -> Result<Tensor> {
    x.elu(1.0)? + 1.0
}

/// Linear attention over whole sequences: `q` `[batch, heads, len, d]`, `k` `[batch, kv_heads,
/// len, d]`, `v` `[batch, kv_heads, len, d_v]` (grouped-query heads share their key/value head).
///
/// `mask` may be [`AttentionMask::none`] or [`AttentionMask::causal`] (queries and keys of the
/// same length; to continue a sequence use [`LinearAttentionState`]), with key padding; biases
/// and sliding windows have no linear form and are refused. Returns `[batch, heads, len, d_v]`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{linear_attention, AttentionMask};
/// let dev = Device::Cpu;
/// let q = Tensor::randn(0f32, 1., (1, 4, 10, 8), &dev).unwrap();
/// let kv = Tensor::randn(0f32, 1., (1, 2, 10, 8), &dev).unwrap();
/// let out = linear_attention(&q, &kv, &kv, &AttentionMask::causal()).unwrap();
/// assert_eq!(out.dims(), &[1, 4, 10, 8]);
/// ```
pub fn linear_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
    if !mask.biases().is_empty() {
        candle_core::bail!("linear attention: additive score biases have no linear form");
    }
    let (q_len, kv_len) = (q.dim(2)?, k.dim(2)?);
    let fk = elu_feature_map(k)?;
    // Padded keys contribute nothing to the sums.
    let fk = match mask.key_padding() {
        None => fk,
        Some(keep) => {
            let (b, n) = keep.dims2()?;
            if (b, n) != (k.dim(0)?, kv_len) {
                candle_core::bail!(
                    "linear attention: key padding {:?} does not match keys {:?}",
                    keep.dims(),
                    k.dims()
                );
            }
            fk.broadcast_mul(&keep.ne(0u32)?.to_dtype(fk.dtype())?.reshape((b, 1, n, 1))?)?
        }
    };
    match mask.causality() {
        Causality::Bidirectional => {
            let (sum_kv, sum_k) = (fk.t()?.matmul(&v.contiguous()?)?, fk.sum_keepdim(2)?.t()?);
            let (num, den) = apply_state(&elu_feature_map(q)?, &sum_kv, &sum_k)?;
            num.broadcast_div(&den)
        }
        Causality::Causal if q_len == kv_len => LinearAttentionState::new().extend(q, &fk, v),
        Causality::Causal => candle_core::bail!(
            "linear attention: causal queries ({q_len}) and keys ({kv_len}) differ in length; continue a sequence \
             with LinearAttentionState"
        ),
        Causality::SlidingWindow { .. } => candle_core::bail!("linear attention: sliding windows have no linear form"),
    }
}

/// The state of causal linear attention after the tokens seen so far, per key/value head:
/// `S = Σ φ(k) vᵀ` (`[batch, kv_heads, d, d_v]`) and `z = Σ φ(k)` (`[batch, kv_heads, d, 1]`).
/// Decoding one token updates it in O(d · d_v), whatever the length so far (§3.4).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{linear_attention, AttentionMask, LinearAttentionState};
/// let dev = Device::Cpu;
/// let q = Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev).unwrap();
/// let kv = Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev).unwrap();
/// let full = linear_attention(&q, &kv, &kv, &AttentionMask::causal()).unwrap();
/// let mut state = LinearAttentionState::new();
/// let steps: Vec<Tensor> = (0..5)
///     .map(|t| { let s = |x: &Tensor| x.narrow(2, t, 1).unwrap(); state.step(&s(&q), &s(&kv), &s(&kv)).unwrap() })
///     .collect();
/// let diff = (full - Tensor::cat(&steps, 2).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
/// assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LinearAttentionState {
    sum_kv: Option<Tensor>,
    sum_k: Option<Tensor>,
    len: usize,
}

impl LinearAttentionState {
    /// The state before any token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens folded into the state so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Attends the new tokens (`q` `[batch, heads, n, d]`, `k`/`v` `[batch, kv_heads, n, ·]`)
    /// causally to every token seen so far and to each other, then folds them into the state.
    /// One token per call is the recurrent form of the paper.
    pub fn step(&mut self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        self.extend(q, &elu_feature_map(k)?, v)
    }

    /// [`step`](Self::step) with keys already through the feature map.
    fn extend(&mut self, q: &Tensor, fk: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (batch, heads, n, d) = q.dims4()?;
        let (kb, kv_heads, kn, kd) = fk.dims4()?;
        let (vb, vh, vn, d_v) = v.dims4()?;
        if (kb, kn, kd) != (batch, n, d) || (vb, vh, vn) != (batch, kv_heads, n) {
            candle_core::bail!(
                "linear attention: queries {:?}, keys {:?} and values {:?} do not fit together",
                q.dims(),
                fk.dims(),
                v.dims()
            );
        }
        let (_, group) = split_grouped_shape(heads, kv_heads)?;
        let device = q.device();
        let mut sum_kv = match &self.sum_kv {
            Some(s) => s.clone(),
            None => Tensor::zeros((batch, kv_heads, d, d_v), fk.dtype(), device)?,
        };
        let mut sum_k = match &self.sum_k {
            Some(z) => z.clone(),
            None => Tensor::zeros((batch, kv_heads, d, 1), fk.dtype(), device)?,
        };
        let fq = elu_feature_map(q)?.reshape((batch, kv_heads, group, n, d))?;
        let mut outputs = Vec::with_capacity(n.div_ceil(CHUNK));
        for start in (0..n).step_by(CHUNK) {
            let c = CHUNK.min(n - start);
            let qc = fq.narrow(3, start, c)?.contiguous()?.reshape((batch, kv_heads, group * c, d))?;
            let (kc, vc) = (fk.narrow(2, start, c)?.contiguous()?, v.narrow(2, start, c)?.contiguous()?);
            // Within the chunk: query i sees keys j ≤ i.
            let scores = qc.matmul(&kc.t()?)?.reshape((batch, kv_heads, group, c, c))?;
            let scores = scores.broadcast_mul(&lower_triangle(c, scores.dtype(), device)?)?;
            let scores = scores.reshape((batch, kv_heads, group * c, c))?;
            let (carried_num, carried_den) = apply_state(&qc, &sum_kv, &sum_k)?;
            let num = (scores.matmul(&vc)? + carried_num)?;
            let den = (scores.sum_keepdim(D::Minus1)? + carried_den)?;
            outputs.push(num.broadcast_div(&den)?.reshape((batch, kv_heads, group, c, d_v))?);
            sum_kv = (sum_kv + kc.t()?.matmul(&vc)?)?;
            sum_k = (sum_k + kc.sum_keepdim(2)?.t()?)?;
        }
        (self.sum_kv, self.sum_k) = (Some(sum_kv), Some(sum_k));
        self.len += n;
        Tensor::cat(&outputs, 3)?.reshape((batch, heads, n, d_v))
    }
}

/// Numerator `φ(q) S` and denominator `φ(q) z` of queries against a state; `fq` is
/// `[batch, kv_heads, group · n, d]` or `[batch, heads, n, d]`.
fn apply_state(fq: &Tensor, sum_kv: &Tensor, sum_k: &Tensor) -> Result<(Tensor, Tensor)> {
    let (batch, heads, n, d) = fq.dims4()?;
    let kv_heads = sum_kv.dim(1)?;
    let folded = fq.reshape((batch, kv_heads, heads / kv_heads * n, d))?;
    let num = folded.matmul(sum_kv)?;
    let den = folded.matmul(sum_k)?;
    let d_v = sum_kv.dim(3)?;
    Ok((num.reshape((batch, heads, n, d_v))?, den.reshape((batch, heads, n, 1))?))
}

/// `[n, n]` with ones on and below the diagonal.
fn lower_triangle(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let i = Tensor::arange(0u32, n as u32, device)?;
    i.unsqueeze(1)?.broadcast_ge(&i.unsqueeze(0)?)?.to_dtype(dtype)
}
