//! Multi-head latent attention (DeepSeek-AI 2024, "DeepSeek-V2: A Strong, Economical, and
//! Efficient Mixture-of-Experts Language Model", §2.1, eqs. 9–19).
//!
//! Keys and values come from one low-rank latent per token, `c = RMSNorm(W_DKV x)` of width
//! `rank`, expanded per head by `W_UK` (keys, `nope_dim`) and `W_UV` (values, `value_dim`);
//! rotary positions ride on a separate, decoupled part: `rope_dim` features of the query per
//! head and `rope_dim` key features shared by all heads (`k_R = RoPE(W_KR x)`). A head's score
//! is `q_C · k_C + q_R · k_R` over `nope_dim + rope_dim` features.
//!
//! Decoding never expands the cache: `W_UK` is absorbed into the queries (`q_C · W_UK c =
//! (W_UKᵀ q_C) · c`) and `W_UV` applied after the weighted sum of latents, so attention runs
//! over `[c ; k_R]` as a single key/value head and the layer's [`KvCache`] stores `rank +
//! rope_dim` numbers per token and layer ([`KvCache::append_shared`]) — against `2 · heads · head_dim` for standard attention.
//! [`LatentAttention::forward_expanded`] computes the paper's equations literally (keys and
//! values materialised per head); it is the reference the absorbed path is tested against.

use candle_core::{D, Module, Result, Tensor};
use tcat_core::Linear;
use tcat_position::{RotaryEmbedding, sequential_position_ids};

use crate::qk_norm::rms;
use crate::{AttentionKernel, AttentionMask, KvCache};

/// The widths of a latent attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentDims {
    /// Query heads.
    pub heads: usize,
    /// Per-head query/key features without positions (`qk_nope_head_dim`).
    pub nope_dim: usize,
    /// Per-head query features, and shared key features, that carry rotary positions
    /// (`qk_rope_head_dim`).
    pub rope_dim: usize,
    /// Per-head value width (`v_head_dim`).
    pub value_dim: usize,
    /// Width of the key/value latent (`kv_lora_rank`).
    pub rank: usize,
}

impl LatentDims {
    /// Width of one head's queries and keys: `nope_dim + rope_dim`.
    pub fn qk_dim(&self) -> usize {
        self.nope_dim + self.rope_dim
    }

    /// Numbers the cache keeps per token: `rank + rope_dim`.
    ///
    /// ```
    /// use tcat_attention::LatentDims;
    /// let dims = LatentDims { heads: 16, nope_dim: 128, rope_dim: 64, value_dim: 128, rank: 512 };
    /// // 576 numbers per token, against 16 × (192 + 128) = 5120 for standard keys and values.
    /// assert_eq!(dims.cached_per_token(), 576);
    /// ```
    pub fn cached_per_token(&self) -> usize {
        self.rank + self.rope_dim
    }
}

/// How the queries are projected.
#[derive(Debug, Clone)]
pub enum LatentQuery {
    /// One projection `hidden → heads · (nope_dim + rope_dim)` (DeepSeek-V2-Lite).
    Direct(Linear),
    /// Low-rank: `up(RMSNorm(down(x)) · gain)` (DeepSeek-V2, V3: `q_lora_rank`).
    LowRank {
        /// `hidden → q_rank`.
        down: Linear,
        /// The RMS norm's gains, `[q_rank]`.
        gain: Tensor,
        /// `q_rank → heads · (nope_dim + rope_dim)`.
        up: Linear,
    },
}

/// Multi-head latent attention: see the [module documentation](self).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{AttentionMask, LatentAttention, LatentDims, LatentQuery};
/// use tcat_core::Linear;
/// let dev = Device::Cpu;
/// let dims = LatentDims { heads: 2, nope_dim: 4, rope_dim: 2, value_dim: 3, rank: 5 };
/// let lin = |o: usize, i: usize| Linear::new(Tensor::randn(0f32, 0.3, (o, i), &dev).unwrap(), None);
/// let mla = LatentAttention::new(
///     LatentQuery::Direct(lin(2 * 6, 8)),
///     lin(5 + 2, 8),
///     Tensor::ones(5, candle_core::DType::F32, &dev).unwrap(),
///     lin(2 * (4 + 3), 5),
///     lin(8, 2 * 3),
///     dims,
///     1e-6,
/// ).unwrap();
/// let x = Tensor::randn(0f32, 1., (1, 3, 8), &dev).unwrap();
/// let mut cache = mla.new_cache(3);
/// let y = mla.forward(&x, &AttentionMask::causal(), None, Some(&mut cache)).unwrap();
/// let reference = mla.forward_expanded(&x, &AttentionMask::causal(), None).unwrap();
/// let diff: f32 = (y - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
/// assert!(diff < 1e-5);
/// assert_eq!(cache.len(), 3);
/// assert!(cache.is_shared()); // one [c ; k_R] per token, 5 + 2 numbers, no separate values
/// ```
#[derive(Debug, Clone)]
pub struct LatentAttention {
    query: LatentQuery,
    kv_down: Linear,
    kv_gain: Tensor,
    /// `W_UK` per head, `[heads, nope_dim, rank]`.
    key_up: Tensor,
    /// `W_UV` per head, transposed: `[heads, rank, value_dim]`.
    value_up_t: Tensor,
    out: Linear,
    dims: LatentDims,
    eps: f64,
    scale: f64,
    rotary: Option<RotaryEmbedding>,
    kernel: AttentionKernel,
}

impl LatentAttention {
    /// The layer from its projections: the queries, `kv_down` (`hidden → rank + rope_dim`, the
    /// latent then the shared rotary key), the latent's RMS-norm gains `kv_gain` `[rank]`,
    /// `kv_up` (`rank → heads · (nope_dim + value_dim)`, per head the key part then the value
    /// part; dense, as the absorbed path multiplies by its blocks) and `out`
    /// (`heads · value_dim → hidden`). The score scale defaults to `1/√(nope_dim + rope_dim)`.
    pub fn new(
        query: LatentQuery,
        kv_down: Linear,
        kv_gain: Tensor,
        kv_up: Linear,
        out: Linear,
        dims: LatentDims,
        eps: f64,
    ) -> Result<Self> {
        let LatentDims { heads, nope_dim, rope_dim, value_dim, rank } = dims;
        if heads == 0 || rank == 0 || dims.qk_dim() == 0 || value_dim == 0 {
            candle_core::bail!("latent attention: every width must be positive, found {dims:?}");
        }
        let q_out = match &query {
            LatentQuery::Direct(q) => q.out_features(),
            LatentQuery::LowRank { down, gain, up } => {
                if gain.dims() != [down.out_features()] || up.in_features() != down.out_features() {
                    candle_core::bail!(
                        "latent attention: query down {}→{}, gains {:?}, up {}→{} do not chain",
                        down.in_features(),
                        down.out_features(),
                        gain.dims(),
                        up.in_features(),
                        up.out_features()
                    );
                }
                up.out_features()
            }
        };
        let expect = |what: &str, found: (usize, usize), want: (usize, usize)| -> Result<()> {
            if found != want {
                candle_core::bail!(
                    "latent attention: {what} projects {}→{}, expected {}→{} for {dims:?}",
                    found.0,
                    found.1,
                    want.0,
                    want.1
                );
            }
            Ok(())
        };
        let hidden = kv_down.in_features();
        let q_in = match &query {
            LatentQuery::Direct(q) => q.in_features(),
            LatentQuery::LowRank { down, .. } => down.in_features(),
        };
        expect("the query", (q_in, q_out), (hidden, heads * dims.qk_dim()))?;
        expect("kv_down", (hidden, kv_down.out_features()), (hidden, rank + rope_dim))?;
        expect("kv_up", (kv_up.in_features(), kv_up.out_features()), (rank, heads * (nope_dim + value_dim)))?;
        expect("out", (out.in_features(), out.out_features()), (heads * value_dim, hidden))?;
        if kv_gain.dims() != [rank] {
            candle_core::bail!("latent attention: latent norm gains are {:?}, expected [{rank}]", kv_gain.dims());
        }
        if kv_up.bias().is_some() {
            candle_core::bail!("latent attention: kv_up must have no bias (decoding absorbs it into the queries)");
        }
        let Some(w) = kv_up.weight() else {
            candle_core::bail!("latent attention: kv_up must be dense (its blocks are absorbed into the queries)")
        };
        let w = w.reshape((heads, nope_dim + value_dim, rank))?;
        let key_up = w.narrow(1, 0, nope_dim)?.contiguous()?;
        let value_up_t = w.narrow(1, nope_dim, value_dim)?.transpose(1, 2)?.contiguous()?;
        Ok(Self {
            query,
            kv_down,
            kv_gain,
            key_up,
            value_up_t,
            out,
            dims,
            eps,
            scale: 1.0 / (dims.qk_dim() as f64).sqrt(),
            rotary: None,
            kernel: AttentionKernel::default(),
        })
    }

    /// Rotates the decoupled parts (`rope_dim` features) with `rotary`.
    pub fn with_rotary(mut self, rotary: RotaryEmbedding) -> Self {
        self.rotary = Some(rotary);
        self
    }

    /// Replaces the score scale (DeepSeek's YaRN scaling multiplies it by `mscale²`).
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Chooses the attention kernel of the absorbed path.
    pub fn with_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The widths.
    pub fn dims(&self) -> LatentDims {
        self.dims
    }

    /// An empty cache for `capacity` tokens (it will hold `rank + rope_dim` numbers per token).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(capacity)
    }

    /// The score scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The rotary embedding of the decoupled parts, if any.
    pub fn rotary(&self) -> Option<&RotaryEmbedding> {
        self.rotary.as_ref()
    }

    /// Queries `[batch, heads, seq, nope_dim]` and rotated decoupled queries
    /// `[batch, heads, seq, rope_dim]`, and the new tokens' latents with their rotated shared
    /// keys `[batch, 1, seq, rank + rope_dim]`.
    fn project(&self, x: &Tensor, positions: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let LatentDims { heads, nope_dim, rope_dim, rank, .. } = self.dims;
        let (b, s, _) = x.dims3()?;
        let q = match &self.query {
            LatentQuery::Direct(q) => q.forward(x)?,
            LatentQuery::LowRank { down, gain, up } => up.forward(&rms(&down.forward(x)?, gain, self.eps)?)?,
        };
        let q = q.reshape((b, s, heads, self.dims.qk_dim()))?.transpose(1, 2)?;
        let (q_nope, mut q_rope) =
            (q.narrow(3, 0, nope_dim)?.contiguous()?, q.narrow(3, nope_dim, rope_dim)?.contiguous()?);
        let kv = self.kv_down.forward(x)?;
        let latent = rms(&kv.narrow(2, 0, rank)?.contiguous()?, &self.kv_gain, self.eps)?.unsqueeze(1)?;
        let mut k_rope = kv.narrow(2, rank, rope_dim)?.contiguous()?.unsqueeze(1)?;
        if let Some(rope) = &self.rotary {
            q_rope = rope.apply(&q_rope, positions)?;
            k_rope = rope.apply(&k_rope, positions)?;
        }
        Ok((q_nope, q_rope, Tensor::cat(&[&latent, &k_rope], 3)?))
    }

    fn positions(&self, x: &Tensor, positions: Option<&Tensor>, past: usize) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        match positions {
            Some(p) => Ok(p.clone()),
            None => sequential_position_ids(b, s, past, x.device()),
        }
    }

    /// Self-attention over `x` `[batch, seq, hidden]`, in latent space: with a cache, `x`
    /// holds the new tokens only and their latents are appended. `positions` `[batch, seq]`
    /// place the tokens for rotary (by default they continue from the cache).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &AttentionMask,
        positions: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let LatentDims { heads, value_dim, rank, .. } = self.dims;
        let past = cache.as_ref().map_or(0, |c| c.len());
        let positions = self.positions(x, positions, past)?;
        let (q_nope, q_rope, new) = self.project(x, &positions)?;
        let keys = match cache {
            Some(cache) => cache.append_shared(&new)?,
            None => new,
        };
        // Absorb W_UK: per head, q_C · (W_UK c) = (W_UKᵀ q_C) · c.
        let q_latent = q_nope.broadcast_matmul(&self.key_up)?; // [b, h, s, rank]
        let q = Tensor::cat(&[&q_latent, &q_rope], 3)?.contiguous()?;
        // One key/value head: [c ; k_R] serves as both; the weighted sum's first `rank`
        // features are Σ p c, the rest (rotary keys) are dropped.
        let mixed = self.kernel.attention(&q, &keys, &keys, mask, self.scale)?;
        let latent_out = mixed.narrow(3, 0, rank)?.contiguous()?;
        let values = latent_out.broadcast_matmul(&self.value_up_t)?; // [b, h, s, value_dim]
        let (b, _, s, _) = values.dims4()?;
        self.out.forward(&values.transpose(1, 2)?.reshape((b, s, heads * value_dim))?)
    }

    /// The paper's equations literally, without cache: per-head keys `[W_UK c ; k_R]` and
    /// values `W_UV c` materialised, then the reference attention. Slow; for tests and reading.
    pub fn forward_expanded(&self, x: &Tensor, mask: &AttentionMask, positions: Option<&Tensor>) -> Result<Tensor> {
        let LatentDims { heads, rope_dim, value_dim, rank, .. } = self.dims;
        let positions = self.positions(x, positions, 0)?;
        let (q_nope, q_rope, new) = self.project(x, &positions)?;
        let (b, _, s, _) = new.dims4()?;
        let latent = new.narrow(3, 0, rank)?.squeeze(1)?.contiguous()?;
        let k_rope = new.narrow(3, rank, rope_dim)?.broadcast_as((b, heads, s, rope_dim))?;
        // k_C = W_UK c and v = W_UV c per head, from the blocks of kv_up kept by `new`.
        let latent = latent.unsqueeze(1)?; // [b, 1, s, rank]
        let k_nope = latent.broadcast_matmul(&self.key_up.transpose(1, 2)?)?; // [b, h, s, nope_dim]
        let v = latent.broadcast_matmul(&self.value_up_t)?; // [b, h, s, value_dim]
        let k = Tensor::cat(&[&k_nope, &k_rope], 3)?.contiguous()?;

        let q = Tensor::cat(&[&q_nope, &q_rope], 3)?;
        // The reference wants values as wide as keys: zeros pad both to the wider width (they
        // add nothing to a dot product, and the padded output features are dropped).
        let width = self.dims.qk_dim().max(value_dim);
        let pad = |t: &Tensor| -> Result<Tensor> {
            let (tb, th, ts, td) = t.dims4()?;
            match width - td {
                0 => t.contiguous(),
                extra => Tensor::cat(&[t, &Tensor::zeros((tb, th, ts, extra), t.dtype(), t.device())?], 3),
            }
        };
        let (q, k, v) = (pad(&q)?, pad(&k)?, pad(&v)?);
        let y = crate::reference::attention(&q, &k, &v, mask, self.scale)?.to_dtype(x.dtype())?;
        let y = y.narrow(D::Minus1, 0, value_dim)?.transpose(1, 2)?.reshape((b, s, heads * value_dim))?;
        self.out.forward(&y)
    }
}
