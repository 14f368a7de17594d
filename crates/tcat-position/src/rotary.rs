//! Rotary position embedding, RoPE (Su et al. 2021, "RoFormer", eq. 34): each pair of query and
//! key features is rotated by an angle proportional to the token's position, so that their dot
//! product depends only on the relative distance.

use candle_core::{D, DType, Device, Result, Tensor};

/// Which features form the rotated pairs. Mixing these up is the most common silent rotary bug:
/// both run, both give plausible text, only one matches the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotaryLayout {
    /// Feature `i` pairs with `i + d/2` (GPT-NeoX, LLaMA, Mistral in Hugging Face format).
    HalfSplit,
    /// Feature `2i` pairs with `2i + 1` (GPT-J, the RoFormer paper, llama.cpp's GGUF layout).
    Interleaved,
}

/// Stretching the rotary frequencies to reach longer contexts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// The base frequencies.
    #[default]
    None,
    /// Position interpolation (Chen et al. 2023): positions are divided by `factor`.
    Linear {
        /// Interpolation factor.
        factor: f64,
    },
    /// NTK-aware scaling (bloc97 2023): the base is raised to `base · factor^(d/(d−2))`.
    NtkAware {
        /// Context extension factor.
        factor: f64,
    },
}

/// The shape of a rotary embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotaryConfig {
    /// Features per head that rotate (the rest pass through): `head_dim` for LLaMA, a fraction
    /// for GPT-NeoX (`rotary_pct`) and GPT-J (`rotary_dim`). Must be even.
    pub rotary_dim: usize,
    /// The base θ of the frequencies `θ^(−2i/rotary_dim)`.
    pub base: f64,
    /// Pairing of features.
    pub layout: RotaryLayout,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

/// Precomputed cos/sin tables applied to queries and keys with candle-nn's rope kernels.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use tcat_position::{RotaryConfig, RotaryEmbedding, RotaryLayout, RopeScaling};
/// let dev = Device::Cpu;
/// let cfg = RotaryConfig { rotary_dim: 4, base: 10000.0, layout: RotaryLayout::HalfSplit, scaling: RopeScaling::None };
/// let rope = RotaryEmbedding::new(cfg, 16, candle_core::DType::F32, &dev).unwrap();
/// let x = Tensor::randn(0f32, 1., (1, 2, 3, 6), &dev).unwrap(); // head_dim 6, 4 of them rotate
/// let positions = Tensor::new(&[[0u32, 1, 2]], &dev).unwrap();
/// let y = rope.apply(&x, &positions).unwrap();
/// // position 0 is not rotated, and the 2 trailing features never are
/// let diff = (y - &x).unwrap().abs().unwrap();
/// assert_eq!(diff.narrow(2, 0, 1).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
/// assert_eq!(diff.narrow(3, 4, 2).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
/// ```
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    config: RotaryConfig,
}

impl RotaryEmbedding {
    /// Tables for positions `0..max_positions`.
    pub fn new(config: RotaryConfig, max_positions: usize, dtype: DType, device: &Device) -> Result<Self> {
        let d = config.rotary_dim;
        if d == 0 || !d.is_multiple_of(2) {
            candle_core::bail!("rotary_dim must be a positive even number, got {d}");
        }
        let (base, position_scale) = match config.scaling {
            RopeScaling::None => (config.base, 1.0),
            RopeScaling::Linear { factor } => (config.base, 1.0 / factor),
            RopeScaling::NtkAware { factor } => (config.base * factor.powf(d as f64 / (d as f64 - 2.0)), 1.0),
        };
        // Computed in f32 as the reference implementations do, so angles round the same way.
        let inv_freq: Vec<f32> = (0..d / 2).map(|i| (1.0 / base.powf(2.0 * i as f64 / d as f64)) as f32).collect();
        let positions: Vec<f32> = (0..max_positions).map(|p| (p as f64 * position_scale) as f32).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, d / 2), device)?;
        let positions = Tensor::from_vec(positions, (max_positions, 1), device)?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        Ok(Self { cos: angles.cos()?.to_dtype(dtype)?, sin: angles.sin()?.to_dtype(dtype)?, config })
    }

    /// The configuration.
    pub fn config(&self) -> &RotaryConfig {
        &self.config
    }

    /// Positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    fn tables(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, s) = positions.dims2()?;
        let flat = positions.flatten_all()?;
        let cos = self.cos.index_select(&flat, 0)?.reshape((b, s, ()))?;
        let sin = self.sin.index_select(&flat, 0)?.reshape((b, s, ()))?;
        Ok((cos, sin))
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` at `positions` `[batch, seq]`.
    pub fn apply(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let head_dim = x.dim(D::Minus1)?;
        let d = self.config.rotary_dim;
        if d > head_dim {
            candle_core::bail!("rotary_dim {d} exceeds head_dim {head_dim}");
        }
        let (cos, sin) = self.tables(positions)?;
        let rotate = |x: &Tensor| match self.config.layout {
            RotaryLayout::HalfSplit => candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin),
            RotaryLayout::Interleaved => candle_nn::rotary_emb::rope_i(&x.contiguous()?, &cos, &sin),
        };
        if d == head_dim {
            return rotate(x);
        }
        let rotated = rotate(&x.narrow(D::Minus1, 0, d)?)?;
        Tensor::cat(&[&rotated, &x.narrow(D::Minus1, d, head_dim - d)?], D::Minus1)
    }

    /// The same rotation written out pair by pair on the host, for tests.
    pub fn apply_reference(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (b, h, s, hd) = x.dims4()?;
        let d = self.config.rotary_dim;
        let (cos, sin) = self.tables(positions)?;
        let cos: Vec<Vec<Vec<f32>>> = cos.to_dtype(DType::F32)?.to_vec3()?;
        let sin: Vec<Vec<Vec<f32>>> = sin.to_dtype(DType::F32)?.to_vec3()?;
        let mut v: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        for bi in 0..b {
            for hi in 0..h {
                for si in 0..s {
                    let row = &mut v[((bi * h + hi) * s + si) * hd..][..hd];
                    for i in 0..d / 2 {
                        let (a, c) = match self.config.layout {
                            RotaryLayout::HalfSplit => (i, i + d / 2),
                            RotaryLayout::Interleaved => (2 * i, 2 * i + 1),
                        };
                        let (xa, xc) = (row[a], row[c]);
                        let (co, si_) = (cos[bi][si][i], sin[bi][si][i]);
                        row[a] = xa * co - xc * si_;
                        row[c] = xc * co + xa * si_;
                    }
                }
            }
        }
        Tensor::from_vec(v, (b, h, s, hd), x.device())?.to_dtype(x.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn kernels_match_the_pairwise_reference() {
        let dev = Device::Cpu;
        for layout in [RotaryLayout::HalfSplit, RotaryLayout::Interleaved] {
            for (rotary_dim, head_dim) in [(8, 8), (2, 8), (4, 6), (16, 16)] {
                for scaling in
                    [RopeScaling::None, RopeScaling::Linear { factor: 2.0 }, RopeScaling::NtkAware { factor: 4.0 }]
                {
                    let cfg = RotaryConfig { rotary_dim, base: 10000.0, layout, scaling };
                    let rope = RotaryEmbedding::new(cfg, 40, DType::F32, &dev).unwrap();
                    let x = Tensor::randn(0f32, 1., (2, 3, 5, head_dim), &dev).unwrap();
                    let pos = Tensor::new(&[[0u32, 1, 2, 3, 4], [0, 0, 7, 8, 39]], &dev).unwrap();
                    let d = max_diff(&rope.apply(&x, &pos).unwrap(), &rope.apply_reference(&x, &pos).unwrap());
                    assert!(d < 1e-5, "{cfg:?} head_dim {head_dim}: {d}");
                }
            }
        }
    }

    /// The defining property: ⟨R(m)q, R(n)k⟩ depends only on m − n.
    #[test]
    fn scores_depend_only_on_relative_position() {
        let dev = Device::Cpu;
        for layout in [RotaryLayout::HalfSplit, RotaryLayout::Interleaved] {
            let cfg = RotaryConfig { rotary_dim: 8, base: 10000.0, layout, scaling: RopeScaling::None };
            let rope = RotaryEmbedding::new(cfg, 64, DType::F32, &dev).unwrap();
            let q = Tensor::randn(0f32, 1., (1, 1, 1, 8), &dev).unwrap();
            let k = Tensor::randn(0f32, 1., (1, 1, 1, 8), &dev).unwrap();
            let score = |m: u32, n: u32| {
                let qm = rope.apply(&q, &Tensor::new(&[[m]], &dev).unwrap()).unwrap();
                let kn = rope.apply(&k, &Tensor::new(&[[n]], &dev).unwrap()).unwrap();
                (qm * kn).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
            };
            assert!((score(3, 1) - score(30, 28)).abs() < 1e-4);
            assert!((score(3, 1) - score(3, 2)).abs() > 1e-4);
        }
    }

    /// The layouts differ: a half-split checkpoint read as interleaved gives other values.
    #[test]
    fn layouts_are_not_interchangeable() {
        let dev = Device::Cpu;
        let make = |layout| {
            let cfg = RotaryConfig { rotary_dim: 8, base: 10000.0, layout, scaling: RopeScaling::None };
            RotaryEmbedding::new(cfg, 8, DType::F32, &dev).unwrap()
        };
        let x = Tensor::randn(0f32, 1., (1, 1, 4, 8), &dev).unwrap();
        let pos = Tensor::new(&[[0u32, 1, 2, 3]], &dev).unwrap();
        let half = make(RotaryLayout::HalfSplit).apply(&x, &pos).unwrap();
        let inter = make(RotaryLayout::Interleaved).apply(&x, &pos).unwrap();
        assert!(max_diff(&half, &inter) > 1e-2);
    }
}
