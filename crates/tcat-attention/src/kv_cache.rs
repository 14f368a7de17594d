//! A preallocated key/value cache for incremental decoding.

use candle_core::{Result, Tensor};

/// Keys and values of the tokens decoded so far, in buffers allocated once.
///
/// Buffers are `[batch, kv_heads, capacity, head_dim]`, created on the first
/// [`append`](Self::append) (when the batch size and dtype are known). Each append copies only
/// the new tokens in place; the returned keys and values are views of the filled prefix, so no
/// step concatenates the whole cache. Appending past `capacity` is an error naming the
/// capacity, never a silent reallocation.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let mut cache = tcat_attention::KvCache::new(4);
/// let kv = Tensor::zeros((1, 2, 3, 8), candle_core::DType::F32, &dev).unwrap();
/// let (k, _v) = cache.append(&kv, &kv).unwrap();
/// assert_eq!(k.dims(), &[1, 2, 3, 8]);
/// assert_eq!(cache.len(), 3);
/// assert!(cache.append(&kv, &kv).is_err()); // 3 + 3 > 4
/// ```
#[derive(Debug, Clone)]
pub struct KvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache that can hold `capacity` positions.
    pub fn new(capacity: usize) -> Self {
        Self { keys: None, values: None, len: 0, capacity }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets the cached positions (the buffers are kept for reuse).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Appends `k` and `v` (`[batch, kv_heads, new, head_dim]`) and returns all cached keys and
    /// values, `[batch, kv_heads, len, head_dim]`.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let new = k.dim(2)?;
        if self.len + new > self.capacity {
            candle_core::bail!(
                "KV cache full: {} cached + {new} new positions exceed its capacity of {}",
                self.len,
                self.capacity
            );
        }
        let keys = Self::buffer(&mut self.keys, k, self.capacity, self.len)?;
        let values = Self::buffer(&mut self.values, v, self.capacity, self.len)?;
        keys.slice_set(&k.contiguous()?, 2, self.len)?;
        values.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += new;
        Ok((keys.narrow(2, 0, self.len)?, values.narrow(2, 0, self.len)?))
    }

    fn buffer(slot: &mut Option<Tensor>, like: &Tensor, capacity: usize, len: usize) -> Result<Tensor> {
        let (b, h, _, d) = like.dims4()?;
        if let Some(t) = slot {
            let (tb, th, _, td) = t.dims4()?;
            if (tb, th, td) == (b, h, d) && t.dtype() == like.dtype() {
                return Ok(t.clone());
            }
            if len > 0 {
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
