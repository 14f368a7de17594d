//! Transformer-XL's relative positional encoding and segment-level recurrence (Dai et al. 2019,
//! "Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context", §3.2–3.3).
//!
//! The score of query `i` and key `j` is `(q_i + u)·k_j + (q_i + v)·W_R R_{i−j}`: a content term
//! with a global content bias `u`, and a position term with a global position bias `v` over the
//! sinusoid `R` of the distance `i − j` projected by `W_R`. With the one attention, the caller
//! passes `q + u` as the queries and [`xl_position_bias`] as the additive bias. Queries sit at
//! the end of the keys (`i` at `kv_len − q_len + i`), so the keys may start with the cached
//! hidden states of the previous segment ([`SegmentMemory`]).

use candle_core::{DType, Device, Result, Tensor};

/// The sinusoids `R_d = [sin(d·ω_0), …, sin(d·ω_{D/2−1}), cos(d·ω_0), …]` with
/// `ω_k = 10000^{−2k/D}`, for every distance `d` in `min_distance..=max_distance`:
/// `[max − min + 1, dim]`, in Transformer-XL's layout (sines then cosines).
///
/// ```
/// let r = tcat_position::xl_sinusoids(-2, 3, 8, &candle_core::Device::Cpu).unwrap();
/// assert_eq!(r.dims(), &[6, 8]);
/// let zero = r.get(2).unwrap().to_vec1::<f32>().unwrap(); // distance 0
/// assert_eq!(zero, [0., 0., 0., 0., 1., 1., 1., 1.]);
/// ```
pub fn xl_sinusoids(min_distance: i64, max_distance: i64, dim: usize, device: &Device) -> Result<Tensor> {
    if dim == 0 || !dim.is_multiple_of(2) || max_distance < min_distance {
        candle_core::bail!(
            "xl sinusoids: need an even dim > 0 and min ≤ max, got dim {dim}, {min_distance}..={max_distance}"
        );
    }
    let distances = Tensor::arange(min_distance, max_distance + 1, device)?.to_dtype(DType::F32)?.unsqueeze(1)?;
    let exponents = (Tensor::arange(0u32, (dim / 2) as u32, device)?.to_dtype(DType::F32)? * (-2.0 / dim as f64))?;
    let inv_freq = (exponents * 10_000f64.ln())?.exp()?.unsqueeze(0)?;
    let angles = distances.broadcast_mul(&inv_freq)?;
    Tensor::cat(&[angles.sin()?, angles.cos()?], 1)
}

/// The range of distances `i − j` between `q_len` queries at the end of `kv_len` keys.
pub fn xl_distance_range(q_len: usize, kv_len: usize) -> (i64, i64) {
    let offset = kv_len as i64 - q_len as i64;
    (offset - (kv_len as i64 - 1), q_len as i64 - 1 + offset)
}

/// The position term `(q_i + v)·P_{i−j}`, times `scale`, as a bias `[batch, heads, q_len, kv_len]`.
///
/// `q` is `[batch, heads, q_len, head_dim]` (without `u`), `v_bias` is `[heads, head_dim]`, and
/// `projected` holds `W_R R_d` split into heads, `[heads, distances, head_dim]`, for the
/// distances of [`xl_distance_range`]`(q_len, kv_len)` in increasing order (the rows of
/// [`xl_sinusoids`] over that range, through the layer's `W_R`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_position::{xl_distance_range, xl_position_bias, xl_sinusoids};
/// let dev = Device::Cpu;
/// let (min, max) = xl_distance_range(3, 5); // 2 remembered positions + 3 new
/// let r = xl_sinusoids(min, max, 8, &dev).unwrap(); // [7, 8]
/// let projected = r.unsqueeze(0).unwrap().repeat((2, 1, 1)).unwrap(); // W_R = identity, 2 heads of 8
/// let q = Tensor::randn(0f32, 1., (1, 2, 3, 8), &dev).unwrap();
/// let v = Tensor::zeros((2, 8), candle_core::DType::F32, &dev).unwrap();
/// assert_eq!(xl_position_bias(&q, &v, &projected, 5, 1.0).unwrap().dims(), &[1, 2, 3, 5]);
/// ```
pub fn xl_position_bias(q: &Tensor, v_bias: &Tensor, projected: &Tensor, kv_len: usize, scale: f64) -> Result<Tensor> {
    let (batch, heads, q_len, head_dim) = q.dims4()?;
    if q_len > kv_len {
        candle_core::bail!("xl position bias: {q_len} queries but only {kv_len} keys");
    }
    let (min, max) = xl_distance_range(q_len, kv_len);
    let distances = (max - min + 1) as usize;
    if projected.dims() != [heads, distances, head_dim] {
        candle_core::bail!(
            "xl position bias: projected sinusoids {:?}, expected [{heads}, {distances}, {head_dim}] for distances {min}..={max}",
            projected.dims()
        );
    }
    if v_bias.dims() != [heads, head_dim] {
        candle_core::bail!("xl position bias: v {:?}, expected [{heads}, {head_dim}]", v_bias.dims());
    }
    let qv = q.broadcast_add(&v_bias.reshape((1, heads, 1, head_dim))?)?.contiguous()?;
    let all = qv.broadcast_matmul(&projected.t()?.unsqueeze(0)?)?; // [b, h, q_len, distances]
    // Row i, key j reads distance (i + offset) − j, at index (i + offset − j) − min.
    let offset = kv_len as i64 - q_len as i64;
    let rows = Tensor::arange(offset - min, offset - min + q_len as i64, q.device())?.reshape((q_len, 1))?;
    let cols = Tensor::arange(0i64, kv_len as i64, q.device())?.reshape((1, kv_len))?;
    let index = rows.broadcast_sub(&cols)?.to_dtype(DType::U32)?;
    let shape = (batch, heads, q_len, kv_len);
    all.contiguous()?.gather(&index.broadcast_as(shape)?.contiguous()?, 3)? * scale
}

/// Segment-level recurrence: each layer keeps the last `mem_len` hidden states of the segments
/// seen so far (no gradient flows into them), to be prepended to the next segment's keys and
/// values.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let dev = Device::Cpu;
/// let mut memory = tcat_position::SegmentMemory::new(2, 4); // 2 layers, 4 positions each
/// let h = Tensor::zeros((1, 3, 8), DType::F32, &dev).unwrap();
/// assert_eq!(memory.extended(0, &h).unwrap().dims(), &[1, 3, 8]); // nothing remembered yet
/// memory.update(0, &h).unwrap();
/// memory.update(0, &h).unwrap();
/// assert_eq!(memory.extended(0, &h).unwrap().dims(), &[1, 7, 8]); // 4 remembered + 3 new
/// ```
#[derive(Debug, Clone)]
pub struct SegmentMemory {
    mem_len: usize,
    layers: Vec<Option<Tensor>>,
}

impl SegmentMemory {
    /// Empty memory for `layers` layers of `mem_len` positions each.
    pub fn new(layers: usize, mem_len: usize) -> Self {
        Self { mem_len, layers: vec![None; layers] }
    }

    /// Positions remembered for `layer`.
    pub fn len(&self, layer: usize) -> usize {
        self.layers.get(layer).and_then(|m| m.as_ref()).map_or(0, |m| m.dims()[1])
    }

    /// Whether nothing is remembered for any layer.
    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(Option::is_none)
    }

    /// The states remembered for `layer` (`[batch, len, dim]`), `None` before the first update;
    /// an error naming the layer count when `layer` is out of range.
    pub fn memory(&self, layer: usize) -> Result<Option<&Tensor>> {
        self.layer(layer)
    }

    /// Layers this memory serves.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `[memory; hidden]` along the sequence (`hidden` is `[batch, seq, dim]`): the states the
    /// layer's keys and values are computed from.
    pub fn extended(&self, layer: usize, hidden: &Tensor) -> Result<Tensor> {
        match self.layer(layer)? {
            Some(memory) => Tensor::cat(&[memory, hidden], 1),
            None => Ok(hidden.clone()),
        }
    }

    /// Remembers the last `mem_len` positions of `[memory; hidden]` for `layer`, detached.
    pub fn update(&mut self, layer: usize, hidden: &Tensor) -> Result<()> {
        let all = self.extended(layer, hidden)?;
        let len = all.dim(1)?;
        let kept = all.narrow(1, len - len.min(self.mem_len), len.min(self.mem_len))?.detach().contiguous()?;
        self.layers[layer] = Some(kept);
        Ok(())
    }

    fn layer(&self, layer: usize) -> Result<Option<&Tensor>> {
        match self.layers.get(layer) {
            Some(m) => Ok(m.as_ref()),
            None => candle_core::bail!("segment memory has {} layers, asked for layer {layer}", self.layers.len()),
        }
    }
}
