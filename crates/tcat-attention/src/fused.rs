//! Memory-efficient fused attention on the CPU: tiles and an online softmax.
//!
//! Implements the tiled forward pass of FlashAttention (Dao, Fu, Ermon, Rudra and Ré 2022,
//! "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness", Algorithm 1)
//! on top of the online softmax of Milakov and Gimelshein (2018, "Online normalizer calculation
//! for softmax", Algorithm 3). Queries are cut into tiles of [`ROWS`] rows and keys into tiles
//! of [`COLS`] keys; for each query tile the key tiles stream past while every row keeps a running
//! maximum `m`, a running sum `ℓ` of `exp(s − m)` and an unnormalised output `o`. When a tile
//! raises the maximum to `m'`, the old `ℓ` and `o` are rescaled by `exp(m − m')`; at the end the
//! row is `o / ℓ`. The `seq × seq` score matrix is never materialised: memory is the inputs, the
//! output and a few tiles per thread.
//!
//! Tiles that a mask hides entirely are skipped (causal attention does about half the work, a
//! sliding window of `w` keys costs `O(n · w)`), tiles it shows entirely skip the per-element
//! test. Which keys a query sees, and how a tile is covered, come from the mask's
//! [`VisibilityPlan`], the same plan the materialised path turns into its boolean mask.
//!
//! Compute is `f32` whatever the input dtype; on x86-64 CPUs with AVX2 and FMA the kernel is
//! compiled a second time for them and chosen at run time.

use std::ops::Range;

use candle_core::{DType, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::mask::AttentionMask;
use crate::sdpa::scaled_dot_product_attention;
use crate::{AttentionKernel, AttentionShape, TileCover, VisibilityPlan};
use tcat_core::math::exp;

/// Query rows per tile: whole register blocks of [`BLOCK_ROWS`].
const ROWS: usize = 66;
/// Keys per tile.
const COLS: usize = 64;
/// Width of the register blocks of the micro-kernels (two AVX registers).
const LANES: usize = 16;
/// Rows of the register blocks of the micro-kernels: 6 × 16 accumulators fill 12 of AVX2's 16
/// registers, the shape of gemm's f32 micro-kernel (4 rows measured about a tenth slower).
const BLOCK_ROWS: usize = 6;

/// Memory-efficient scaled dot-product attention, `softmax(Q Kᵀ · scale + bias, masked) V`,
/// computed tile by tile with an online softmax (Milakov & Gimelshein 2018; Dao et al. 2022,
/// FlashAttention, Algorithm 1) so that the `q_len × kv_len` scores are never stored.
///
/// Same contract as [`scaled_dot_product_attention`]: `q` is `[batch, heads, q_len, head_dim]`,
/// `k` and `v` are `[batch, kv_heads, kv_len, head_dim]` with `heads` a multiple of `kv_heads`
/// (grouped-query heads read their shared key/value head; nothing is repeated), `mask` gives the
/// causality (bottom-right aligned causal, sliding window), key padding and additive biases
/// (added after scaling), and a [soft-cap](AttentionMask::with_logit_softcap) of the scaled
/// scores (applied before the biases). Returns `[batch, heads, q_len, head_dim]` in the dtype of `q`.
///
/// A query that sees no key at all (all its keys padded, or a causal query placed before the
/// first key) gets the uniform average of all `kv_len` values, exactly what
/// [`scaled_dot_product_attention`] gives when it fills masked scores with the dtype minimum.
/// A score of `-inf` coming from a bias counts as masked.
///
/// On the CPU with `f32`, `f16` or `bf16` inputs the fused kernel runs in `f32`, in parallel over
/// batch, key/value head and query tile; on other devices or dtypes this calls
/// [`scaled_dot_product_attention`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_attention::{fused_attention, scaled_dot_product_attention, AttentionMask};
/// let dev = Device::Cpu;
/// // batch 1, 4 query heads sharing 2 key/value heads, 100 tokens, head_dim 16
/// let q = Tensor::randn(0f32, 1., (1, 4, 100, 16), &dev).unwrap();
/// let k = Tensor::randn(0f32, 1., (1, 2, 100, 16), &dev).unwrap();
/// let v = Tensor::randn(0f32, 1., (1, 2, 100, 16), &dev).unwrap();
/// let mask = AttentionMask::causal().with_sliding_window(32);
/// let fused = fused_attention(&q, &k, &v, &mask, 0.25).unwrap();
/// let plain = scaled_dot_product_attention(&q, &k, &v, &mask, 0.25).unwrap();
/// let diff = (fused - plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
/// assert!(diff < 1e-5);
/// ```
pub fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttentionMask, scale: f64) -> Result<Tensor> {
    let shape = AttentionShape::check(q, k, v)?;
    let AttentionShape { batch, heads, kv_heads, group, q_len, kv_len, head_dim } = shape;
    let dtype = q.dtype();
    if AttentionKernel::Fused.resolve(q, mask) != AttentionKernel::Fused {
        return scaled_dot_product_attention(q, k, v, mask, scale);
    }
    if q_len == 0 || head_dim == 0 || batch == 0 || heads == 0 {
        return Tensor::zeros((batch, heads, q_len, head_dim), dtype, q.device());
    }
    if kv_len == 0 {
        candle_core::bail!("fused_attention: kv_len is 0, there is nothing to attend to");
    }
    let plan = mask.plan(batch, q_len, kv_len)?;

    let to_f32 = |t: &Tensor| t.to_dtype(DType::F32)?.contiguous();
    let (q, k, v) = (to_f32(q)?, to_f32(k)?, to_f32(v)?);
    let keep = plan.key_padding().map(to_f32).transpose()?;
    let segments = plan.segments().map(to_f32).transpose()?;
    let bias = shape.summed_bias(mask, DType::F32)?;

    let (q_guard, q_layout) = q.storage_and_layout();
    let (k_guard, k_layout) = k.storage_and_layout();
    let (v_guard, v_layout) = v.storage_and_layout();
    let keep_guard = keep.as_ref().map(|t| t.storage_and_layout());
    let segments_guard = segments.as_ref().map(|t| t.storage_and_layout());
    let bias_guard = bias.as_ref().map(|t| t.storage_and_layout());
    let bias_view = match &bias_guard {
        None => None,
        Some((guard, layout)) => {
            let stride = layout.stride();
            Some(BiasView {
                data: cpu_f32(guard)?,
                start: layout.start_offset(),
                stride: [stride[0], stride[1], stride[2], stride[3]],
            })
        }
    };
    let problem = Problem {
        q: contiguous_f32(&q_guard, q_layout)?,
        k: contiguous_f32(&k_guard, k_layout)?,
        v: contiguous_f32(&v_guard, v_layout)?,
        keep: keep_guard.as_ref().map(|(g, l)| contiguous_f32(g, l)).transpose()?,
        segments: segments_guard.as_ref().map(|(g, l)| contiguous_f32(g, l)).transpose()?,
        bias: bias_view,
        kv_heads,
        group,
        q_len,
        kv_len,
        head_dim,
        scale: scale as f32,
        softcap: mask.logit_softcap().map(|cap| cap as f32),
    };
    let out = run(&problem, &plan, batch);
    Tensor::from_vec(out, (batch, heads, q_len, head_dim), q.device())?.to_dtype(dtype)
}

fn cpu_f32(storage: &Storage) -> Result<&[f32]> {
    match storage {
        Storage::Cpu(s) => s.as_slice::<f32>(),
        _ => candle_core::bail!("fused_attention: expected a CPU tensor"),
    }
}

fn contiguous_f32<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    if !layout.is_contiguous() {
        candle_core::bail!("fused_attention: internal error, expected a contiguous tensor");
    }
    let start = layout.start_offset();
    Ok(&cpu_f32(storage)?[start..start + layout.shape().elem_count()])
}

/// A `[batch, heads, q_len, kv_len]` view of the summed biases (strides may be 0).
struct BiasView<'a> {
    data: &'a [f32],
    start: usize,
    stride: [usize; 4],
}

/// The contiguous `f32` inputs of one call.
struct Problem<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    keep: Option<&'a [f32]>,
    /// Segment ids `[batch, kv_len]` of packed sequences (block-diagonal masks), as f32.
    segments: Option<&'a [f32]>,
    bias: Option<BiasView<'a>>,
    kv_heads: usize,
    group: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
    scale: f32,
    /// The soft-cap `c` of the scaled scores, `c · tanh(s / c)`, if any.
    softcap: Option<f32>,
}

/// One unit of parallel work: rows `rows` of the `[group · q_len]` queries of key/value head
/// `kv_head` in batch row `batch`. Rows are `(query head in group, query)` pairs in that order,
/// which is also the memory order of `q` and of the output.
struct Task<'o> {
    batch: usize,
    kv_head: usize,
    rows: Range<usize>,
    out: &'o mut [f32],
}

/// Per-thread tile buffers. `dp` is `head_dim` rounded up to [`LANES`]; the padding stays zero.
struct Scratch {
    dp: usize,
    q: Vec<f32>, // [ROWS, dp], pre-scaled queries
    v: Vec<f32>, // [COLS, dp]
    s: Vec<f32>, // [ROWS, COLS], scores then probabilities
    o: Vec<f32>, // [ROWS, dp], unnormalised outputs
    m: [f32; ROWS],
    l: [f32; ROWS],
    query: [usize; ROWS],
    head: [usize; ROWS],
}

impl Scratch {
    fn new(head_dim: usize) -> Self {
        let dp = head_dim.div_ceil(LANES) * LANES;
        Self {
            dp,
            q: vec![0.; ROWS * dp],
            v: vec![0.; COLS * dp],
            s: vec![0.; ROWS * COLS],
            o: vec![0.; ROWS * dp],
            m: [f32::NEG_INFINITY; ROWS],
            l: [0.; ROWS],
            query: [0; ROWS],
            head: [0; ROWS],
        }
    }
}

/// The keys of every key/value head transposed once per call, tile by tile: `[batch · kv_heads,
/// tiles, dp, COLS]` (padding zero), so that every query tile reads a key tile's `Kᵀ` as one
/// contiguous block instead of transposing it again.
struct KeysT {
    data: Vec<f32>,
    dp: usize,
    tiles: usize,
}

impl KeysT {
    fn new(p: &Problem, batch: usize) -> Self {
        let (d, dp) = (p.head_dim, p.head_dim.div_ceil(LANES) * LANES);
        let tiles = p.kv_len.div_ceil(COLS);
        let mut data = vec![0f32; batch * p.kv_heads * tiles * dp * COLS];
        data.par_chunks_mut(dp * COLS).enumerate().for_each(|(i, dst)| {
            let (bkv, t) = (i / tiles, i % tiles);
            let first = bkv * p.kv_len + t * COLS;
            let count = COLS.min(p.kv_len - t * COLS);
            for (c, key) in p.k[first * d..(first + count) * d].chunks_exact(d).enumerate() {
                for (x, &kx) in key.iter().enumerate() {
                    dst[x * COLS + c] = kx;
                }
            }
        });
        Self { data, dp, tiles }
    }

    /// `Kᵀ` `[dp, COLS]` of the key tile starting at key `j0` of key/value head `bkv`.
    fn tile(&self, bkv: usize, j0: usize) -> &[f32] {
        let start = (bkv * self.tiles + j0 / COLS) * self.dp * COLS;
        &self.data[start..start + self.dp * COLS]
    }
}

/// Splits the output into tasks and runs them in parallel; returns `[batch, heads, q_len, d]`.
fn run(p: &Problem, plan: &VisibilityPlan, batch: usize) -> Vec<f32> {
    let kt = KeysT::new(p, batch);
    let rows_per_kv = p.group * p.q_len;
    let mut out = vec![0f32; batch * p.kv_heads * rows_per_kv * p.head_dim];
    // Tiles never straddle two query heads when a head has at least a tile of queries, so the
    // causal skipping stays exact; short queries (decoding) fold the heads of a group together.
    let mut ranges = Vec::new();
    if p.q_len >= ROWS {
        for g in 0..p.group {
            let mut r = 0;
            while r < p.q_len {
                let end = (r + ROWS).min(p.q_len);
                ranges.push(g * p.q_len + r..g * p.q_len + end);
                r = end;
            }
        }
    } else {
        let mut r = 0;
        while r < rows_per_kv {
            let end = (r + ROWS).min(rows_per_kv);
            ranges.push(r..end);
            r = end;
        }
    }
    let mut tasks = Vec::with_capacity(batch * p.kv_heads * ranges.len());
    for (bkv, mut block) in out.chunks_mut(rows_per_kv * p.head_dim).enumerate() {
        for range in &ranges {
            let (tile, rest) = block.split_at_mut(range.len() * p.head_dim);
            block = rest;
            tasks.push(Task { batch: bkv / p.kv_heads, kv_head: bkv % p.kv_heads, rows: range.clone(), out: tile });
        }
    }
    let fast = simd_available();
    tasks.into_par_iter().for_each_init(
        || Scratch::new(p.head_dim),
        |scratch, task| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: `simd_available` checked that the CPU has AVX2 and FMA.
                unsafe { tile_avx2(p, plan, &kt, task, scratch) };
                return;
            }
            let _ = fast;
            tile::<false>(p, plan, &kt, task, scratch)
        },
    );
    out
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(p: &Problem, plan: &VisibilityPlan, kt: &KeysT, task: Task, scratch: &mut Scratch) {
    tile::<true>(p, plan, kt, task, scratch)
}

/// `a · b + c`, fused when the kernel is compiled for FMA.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// One query tile against all the key tiles it sees (Algorithm 1, lines 7–15, of Dao et al.).
#[inline(always)]
fn tile<const FMA: bool>(p: &Problem, plan: &VisibilityPlan, keys_t: &KeysT, task: Task, sc: &mut Scratch) {
    let (d, dp, n_rows) = (p.head_dim, sc.dp, task.rows.len());
    let padded_rows = n_rows.div_ceil(BLOCK_ROWS) * BLOCK_ROWS;
    let bkv = task.batch * p.kv_heads + task.kv_head;
    let q_base = bkv * p.group * p.q_len * d;
    let kv_base = bkv * p.kv_len * d;

    for (r, row) in task.rows.clone().enumerate() {
        sc.query[r] = row % p.q_len;
        sc.head[r] = task.kv_head * p.group + row / p.q_len;
        let src = &p.q[q_base + row * d..q_base + (row + 1) * d];
        for (dst, &x) in sc.q[r * dp..r * dp + d].iter_mut().zip(src) {
            *dst = x * p.scale;
        }
    }
    sc.q[n_rows * dp..padded_rows * dp].fill(0.);
    sc.m[..padded_rows].fill(f32::NEG_INFINITY);
    sc.l[..padded_rows].fill(0.);
    sc.o[..padded_rows * dp].fill(0.);
    let straddles = (task.rows.end - 1) / p.q_len != task.rows.start / p.q_len;
    let queries = if straddles { 0..p.q_len } else { sc.query[0]..sc.query[n_rows - 1] + 1 };
    let keep = p.keep.map(|keep| &keep[task.batch * p.kv_len..(task.batch + 1) * p.kv_len]);
    let segments = p.segments.map(|ids| &ids[task.batch * p.kv_len..(task.batch + 1) * p.kv_len]);
    let offset = p.kv_len.saturating_sub(p.q_len);
    let patterned = !plan.patterns().is_empty();

    // Key tiles outside the keys these rows can see are never looked at.
    let seen = plan.keys_seen(queries.clone());
    let mut j0 = seen.start / COLS * COLS;
    while j0 < seen.end {
        let n_cols = COLS.min(p.kv_len - j0);
        let keys = j0..j0 + n_cols;
        let cover = plan.cover(queries.clone(), keys.clone());
        if cover == TileCover::Hidden {
            j0 += n_cols;
            continue;
        }
        // Stage V of this tile (rows past n_cols keep stale finite values; their scores are
        // masked below). Kᵀ is read in place (`KeysT`; columns past kv_len are zero).
        for c in 0..n_cols {
            let vrow = &p.v[kv_base + (j0 + c) * d..kv_base + (j0 + c + 1) * d];
            sc.v[c * dp..c * dp + d].copy_from_slice(vrow);
        }
        scores::<FMA>(&sc.q, keys_t.tile(bkv, j0), &mut sc.s, padded_rows, dp);

        for r in 0..padded_rows {
            let s = &mut sc.s[r * COLS..(r + 1) * COLS];
            if r >= n_rows {
                s.fill(0.);
                continue;
            }
            let (i, h) = (sc.query[r], sc.head[r]);
            if let Some(cap) = p.softcap {
                for x in &mut s[..n_cols] {
                    *x = cap * (*x / cap).tanh();
                }
            }
            if let Some(bias) = &p.bias {
                let base = bias.start + task.batch * bias.stride[0] + h * bias.stride[1] + i * bias.stride[2];
                for (c, x) in s[..n_cols].iter_mut().enumerate() {
                    *x += bias.data[base + (j0 + c) * bias.stride[3]];
                }
            }
            if cover == TileCover::Partial {
                // The row's causal key range, then the patterns key by key.
                let range = plan.row_keys(i);
                let lo = range.start.clamp(j0, j0 + n_cols) - j0;
                let hi = range.end.clamp(j0 + lo, j0 + n_cols) - j0;
                s[..lo].fill(f32::NEG_INFINITY);
                s[hi..n_cols].fill(f32::NEG_INFINITY);
                if patterned {
                    for (c, x) in s[lo..hi].iter_mut().enumerate() {
                        if !plan.patterns_allow(i, j0 + lo + c) {
                            *x = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            if let Some(keep) = keep {
                for (x, &k) in s[..n_cols].iter_mut().zip(&keep[j0..j0 + n_cols]) {
                    if k == 0. {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            if let Some(ids) = segments {
                let own = ids[i + offset];
                for (x, &id) in s[..n_cols].iter_mut().zip(&ids[j0..j0 + n_cols]) {
                    if id != own {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            s[n_cols..].fill(f32::NEG_INFINITY);

            let m_new = sc.m[r].max(row_max(s));
            if m_new == f32::NEG_INFINITY {
                s.fill(0.); // nothing visible in this row yet
                continue;
            }
            let alpha = exp(sc.m[r] - m_new);
            sc.l[r] = sc.l[r] * alpha + exp_shifted_sum(s, m_new);
            sc.m[r] = m_new;
            if alpha != 1. {
                for x in &mut sc.o[r * dp..(r + 1) * dp] {
                    *x *= alpha;
                }
            }
        }
        accumulate::<FMA>(&sc.s, &sc.v, &mut sc.o, padded_rows, n_cols, dp);
        j0 += n_cols;
    }

    let mut mean: Option<Vec<f32>> = None;
    for (r, out) in task.out.chunks_exact_mut(d).enumerate() {
        if sc.m[r] == f32::NEG_INFINITY {
            // Every key masked: the uniform average of all values, as the materialised path gives.
            let mean = mean.get_or_insert_with(|| {
                let mut sum = vec![0f32; d];
                for vrow in p.v[kv_base..kv_base + p.kv_len * d].chunks_exact(d) {
                    for (s, &x) in sum.iter_mut().zip(vrow) {
                        *s += x;
                    }
                }
                sum.iter().map(|s| s / p.kv_len as f32).collect()
            });
            out.copy_from_slice(mean);
        } else {
            let inv = 1. / sc.l[r];
            for (o, &x) in out.iter_mut().zip(&sc.o[r * dp..r * dp + d]) {
                *o = x * inv;
            }
        }
    }
}

/// `s[r, c] = Σ_x q[r, x] · kt[x, c]` for `r < rows`, all `COLS` columns, in 4 × 16 register blocks.
#[inline(always)]
fn scores<const FMA: bool>(q: &[f32], kt: &[f32], s: &mut [f32], rows: usize, dp: usize) {
    for r0 in (0..rows).step_by(BLOCK_ROWS) {
        let qr: [&[f32]; BLOCK_ROWS] = std::array::from_fn(|rr| &q[(r0 + rr) * dp..(r0 + rr + 1) * dp]);
        for c0 in (0..COLS).step_by(LANES) {
            let mut acc = [[0f32; LANES]; BLOCK_ROWS];
            for (x, krow) in kt.chunks_exact(COLS).take(dp).enumerate() {
                let kv: &[f32; LANES] = krow[c0..c0 + LANES].try_into().expect("LANES columns");
                for rr in 0..BLOCK_ROWS {
                    let qx = qr[rr][x];
                    for l in 0..LANES {
                        acc[rr][l] = madd::<FMA>(qx, kv[l], acc[rr][l]);
                    }
                }
            }
            for (rr, a) in acc.iter().enumerate() {
                s[(r0 + rr) * COLS + c0..(r0 + rr) * COLS + c0 + LANES].copy_from_slice(a);
            }
        }
    }
}

/// `o[r, x] += Σ_{c < cols} p[r, c] · v[c, x]` for `r < rows`, in 4 × 16 register blocks.
#[inline(always)]
fn accumulate<const FMA: bool>(p: &[f32], v: &[f32], o: &mut [f32], rows: usize, cols: usize, dp: usize) {
    for r0 in (0..rows).step_by(BLOCK_ROWS) {
        let pr: [&[f32]; BLOCK_ROWS] = std::array::from_fn(|rr| &p[(r0 + rr) * COLS..(r0 + rr) * COLS + cols]);
        for x0 in (0..dp).step_by(LANES) {
            let mut acc = [[0f32; LANES]; BLOCK_ROWS];
            for (rr, a) in acc.iter_mut().enumerate() {
                a.copy_from_slice(&o[(r0 + rr) * dp + x0..(r0 + rr) * dp + x0 + LANES]);
            }
            for (c, vrow) in v.chunks_exact(dp).take(cols).enumerate() {
                let vv: &[f32; LANES] = vrow[x0..x0 + LANES].try_into().expect("LANES columns");
                for rr in 0..BLOCK_ROWS {
                    let pc = pr[rr][c];
                    for l in 0..LANES {
                        acc[rr][l] = madd::<FMA>(pc, vv[l], acc[rr][l]);
                    }
                }
            }
            for (rr, a) in acc.iter().enumerate() {
                o[(r0 + rr) * dp + x0..(r0 + rr) * dp + x0 + LANES].copy_from_slice(a);
            }
        }
    }
}

/// The maximum of a `COLS`-long row, lane-wise so that it vectorises.
#[inline(always)]
fn row_max(s: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in s.chunks_exact(LANES) {
        for l in 0..LANES {
            lanes[l] = if chunk[l] > lanes[l] { chunk[l] } else { lanes[l] };
        }
    }
    lanes.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// Replaces each `x` of a `COLS`-long row by `exp(x − m)` and returns their sum.
#[inline(always)]
fn exp_shifted_sum(s: &mut [f32], m: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    for chunk in s.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            let e = exp(chunk[l] - m);
            chunk[l] = e;
            lanes[l] += e;
        }
    }
    lanes.iter().sum()
}
