//! The attention contract, checked once: the shapes of `q`, `k`, `v` ([`AttentionShape`]) and
//! what a mask means for them ([`VisibilityPlan`]).
//!
//! Scaled dot-product attention (Vaswani et al. 2017, eq. 1) lets query `i` see key `j` when
//! the causality, every sparse pattern, the key padding, the segment ids and any explicit mask
//! all allow it. Both kernels read that rule from here: the materialised path turns the plan
//! into a boolean tensor ([`VisibilityPlan::allowed`]), the tiled kernel asks it which tiles
//! are hidden, fully visible or partial ([`VisibilityPlan::cover`]) and which keys each row of
//! a partial tile sees ([`VisibilityPlan::row_keys`], [`VisibilityPlan::patterns_allow`]).

use std::ops::Range;

use candle_core::{DType, Device, Result, Tensor};

use crate::{AttentionMask, Causality, SparsePattern};

/// The checked shapes of one attention call: `q` `[batch, heads, q_len, head_dim]`, `k` and `v`
/// `[batch, kv_heads, kv_len, head_dim]` with `heads` a multiple of `kv_heads`, one dtype.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_attention::AttentionShape;
/// let dev = Device::Cpu;
/// let q = Tensor::zeros((1, 8, 3, 16), DType::F32, &dev).unwrap();
/// let kv = Tensor::zeros((1, 2, 5, 16), DType::F32, &dev).unwrap();
/// let shape = AttentionShape::check(&q, &kv, &kv).unwrap();
/// assert_eq!((shape.group, shape.q_len, shape.kv_len), (4, 3, 5));
/// let bad = Tensor::zeros((1, 3, 5, 16), DType::F32, &dev).unwrap();
/// assert!(AttentionShape::check(&q, &bad, &bad).unwrap_err().to_string().contains("num_kv_heads (3)"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Batch rows.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Query heads per key/value head, `heads / kv_heads`.
    pub group: usize,
    /// Queries per row.
    pub q_len: usize,
    /// Keys per row.
    pub kv_len: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl AttentionShape {
    /// Checks `q`, `k`, `v` against the contract; errors name the tensor and both shapes.
    pub fn check(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Self> {
        let (batch, heads, q_len, head_dim) = q.dims4()?;
        let (kb, kv_heads, kv_len, kd) = k.dims4()?;
        if k.dims() != v.dims() {
            candle_core::bail!("attention: keys {:?} and values {:?} differ in shape", k.dims(), v.dims());
        }
        if kb != batch || kd != head_dim {
            candle_core::bail!(
                "attention: keys {:?} do not match queries {:?} in batch or head_dim",
                k.dims(),
                q.dims()
            );
        }
        if k.dtype() != q.dtype() || v.dtype() != q.dtype() {
            candle_core::bail!("attention: q, k, v dtypes differ: {:?}, {:?}, {:?}", q.dtype(), k.dtype(), v.dtype());
        }
        let (_, group) = crate::split_grouped_shape(heads, kv_heads)?;
        Ok(Self { batch, heads, kv_heads, group, q_len, kv_len, head_dim })
    }

    /// Checks that every bias of `mask` broadcasts to `[batch, heads, q_len, kv_len]`; the
    /// error names the bias shape and the expected one.
    pub fn check_biases(&self, mask: &AttentionMask) -> Result<()> {
        let full = (self.batch, self.heads, self.q_len, self.kv_len);
        for bias in mask.biases() {
            if bias.broadcast_as(full).is_err() {
                candle_core::bail!(
                    "attention bias has shape {:?}, expected one broadcastable to [batch={}, heads={}, q_len={}, kv_len={}]",
                    bias.dims(),
                    self.batch,
                    self.heads,
                    self.q_len,
                    self.kv_len
                );
            }
        }
        Ok(())
    }

    /// The mask's biases summed in `dtype` and broadcast to `[batch, heads, q_len, kv_len]`, or
    /// `None` without biases (checked by [`check_biases`](Self::check_biases)).
    pub fn summed_bias(&self, mask: &AttentionMask, dtype: DType) -> Result<Option<Tensor>> {
        self.check_biases(mask)?;
        let mut sum: Option<Tensor> = None;
        for bias in mask.biases() {
            let b = bias.to_dtype(dtype)?;
            sum = Some(match sum {
                None => b,
                Some(s) => s.broadcast_add(&b)?,
            });
        }
        sum.map(|s| s.broadcast_as((self.batch, self.heads, self.q_len, self.kv_len))).transpose()
    }
}

/// How a tile of queries × keys is covered by a mask's structural rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileCover {
    /// No query of the tile sees any key of the tile: a kernel skips it.
    Hidden,
    /// Every query sees every key: no per-element test.
    Visible,
    /// Some pairs are hidden: test each row with [`VisibilityPlan::row_keys`] and
    /// [`VisibilityPlan::patterns_allow`].
    Partial,
}

/// What a mask means for `q_len` queries at the end of `kv_len` keys, checked once.
///
/// The structural part (causality and sparse patterns, the same in every batch row and head) is
/// answered per pair, per row and per tile; the per-row parts (key padding, segment ids,
/// explicit masks) are validated here and handed to the kernels as tensors.
///
/// ```
/// use tcat_attention::{AttentionMask, TileCover, VisibilityPlan};
/// let plan = VisibilityPlan::new(&AttentionMask::causal().with_sliding_window(3), 1, 6, 6).unwrap();
/// assert_eq!(plan.row_keys(4), 2..5);
/// assert_eq!(plan.cover(4..6, 0..2), TileCover::Hidden);
/// assert_eq!(plan.cover(4..5, 2..5), TileCover::Visible);
/// assert_eq!(plan.cover(0..6, 0..6), TileCover::Partial);
/// ```
#[derive(Debug, Clone)]
pub struct VisibilityPlan {
    causality: Causality,
    patterns: Vec<SparsePattern>,
    batch: usize,
    q_len: usize,
    kv_len: usize,
    /// Absolute position of query row 0 (`kv_len − q_len`; negative when there are more
    /// queries than keys).
    offset: i64,
    key_padding: Option<Tensor>,
    segments: Option<Tensor>,
    explicit: Option<Tensor>,
}

impl VisibilityPlan {
    /// Validates `mask` for `batch` rows of `q_len` queries and `kv_len` keys: key padding and
    /// segment ids `[batch, kv_len]` (segments need `q_len ≤ kv_len`), explicit masks
    /// broadcastable to `[batch, 1, q_len, kv_len]`, pattern parameters. Errors name the part.
    pub fn new(mask: &AttentionMask, batch: usize, q_len: usize, kv_len: usize) -> Result<Self> {
        for pattern in mask.patterns() {
            pattern.validate()?;
        }
        if let Some(keep) = mask.key_padding()
            && keep.dims() != [batch, kv_len]
        {
            candle_core::bail!(
                "key padding mask has shape {:?}, expected [batch={batch}, kv_len={kv_len}]",
                keep.dims()
            );
        }
        if let Some(ids) = mask.segments()
            && (ids.dims() != [batch, kv_len] || q_len > kv_len)
        {
            candle_core::bail!(
                "segment ids have shape {:?}, expected [batch={batch}, kv_len={kv_len}] with q_len={q_len} ≤ kv_len",
                ids.dims()
            );
        }
        if let Some(explicit) = mask.explicit()
            && explicit.broadcast_as((batch, 1, q_len, kv_len)).is_err()
        {
            candle_core::bail!(
                "explicit attention mask has shape {:?}, expected one broadcastable to [batch={batch}, 1, q_len={q_len}, kv_len={kv_len}]",
                explicit.dims()
            );
        }
        Ok(Self {
            causality: mask.causality(),
            patterns: mask.patterns().to_vec(),
            batch,
            q_len,
            kv_len,
            offset: kv_len as i64 - q_len as i64,
            key_padding: mask.key_padding().cloned(),
            segments: mask.segments().cloned(),
            explicit: mask.explicit().cloned(),
        })
    }

    /// The causality.
    pub fn causality(&self) -> Causality {
        self.causality
    }

    /// The sparse patterns (ANDed).
    pub fn patterns(&self) -> &[SparsePattern] {
        &self.patterns
    }

    /// The validated key padding `[batch, kv_len]`, if any.
    pub fn key_padding(&self) -> Option<&Tensor> {
        self.key_padding.as_ref()
    }

    /// The validated segment ids `[batch, kv_len]`, if any.
    pub fn segments(&self) -> Option<&Tensor> {
        self.segments.as_ref()
    }

    /// The validated explicit mask, if any.
    pub fn explicit(&self) -> Option<&Tensor> {
        self.explicit.as_ref()
    }

    /// Absolute position of query row `row` among the keys (`kv_len − q_len + row`).
    #[inline]
    pub fn position(&self, row: usize) -> i64 {
        row as i64 + self.offset
    }

    /// The keys query row `row` may see under the causality alone (patterns aside).
    #[inline]
    pub fn row_keys(&self, row: usize) -> Range<usize> {
        self.causality.key_range(self.position(row), self.kv_len)
    }

    /// Whether every sparse pattern lets query row `row` see key `key` (true without patterns).
    #[inline]
    pub fn patterns_allow(&self, row: usize, key: usize) -> bool {
        let p = self.position(row);
        self.patterns.iter().all(|pattern| p >= 0 && pattern.allows(p as usize, key, self.kv_len))
    }

    /// Whether query row `row` may see key `key` under the causality and the patterns.
    #[inline]
    pub fn allows(&self, row: usize, key: usize) -> bool {
        self.row_keys(row).contains(&key) && self.patterns_allow(row, key)
    }

    /// The keys any of query rows `rows` (non-empty) may see under the causality: from the
    /// first row's first key to the last row's last (both ends of
    /// [`row_keys`](Self::row_keys) grow with the row, and consecutive rows' ranges touch). A
    /// kernel need not look at key tiles outside it.
    #[inline]
    pub fn keys_seen(&self, rows: Range<usize>) -> Range<usize> {
        if matches!(self.causality, Causality::SlidingWindow { window: 0 }) {
            return 0..0;
        }
        let (first, last) = (self.row_keys(rows.start), self.row_keys(rows.end - 1));
        first.start..last.end.max(first.start)
    }

    /// How the causality and the patterns cover query rows `rows` × keys `keys` (both
    /// non-empty); never `Hidden` or `Visible` wrongly.
    #[inline]
    pub fn cover(&self, rows: Range<usize>, keys: Range<usize>) -> TileCover {
        let (first, last) = (self.position(rows.start), self.position(rows.end - 1));
        let mut cover = self.causality.tile_cover(first, last, keys.clone(), self.kv_len);
        let (Ok(q0), Ok(q1)) = (usize::try_from(first), usize::try_from(last)) else {
            // Rows before the first key see nothing through a pattern: test them one by one.
            return if self.patterns.is_empty() || cover == TileCover::Hidden { cover } else { TileCover::Partial };
        };
        for pattern in &self.patterns {
            if cover == TileCover::Hidden {
                break;
            }
            cover = match pattern.tile(q0, q1 + 1, keys.start, keys.end, self.kv_len) {
                (false, _) => TileCover::Hidden,
                (true, true) => cover,
                (true, false) => TileCover::Partial,
            };
        }
        cover
    }

    /// Whether any pair is hidden (by structure, padding, segments or an explicit mask).
    pub fn restricts(&self) -> bool {
        self.causality.hides_keys(self.q_len, self.kv_len)
            || !self.patterns.is_empty()
            || self.key_padding.is_some()
            || self.segments.is_some()
            || self.explicit.is_some()
    }

    /// The plan as a `u8` tensor broadcastable to `[batch, 1, q_len, kv_len]` (1 = may attend),
    /// or `None` when nothing is hidden: what the materialised path masks the scores with.
    /// The causality is built from each row's key range (`q_len` pairs of bounds from
    /// [`row_keys`](Self::row_keys), compared with the key indices on `device`), the patterns
    /// from [`patterns_allow`](Self::patterns_allow) on the host.
    pub fn allowed(&self, device: &Device) -> Result<Option<Tensor>> {
        if !self.restricts() {
            return Ok(None);
        }
        let (batch, q_len, kv_len) = (self.batch, self.q_len, self.kv_len);
        let mut parts: Vec<Tensor> = Vec::new();
        if self.causality != Causality::Bidirectional {
            let (lo, hi): (Vec<i64>, Vec<i64>) =
                (0..q_len).map(|i| self.row_keys(i)).map(|r| (r.start as i64, r.end as i64)).unzip();
            let cols = Tensor::arange(0i64, kv_len as i64, device)?.reshape((1, kv_len))?;
            // Only the bounds that hide something are compared (causal rows all start at 0).
            let from = lo.iter().any(|&l| l > 0).then(|| Tensor::from_vec(lo, (q_len, 1), device)).transpose()?;
            let below =
                hi.iter().any(|&h| h < kv_len as i64).then(|| Tensor::from_vec(hi, (q_len, 1), device)).transpose()?;
            let inside = match (from, below) {
                (Some(lo), Some(hi)) => Some(cols.broadcast_ge(&lo)?.mul(&cols.broadcast_lt(&hi)?)?),
                (Some(lo), None) => Some(cols.broadcast_ge(&lo)?),
                (None, Some(hi)) => Some(cols.broadcast_lt(&hi)?),
                (None, None) => None,
            };
            if let Some(inside) = inside {
                parts.push(inside.reshape((1, 1, q_len, kv_len))?);
            }
        }
        if !self.patterns.is_empty() {
            let cells: Vec<u8> =
                (0..q_len).flat_map(|i| (0..kv_len).map(move |j| u8::from(self.patterns_allow(i, j)))).collect();
            parts.push(Tensor::from_vec(cells, (1, 1, q_len, kv_len), device)?);
        }
        if let Some(keep) = &self.key_padding {
            // A no-op when `keep` is on `device` already: candle then returns the same storage
            // (an `Arc` clone), so nothing is copied per call.
            let keep = keep.to_device(device)?;
            parts.push(keep.ne(&keep.zeros_like()?)?.reshape((batch, 1, 1, kv_len))?);
        }
        if let Some(ids) = &self.segments {
            let ids = ids.to_device(device)?; // no copy when already there, as above
            let queries = ids.narrow(1, kv_len - q_len, q_len)?.reshape((batch, 1, q_len, 1))?;
            parts.push(queries.broadcast_eq(&ids.reshape((batch, 1, 1, kv_len))?)?);
        }
        if let Some(t) = &self.explicit {
            let t = t.to_device(device)?; // no copy when already there, as above
            parts.push(t.ne(&t.zeros_like()?)?.broadcast_as((batch, 1, q_len, kv_len))?);
        }
        let mut allowed: Option<Tensor> = None;
        for part in parts {
            allowed = Some(match allowed {
                None => part,
                Some(a) => a.broadcast_mul(&part)?,
            });
        }
        Ok(allowed)
    }
}

impl Causality {
    /// The keys `0..kv_len` visible from absolute position `position` (which may be negative:
    /// queries placed before the first key): the one statement of the causality rule that
    /// [`allows`](Self::allows), the materialised masks and the tiled kernel all read.
    ///
    /// ```
    /// use tcat_attention::Causality;
    /// assert_eq!(Causality::Causal.key_range(3, 10), 0..4);
    /// assert_eq!(Causality::SlidingWindow { window: 2 }.key_range(3, 10), 2..4);
    /// assert_eq!(Causality::Bidirectional.key_range(3, 10), 0..10);
    /// assert!(Causality::Causal.key_range(-1, 10).is_empty());
    /// ```
    #[inline]
    pub fn key_range(&self, position: i64, kv_len: usize) -> Range<usize> {
        let clamp = |x: i64| x.clamp(0, kv_len as i64) as usize;
        match *self {
            Causality::Bidirectional => 0..kv_len,
            Causality::Causal => 0..clamp(position + 1),
            Causality::SlidingWindow { window } => clamp(position + 1 - window as i64)..clamp(position + 1),
        }
    }

    /// Whether this causality hides any of `kv_len` keys from `q_len` queries at their end.
    pub fn hides_keys(&self, q_len: usize, kv_len: usize) -> bool {
        match *self {
            Causality::Bidirectional => false,
            Causality::Causal => q_len > 1,
            Causality::SlidingWindow { window } => q_len > 1 || kv_len > window,
        }
    }

    /// How rows at absolute positions `first..=last` cover `keys` (non-empty). Both ends of
    /// [`key_range`](Self::key_range) grow with the position, and consecutive ranges touch, so
    /// the two end rows decide: every row sees every key when the last row's range starts at or
    /// before the tile and the first row's ends at or after it; no row sees any key when the
    /// union of the ranges, from the first row's start to the last row's end, misses the tile.
    #[inline]
    pub(crate) fn tile_cover(&self, first: i64, last: i64, keys: Range<usize>, kv_len: usize) -> TileCover {
        let (a, b) = (self.key_range(first, kv_len), self.key_range(last, kv_len));
        if matches!(self, Causality::SlidingWindow { window: 0 }) || a.start.max(keys.start) >= b.end.min(keys.end) {
            return TileCover::Hidden;
        }
        if b.start <= keys.start && a.end >= keys.end { TileCover::Visible } else { TileCover::Partial }
    }
}

/// The pairwise default the tile answers are tested against.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_cover_agrees_with_the_pairwise_rule() {
        let pairwise = |plan: &VisibilityPlan, rows: Range<usize>, keys: Range<usize>| {
            let (mut any, mut all) = (false, true);
            for i in rows {
                for j in keys.clone() {
                    let a = plan.allows(i, j);
                    (any, all) = (any || a, all && a);
                }
            }
            match (any, all) {
                (false, _) => TileCover::Hidden,
                (true, true) => TileCover::Visible,
                (true, false) => TileCover::Partial,
            }
        };
        let causalities = [
            Causality::Bidirectional,
            Causality::Causal,
            Causality::SlidingWindow { window: 0 },
            Causality::SlidingWindow { window: 1 },
            Causality::SlidingWindow { window: 2 },
            Causality::SlidingWindow { window: 4 },
            Causality::SlidingWindow { window: 20 },
        ];
        for (q_len, kv_len) in [(7, 7), (3, 9), (9, 3), (1, 5)] {
            for causality in causalities {
                for pattern in [None, Some(SparsePattern::Strided { stride: 2 })] {
                    let mut mask = AttentionMask::none();
                    if causality != Causality::Bidirectional {
                        mask = match causality {
                            Causality::SlidingWindow { window } => mask.with_sliding_window(window),
                            _ => AttentionMask::causal(),
                        };
                    }
                    if let Some(p) = pattern {
                        mask = mask.with_pattern(p);
                    }
                    let plan = VisibilityPlan::new(&mask, 1, q_len, kv_len).unwrap();
                    for i0 in 0..q_len {
                        for i1 in i0 + 1..=q_len {
                            for j0 in 0..kv_len {
                                for j1 in j0 + 1..=kv_len {
                                    let (got, want) = (plan.cover(i0..i1, j0..j1), pairwise(&plan, i0..i1, j0..j1));
                                    let seen = plan.keys_seen(i0..i1);
                                    for i in i0..i1 {
                                        for j in 0..kv_len {
                                            assert!(
                                                !plan.allows(i, j) || seen.contains(&j),
                                                "{causality:?} q_len {q_len} kv_len {kv_len}: row {i} sees {j} outside {seen:?}"
                                            );
                                        }
                                    }
                                    // Partial is always allowed (only slower); Hidden and
                                    // Visible must be exact.
                                    assert!(
                                        got == want || (got == TileCover::Partial && pattern.is_some()),
                                        "{causality:?} {pattern:?} q_len {q_len} kv_len {kv_len} {i0}..{i1} x {j0}..{j1}: {got:?} vs {want:?}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn errors_name_the_part() {
        let dev = Device::Cpu;
        let keep = Tensor::ones((2, 4), DType::U8, &dev).unwrap();
        let err = VisibilityPlan::new(&AttentionMask::none().with_key_padding(keep), 1, 4, 4).unwrap_err();
        assert!(err.to_string().contains("key padding mask has shape [2, 4], expected [batch=1, kv_len=4]"), "{err}");
        let explicit = Tensor::ones((1, 1, 3, 3), DType::U8, &dev).unwrap();
        let err = VisibilityPlan::new(&AttentionMask::none().with_allowed(explicit), 1, 4, 4).unwrap_err();
        assert!(err.to_string().contains("explicit attention mask has shape [1, 1, 3, 3]"), "{err}");
    }
}
