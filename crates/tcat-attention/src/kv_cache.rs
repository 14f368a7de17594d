//! Key/value caches for incremental decoding: a preallocated one that keeps every position, and
//! a sliding one that keeps only what a sliding-window layer can still see (Longformer's local
//! attention, Beltagy et al. 2020; Mistral's rolling buffer cache, Jiang et al. 2023 §2).

use candle_core::{Result, Tensor};

/// Which cached positions a [`KvCache`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Every position, up to the capacity (an error past it).
    All {
        /// Most positions held.
        capacity: usize,
    },
    /// The `window - 1` most recent positions, which are all that a sliding window of
    /// `window` keys lets a future query see; decoding runs for any number of tokens in
    /// memory bounded by the window.
    Window {
        /// Keys visible to each query, itself included.
        window: usize,
    },
}

/// Keys and values of the tokens decoded so far, in buffers allocated once.
///
/// Buffers are `[batch, kv_heads, slots, head_dim]`, created on the first
/// [`append`](Self::append) (when the batch size and dtype are known). Each append copies only
/// the new tokens in place and returns views of the keys and values the new queries may attend
/// to, oldest first and ending with the new tokens, so no step concatenates the history.
///
/// With [`Retention::Window`] the buffer holds `2 · window` slots; when the new tokens do not
/// fit, the last `window − 1` positions move to the front (one copy every ~`window` tokens, so
/// O(1) per token amortised). The returned keys then start later than position 0: they are the
/// most recent ones, which is what a bottom-right-aligned sliding-window mask expects.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use tcat_attention::KvCache;
/// let dev = Device::Cpu;
/// let one = Tensor::zeros((1, 2, 1, 8), DType::F32, &dev).unwrap();
/// let mut cache = KvCache::new(4);
/// let (k, _v) = cache.append(&one, &one).unwrap();
/// assert_eq!(k.dims(), &[1, 2, 1, 8]);
/// let three = Tensor::zeros((1, 2, 3, 8), DType::F32, &dev).unwrap();
/// assert_eq!(cache.append(&three, &three).unwrap().0.dim(2).unwrap(), 4);
/// assert!(cache.append(&one, &one).is_err()); // 5 > 4
///
/// // A sliding window of 3 keeps two old positions: the returned keys never exceed 2 + new.
/// let mut sliding = KvCache::sliding(3);
/// for step in 0..10 {
///     let (k, _) = sliding.append(&one, &one).unwrap();
///     assert_eq!(k.dim(2).unwrap(), (step + 1).min(3));
/// }
/// assert_eq!(sliding.len(), 10);
/// ```
#[derive(Debug, Clone)]
pub struct KvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
    /// Buffer slots `start..end` hold the kept positions, the newest at `end - 1`.
    start: usize,
    end: usize,
    /// Positions appended since the last reset (the absolute position of the next token).
    seen: usize,
    retention: Retention,
}

impl KvCache {
    /// A cache that keeps every position, up to `capacity`.
    pub fn new(capacity: usize) -> Self {
        Self::with_retention(Retention::All { capacity })
    }

    /// A cache for a sliding-window layer of `window` keys (see [`Retention::Window`]).
    pub fn sliding(window: usize) -> Self {
        Self::with_retention(Retention::Window { window })
    }

    /// A cache with the given retention.
    pub fn with_retention(retention: Retention) -> Self {
        let retention = match retention {
            Retention::Window { window } => Retention::Window { window: window.max(1) },
            all => all,
        };
        Self { keys: None, values: None, start: 0, end: 0, seen: 0, retention }
    }

    /// What this cache keeps.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Positions appended so far (also the absolute position of the next token), whether or
    /// not they are still held.
    pub fn len(&self) -> usize {
        self.seen
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.seen == 0
    }

    /// Positions currently held in the buffer.
    pub fn held(&self) -> usize {
        self.end - self.start
    }

    /// Slots of the buffer: the most positions held at once.
    pub fn capacity(&self) -> usize {
        match self.retention {
            Retention::All { capacity } => capacity,
            Retention::Window { window } => 2 * window,
        }
    }

    /// Forgets the cached positions (the buffers are kept for reuse).
    pub fn reset(&mut self) {
        (self.start, self.end, self.seen) = (0, 0, 0);
    }

    /// Appends `k` and `v` (`[batch, kv_heads, new, head_dim]`) and returns the keys and values
    /// the new queries may attend to, `[batch, kv_heads, kept + new, head_dim]`, oldest first:
    /// every cached position with [`Retention::All`], the `window − 1` before the new ones with
    /// [`Retention::Window`].
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.append_parts(k, Some(v))?;
        Ok((k, v.expect("values were appended")))
    }

    /// Appends `kv` (`[batch, heads, new, width]`) to a cache whose keys are also its values —
    /// multi-head latent attention's `[c ; k_R]` per token (DeepSeek-AI 2024, §2.1.3) — and
    /// returns everything the new queries may attend to, as [`append`](Self::append) does.
    /// No value buffer is allocated: the cache holds `width` numbers per token and head.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_attention::KvCache;
    /// let latent = Tensor::zeros((1, 1, 2, 576), DType::F32, &Device::Cpu).unwrap();
    /// let mut cache = KvCache::new(8);
    /// assert_eq!(cache.append_shared(&latent).unwrap().dims(), &[1, 1, 2, 576]);
    /// assert_eq!(cache.len(), 2);
    /// ```
    pub fn append_shared(&mut self, kv: &Tensor) -> Result<Tensor> {
        if self.values.is_some() && self.held() > 0 {
            candle_core::bail!("KV cache holds separate keys and values; it cannot take shared ones");
        }
        self.values = None;
        Ok(self.append_parts(kv, None)?.0)
    }

    /// Whether the cache holds one tensor serving as keys and values
    /// ([`append_shared`](Self::append_shared)).
    pub fn is_shared(&self) -> bool {
        self.keys.is_some() && self.values.is_none()
    }

    fn append_parts(&mut self, k: &Tensor, v: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let new = k.dim(2)?;
        if v.is_some() && self.is_shared() && self.held() > 0 {
            candle_core::bail!("KV cache holds shared keys and values; it cannot take separate ones");
        }
        let keep = match self.retention {
            Retention::All { capacity } => {
                if self.end + new > capacity {
                    candle_core::bail!(
                        "KV cache full: {} cached + {new} new positions exceed its capacity of {capacity}",
                        self.end
                    );
                }
                usize::MAX
            }
            Retention::Window { window } => window - 1,
        };
        let capacity = self.capacity();
        let held = self.held();
        let keys = Self::buffer(&mut self.keys, k, capacity, held)?;
        let values = match v {
            Some(v) => Some((Self::buffer(&mut self.values, v, capacity, held)?, v)),
            None => None,
        };
        let buffers: Vec<(&Tensor, &Tensor)> =
            std::iter::once((&keys, k)).chain(values.as_ref().map(|(b, v)| (b, *v))).collect();
        let old = held.min(keep);
        let result = if old + new > capacity {
            // A chunk longer than the buffer (a long prompt): attend over the kept tail and
            // the chunk directly, then keep only the chunk's own tail.
            let kept = keep.min(old + new);
            let mut out = Vec::with_capacity(2);
            for (buffer, part) in &buffers {
                let all = Tensor::cat(&[&buffer.narrow(2, self.end - old, old)?, *part], 2)?;
                buffer.slice_set(&all.narrow(2, old + new - kept, kept)?.contiguous()?, 2, 0)?;
                out.push(all);
            }
            (self.start, self.end) = (0, kept);
            out
        } else {
            if self.end + new > capacity {
                // Move the kept tail to the front; copied out first, as the ranges may overlap.
                for (buffer, _) in &buffers {
                    let tail = buffer.narrow(2, self.end - old, old)?;
                    let tail = if tail.is_contiguous() { tail.copy()? } else { tail.contiguous()? };
                    buffer.slice_set(&tail, 2, 0)?;
                }
                (self.start, self.end) = (0, old);
            }
            for (buffer, part) in &buffers {
                buffer.slice_set(&part.contiguous()?, 2, self.end)?;
            }
            self.end += new;
            let from = self.end - new - old;
            self.start = self.end - (self.end - self.start).min(keep);
            buffers.iter().map(|(buffer, _)| buffer.narrow(2, from, old + new)).collect::<Result<Vec<_>>>()?
        };
        self.seen += new;
        let mut result = result.into_iter();
        let keys = result.next().expect("keys are always appended");
        Ok((keys, result.next()))
    }

    /// Keeps the batch rows `rows` (`[new_batch]` u32, indices into the current rows, repeats
    /// allowed), in that order: what beam search needs when it reorders its hypotheses (the
    /// `reorder_cache` of Hugging Face transformers). The held positions, the window and the
    /// count of positions seen are unchanged; the buffers are replaced by their selected rows
    /// (one `index_select` on the batch dimension each). Nothing to do before the first append.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_attention::KvCache;
    /// let dev = Device::Cpu;
    /// // Two rows whose keys are all 0 and all 1.
    /// let k = Tensor::new(&[0f32, 1.], &dev).unwrap().reshape((2, 1, 1, 1)).unwrap();
    /// let mut cache = KvCache::new(4);
    /// cache.append(&k, &k).unwrap();
    /// cache.select_rows(&Tensor::new(&[1u32, 1, 0], &dev).unwrap()).unwrap();
    /// // The rows are now 1, 1, 0: each next key (here 0) follows its row's history.
    /// let next = Tensor::zeros((3, 1, 1, 1), DType::F32, &dev).unwrap();
    /// let (keys, _) = cache.append(&next, &next).unwrap();
    /// assert_eq!(keys.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [1., 0., 1., 0., 0., 0.]);
    /// ```
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for slot in [&mut self.keys, &mut self.values] {
            if let Some(t) = slot.as_ref() {
                *slot = Some(t.index_select(rows, 0)?);
            }
        }
        Ok(())
    }

    fn buffer(slot: &mut Option<Tensor>, like: &Tensor, capacity: usize, held: usize) -> Result<Tensor> {
        let (b, h, _, d) = like.dims4()?;
        if let Some(t) = slot {
            let (tb, th, _, td) = t.dims4()?;
            if (tb, th, td) == (b, h, d) && t.dtype() == like.dtype() {
                return Ok(t.clone());
            }
            if held > 0 {
                candle_core::bail!(
                    "KV cache holds [batch={tb}, kv_heads={th}, head_dim={td}] {:?}, cannot append {:?} {:?}",
                    t.dtype(),
                    like.dims(),
                    like.dtype()
                );
            }
        }
        let t = Tensor::zeros((b, h, capacity, d), like.dtype(), like.device())?;
        *slot = Some(t.clone());
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// `[batch, 1, new, 2]` keys whose row `r`, position `p` holds `100·r + p` (twice).
    fn rows_of(batch: usize, first: usize, new: usize) -> Tensor {
        let data: Vec<f32> =
            (0..batch).flat_map(|r| (first..first + new).flat_map(move |p| [(100 * r + p) as f32; 2])).collect();
        Tensor::from_vec(data, (batch, 1, new, 2), &Device::Cpu).unwrap()
    }

    /// Each row's held keys as `100·r + p` values (first of the pair), `[batch][positions]`.
    fn held(k: &Tensor) -> Vec<Vec<f32>> {
        k.narrow(3, 0, 1).unwrap().squeeze(3).unwrap().squeeze(1).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn select_rows_reorders_and_repeats_rows_of_every_retention() {
        for retention in [Retention::All { capacity: 16 }, Retention::Window { window: 3 }] {
            let mut cache = KvCache::with_retention(retention);
            // Enough steps for the sliding buffer to have moved its tail to the front.
            cache.append(&rows_of(3, 0, 4), &rows_of(3, 0, 4)).unwrap();
            for p in 4..8 {
                cache.append(&rows_of(3, p, 1), &rows_of(3, p, 1)).unwrap();
            }
            let (seen, kept) = (cache.len(), cache.held());
            cache.select_rows(&Tensor::new(&[2u32, 0, 0, 1], &Device::Cpu).unwrap()).unwrap();
            assert_eq!((cache.len(), cache.held()), (seen, kept), "{retention:?}");
            // The next token of new row i carries 100·i + 8; the old positions follow the selection.
            let next = rows_of(4, 8, 1);
            let (k, v) = cache.append(&next, &next).unwrap();
            let old = match retention {
                Retention::All { .. } => 0..8,
                Retention::Window { window } => 8 - (window - 1)..8,
            };
            let want: Vec<Vec<f32>> = [2usize, 0, 0, 1]
                .iter()
                .enumerate()
                .map(|(i, &src)| old.clone().map(|p| (100 * src + p) as f32).chain([(100 * i + 8) as f32]).collect())
                .collect();
            assert_eq!(held(&k), want, "{retention:?} keys");
            assert_eq!(held(&v), want, "{retention:?} values");
        }
    }

    #[test]
    fn select_rows_before_any_append_is_a_no_op() {
        let mut cache = KvCache::new(4);
        cache.select_rows(&Tensor::new(&[0u32, 0], &Device::Cpu).unwrap()).unwrap();
        let one = Tensor::zeros((2, 1, 1, 2), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(cache.append(&one, &one).unwrap().0.dims(), &[2, 1, 1, 2]);
    }
}
