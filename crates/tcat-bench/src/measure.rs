//! Timing and peak memory of one variant at one shape.
//!
//! A measurement builds random `q`, `k`, `v` once, runs the variant once untimed (warm-up:
//! thread pools, allocator pages, kernel caches), then `repeats` times, each run timed to the
//! end of the device's work ([`Device::synchronize`] after every run, which waits for CUDA or
//! Metal and is free on the CPU) and its peak heap memory tracked by [`crate::memory`]. The
//! median time is reported, as the benchmark literature (and criterion) does, because it
//! ignores the occasional run disturbed by the rest of the machine.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Result, Tensor};

use crate::Variant;
use crate::memory::{skip_reason, track_peak};

/// The shape of one benchmark input: `q`, `k`, `v` are `[batch, heads, seq, head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Batch rows.
    pub batch: usize,
    /// Attention heads (query and key/value alike; `gqa:G` runs on `heads / G` key/value heads,
    /// see [`Inputs::for_variant`]).
    pub heads: usize,
    /// Sequence length of queries and keys.
    pub seq: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Shape {
    /// Bytes of one materialised `[batch, heads, seq, seq]` score matrix in `dtype`.
    ///
    /// ```
    /// let s = tcat_bench::Shape { batch: 1, heads: 2, seq: 4, head_dim: 8 };
    /// assert_eq!(s.score_bytes(candle_core::DType::F32), 1 * 2 * 4 * 4 * 4);
    /// ```
    /// Saturates at `usize::MAX` instead of overflowing.
    pub fn score_bytes(&self, dtype: DType) -> usize {
        [self.batch, self.heads, self.seq, self.seq, dtype.size_in_bytes()].into_iter().fold(1, usize::saturating_mul)
    }

    /// Elements of one `[batch, heads, seq, head_dim]` input, or `None` when the product
    /// overflows `usize`.
    ///
    /// ```
    /// let s = tcat_bench::Shape { batch: 2, heads: 3, seq: 4, head_dim: 5 };
    /// assert_eq!(s.input_elements(), Some(120));
    /// assert_eq!(tcat_bench::Shape { heads: usize::MAX, ..s }.input_elements(), None);
    /// ```
    pub fn input_elements(&self) -> Option<usize> {
        [self.heads, self.seq, self.head_dim].into_iter().try_fold(self.batch, usize::checked_mul)
    }
}

/// Random `q`, `k`, `v` of one [`Shape`], drawn from N(0, 1).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Queries `[batch, heads, seq, head_dim]`.
    pub q: Tensor,
    /// Keys `[batch, kv_heads, seq, head_dim]`: as many heads as `q` from [`Inputs::random`],
    /// fewer from [`Inputs::for_variant`] for grouped-query attention.
    pub k: Tensor,
    /// Values, the shape of `k`.
    pub v: Tensor,
}

impl Inputs {
    /// Draws the three tensors in `dtype` on `device`.
    pub fn random(shape: Shape, dtype: DType, device: &Device) -> Result<Self> {
        let Shape { batch, heads, seq, head_dim } = shape;
        if batch == 0 || heads == 0 || seq == 0 || head_dim == 0 {
            candle_core::bail!("benchmark shape {shape:?}: every dimension must be at least 1");
        }
        if shape.input_elements().is_none_or(|n| n.checked_mul(4).is_none()) {
            candle_core::bail!("benchmark shape {shape:?}: batch × heads × seq × head_dim overflows the address space");
        }
        let draw = || Tensor::randn(0f32, 1., (batch, heads, seq, head_dim), device)?.to_dtype(dtype);
        Ok(Self { q: draw()?, k: draw()?, v: draw()? })
    }

    /// The inputs `variant` runs on: these ones, or for `gqa:G` the first `heads / G` key and
    /// value heads (copied out contiguously, before any timing); an error when `G` does not
    /// divide `heads`.
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use tcat_bench::{Inputs, Shape, Variant};
    /// let inputs = Inputs::random(Shape { batch: 1, heads: 8, seq: 4, head_dim: 2 }, DType::F32, &Device::Cpu).unwrap();
    /// let gqa = inputs.for_variant(Variant::Gqa { groups: 2 }).unwrap();
    /// assert_eq!((gqa.q.dims(), gqa.k.dims(), gqa.v.dims()), (&[1, 8, 4, 2][..], &[1, 4, 4, 2][..], &[1, 4, 4, 2][..]));
    /// assert_eq!(inputs.for_variant(Variant::Dense).unwrap().k.dims(), [1, 8, 4, 2]);
    /// let err = inputs.for_variant(Variant::Gqa { groups: 5 }).unwrap_err().to_string();
    /// assert!(err.contains("gqa:5") && err.contains("does not divide the 8 query heads"), "{err}");
    /// ```
    pub fn for_variant(&self, variant: Variant) -> Result<Self> {
        let heads = self.q.dims4()?.1;
        let kv_heads = variant.kv_heads(heads)?;
        let found = self.k.dims4()?.1;
        if kv_heads == found {
            return Ok(self.clone());
        }
        if kv_heads > found {
            candle_core::bail!("{variant} needs {kv_heads} key/value heads, but the inputs have {found}");
        }
        let first = |t: &Tensor| t.narrow(1, 0, kv_heads)?.contiguous();
        Ok(Self { q: self.q.clone(), k: first(&self.k)?, v: first(&self.v)? })
    }

    /// The shape of the inputs (of `q`).
    pub fn shape(&self) -> Result<Shape> {
        let (batch, heads, seq, head_dim) = self.q.dims4()?;
        Ok(Shape { batch, heads, seq, head_dim })
    }
}

/// The outcome of [`measure`].
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What ran.
    pub variant: Variant,
    /// On what shape.
    pub shape: Shape,
    /// In what dtype.
    pub dtype: DType,
    /// Wall time of each timed run, in order.
    pub times: Vec<Duration>,
    /// Median of `times`.
    pub median: Duration,
    /// Highest heap bytes allocated above the inputs during any timed run, output included;
    /// `None` off the CPU or without a [`CountingAllocator`](crate::memory::CountingAllocator).
    pub peak_bytes: Option<usize>,
}

/// Times `variant` on `inputs` (through [`Inputs::for_variant`], so `gqa:G` gets its fewer
/// key/value heads outside the measurement): one warm-up run, then the median of `repeats`
/// device-synchronised runs, with the peak heap memory of the timed runs. A run whose memory
/// estimate exceeds what is available ([`crate::memory::fits`]) is refused before anything is
/// allocated, with an error saying how much it needed; check `fits` first to skip it and go on.
///
/// ```
/// use candle_core::{DType, Device};
/// use tcat_bench::{Inputs, Shape, Variant, measure};
/// let shape = Shape { batch: 1, heads: 2, seq: 16, head_dim: 8 };
/// let inputs = Inputs::random(shape, DType::F32, &Device::Cpu).unwrap();
/// let m = measure(Variant::Dense, &inputs, 3).unwrap();
/// assert_eq!(m.times.len(), 3);
/// assert!(m.peak_bytes.is_none()); // no counting allocator installed in this doctest
/// ```
pub fn measure(variant: Variant, inputs: &Inputs, repeats: usize) -> Result<Measurement> {
    if repeats == 0 {
        candle_core::bail!("repeats must be at least 1, found 0");
    }
    let inputs = &inputs.for_variant(variant)?;
    let shape = inputs.shape()?;
    let device = inputs.q.device();
    if let Some(why) = skip_reason(variant, shape, device) {
        candle_core::bail!("{why}");
    }
    let run = || -> Result<Duration> {
        let start = Instant::now();
        let out = variant.run(&inputs.q, &inputs.k, &inputs.v)?;
        device.synchronize()?;
        let elapsed = start.elapsed();
        drop(out);
        Ok(elapsed)
    };
    run()?;
    let mut times = Vec::with_capacity(repeats.min(1024));
    let mut peak: Option<usize> = None;
    for _ in 0..repeats {
        let (time, bytes) = track_peak(run);
        times.push(time?);
        peak = match (peak, bytes) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let peak_bytes = if device.is_cpu() { peak } else { None };
    Ok(Measurement { variant, shape, dtype: inputs.q.dtype(), median: median(&times), times, peak_bytes })
}

/// The median of `times` (the mean of the middle two for an even count).
///
/// ```
/// use std::time::Duration;
/// let ms = |n| Duration::from_millis(n);
/// assert_eq!(tcat_bench::median(&[ms(5), ms(1), ms(3)]), ms(3));
/// assert_eq!(tcat_bench::median(&[ms(4), ms(1), ms(2), ms(9)]), ms(3));
/// ```
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}
