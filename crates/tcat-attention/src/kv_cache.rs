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
        let new = k.dim(2)?;
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
        let values = Self::buffer(&mut self.values, v, capacity, held)?;
        let old = held.min(keep);
        let result = if old + new > capacity {
            // A chunk longer than the buffer (a long prompt): attend over the kept tail and
            // the chunk directly, then keep only the chunk's own tail.
            let tail = |t: &Tensor| t.narrow(2, self.end - old, old);
            let (ks, vs) = (Tensor::cat(&[&tail(&keys)?, k], 2)?, Tensor::cat(&[&tail(&values)?, v], 2)?);
            let kept = keep.min(old + new);
            keys.slice_set(&ks.narrow(2, old + new - kept, kept)?.contiguous()?, 2, 0)?;
            values.slice_set(&vs.narrow(2, old + new - kept, kept)?.contiguous()?, 2, 0)?;
            (self.start, self.end) = (0, kept);
            (ks, vs)
        } else {
            if self.end + new > capacity {
                // Move the kept tail to the front; copied out first, as the ranges may overlap.
                let move_front = |t: &Tensor| -> Result<()> {
                    let tail = t.narrow(2, self.end - old, old)?;
                    let tail = if tail.is_contiguous() { tail.copy()? } else { tail.contiguous()? };
                    t.slice_set(&tail, 2, 0)
                };
                move_front(&keys)?;
                move_front(&values)?;
                (self.start, self.end) = (0, old);
            }
            keys.slice_set(&k.contiguous()?, 2, self.end)?;
            values.slice_set(&v.contiguous()?, 2, self.end)?;
            self.end += new;
            let from = self.end - new - old;
            self.start = self.end - (self.end - self.start).min(keep);
            (keys.narrow(2, from, old + new)?, values.narrow(2, from, old + new)?)
        };
        self.seen += new;
        Ok(result)
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
