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
    /// Dynamic NTK scaling (Hugging Face `rope_type` `dynamic`): the NTK-aware base grows with
    /// the sequence once it passes `original_max_positions`, `θ' = θ · (factor · len / L −
    /// (factor − 1))^(d/(d−2))`, and is `θ` up to there. The rule depends on the current length,
    /// which one fixed table cannot follow, so [`RotaryEmbedding::new`] builds tables up to
    /// `original_max_positions` only (where the frequencies are the base ones, exactly) and
    /// refuses longer ones.
    DynamicNtk {
        /// Context extension factor.
        factor: f64,
        /// The length `L` up to which the base frequencies apply.
        original_max_positions: usize,
    },
    /// Llama 3.1's frequency-dependent interpolation (Meta 2024, "The Llama 3 Herd of Models";
    /// Hugging Face `rope_type` `llama3`). With wavelength `λ = 2π / ω` of each base frequency
    /// `ω` and `L = original_max_positions`: frequencies whose `λ < L / high_freq_factor` stay,
    /// those whose `λ > L / low_freq_factor` are divided by `factor`, and the ones between are
    /// blended, `ω' = (1 − s) · ω / factor + s · ω` with `s = (L / λ − low_freq_factor) /
    /// (high_freq_factor − low_freq_factor)`.
    Llama3 {
        /// Interpolation factor of the low frequencies (8 in Llama 3.1).
        factor: f64,
        /// Wavelengths above `L / low_freq_factor` are fully interpolated (1 in Llama 3.1).
        low_freq_factor: f64,
        /// Wavelengths below `L / high_freq_factor` are kept (4 in Llama 3.1).
        high_freq_factor: f64,
        /// The context length `L` the model was pretrained on (8192 in Llama 3.1).
        original_max_positions: usize,
    },
    /// YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language
    /// Models", arXiv 2309.00071, §3.2–3.4; Hugging Face `rope_type` `yarn`, as DeepSeek-V2 and
    /// V3 use it): "NTK-by-parts" interpolation — frequency `i` of `d/2` is
    /// `ω_i · (1 − r_i) + ω_i / factor · r_i` with the ramp `r_i = clamp((i − low) / (high −
    /// low), 0, 1)`, where `low` and `high` are the (floored / ceiled when `truncate`) feature
    /// indices at which a frequency turns `beta_fast` and `beta_slow` times within
    /// `original_max_positions`: `d · ln(L / (2π β)) / (2 ln θ)` — and the cos/sin tables are
    /// multiplied by `attention_factor` (eq. 22's `√(1/t)`, so scores scale by its square).
    Yarn {
        /// Context extension factor `s`.
        factor: f64,
        /// The pretraining context `L`.
        original_max_positions: usize,
        /// Rotations above which a frequency is kept (32 by default).
        beta_fast: f64,
        /// Rotations below which a frequency is fully interpolated (1 by default).
        beta_slow: f64,
        /// Factor on the cos/sin tables: `0.1 ln s + 1` by default; DeepSeek's configs give
        /// `mscale` and `mscale_all_dim`, and the factor is then [`yarn_mscale`]`(s, mscale) /
        /// yarn_mscale(s, mscale_all_dim)`.
        attention_factor: f64,
        /// Whether `low` and `high` are rounded to whole features (transformers' `truncate`,
        /// default true).
        truncate: bool,
    },
}

/// YaRN's magnitude correction `0.1 · mscale · ln(scale) + 1` (1 for `scale ≤ 1`): the
/// `√(1/t)` of Peng et al. 2023, eq. 22, as transformers' and DeepSeek's `yarn_get_mscale`.
///
/// ```
/// use tcat_position::yarn_mscale;
/// assert_eq!(yarn_mscale(1.0, 0.707), 1.0);
/// assert!((yarn_mscale(40.0, 1.0) - (0.1 * 40f64.ln() + 1.0)).abs() < 1e-12);
/// ```
pub fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 { 1.0 } else { 0.1 * mscale * scale.ln() + 1.0 }
}

impl RopeScaling {
    /// Checks the parameters: positive factors, and for [`Llama3`](Self::Llama3)
    /// `high_freq_factor > low_freq_factor` and a positive original length.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| -> Result<()> {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                candle_core::bail!("rope scaling: `{name}` must be a positive number, got {v}")
            }
        };
        match *self {
            RopeScaling::None => Ok(()),
            RopeScaling::Linear { factor } | RopeScaling::NtkAware { factor } => positive("factor", factor),
            RopeScaling::Yarn { factor, original_max_positions, beta_fast, beta_slow, attention_factor, .. } => {
                positive("factor", factor)?;
                positive("beta_fast", beta_fast)?;
                positive("beta_slow", beta_slow)?;
                positive("attention_factor", attention_factor)?;
                if original_max_positions == 0 {
                    candle_core::bail!("rope scaling yarn: `original_max_position_embeddings` must be positive");
                }
                Ok(())
            }
            RopeScaling::DynamicNtk { factor, original_max_positions } => {
                positive("factor", factor)?;
                if original_max_positions == 0 {
                    candle_core::bail!("rope scaling dynamic: `max_position_embeddings` must be positive");
                }
                Ok(())
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => {
                positive("factor", factor)?;
                positive("low_freq_factor", low_freq_factor)?;
                positive("high_freq_factor", high_freq_factor)?;
                if high_freq_factor <= low_freq_factor {
                    candle_core::bail!(
                        "rope scaling llama3: `high_freq_factor` ({high_freq_factor}) must exceed `low_freq_factor` ({low_freq_factor})"
                    );
                }
                if original_max_positions == 0 {
                    candle_core::bail!("rope scaling llama3: `original_max_position_embeddings` must be positive");
                }
                Ok(())
            }
        }
    }

    /// The scaled inverse frequency of one base inverse frequency `inv_freq` (computed in f64).
    /// Linear and NTK-aware scaling act on the positions and the base instead and return it as is.
    fn scale_frequency(&self, inv_freq: f64) -> f64 {
        match *self {
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => {
                let context = original_max_positions as f64;
                let wavelength = 2.0 * std::f64::consts::PI / inv_freq;
                if wavelength < context / high_freq_factor {
                    inv_freq
                } else if wavelength > context / low_freq_factor {
                    inv_freq / factor
                } else {
                    let smooth = (context / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
                }
            }
            _ => inv_freq,
        }
    }
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

impl RotaryConfig {
    /// Rotary over `rotary_dim` features (usually the whole `head_dim`) with the defaults of
    /// RoFormer and LLaMA: base θ = 10000, [`RotaryLayout::HalfSplit`] (the Hugging Face layout),
    /// no [`RopeScaling`]. Refine with the `with_*` methods.
    ///
    /// ```
    /// use tcat_position::{RopeScaling, RotaryConfig, RotaryLayout};
    /// let cfg = RotaryConfig::new(64).with_base(500_000.0).with_layout(RotaryLayout::Interleaved);
    /// assert_eq!((cfg.rotary_dim, cfg.base, cfg.scaling), (64, 500_000.0, RopeScaling::None));
    /// ```
    pub fn new(rotary_dim: usize) -> Self {
        Self { rotary_dim, base: 10_000.0, layout: RotaryLayout::HalfSplit, scaling: RopeScaling::None }
    }

    /// Sets the base θ.
    pub fn with_base(mut self, base: f64) -> Self {
        self.base = base;
        self
    }

    /// Sets the pairing of features.
    pub fn with_layout(mut self, layout: RotaryLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets the frequency scaling.
    pub fn with_scaling(mut self, scaling: RopeScaling) -> Self {
        self.scaling = scaling;
        self
    }

    /// The `rotary_dim / 2` inverse frequencies `ω_i = θ^(−2i/rotary_dim)` after the scaling's
    /// frequency rule (NTK-aware: a larger θ; Llama 3: per-frequency interpolation; linear
    /// scaling divides the positions instead, and dynamic NTK within its original length keeps
    /// them, so both leave them as they are), rounded to f32 as
    /// the reference implementations hold them.
    pub fn inverse_frequencies(&self) -> Result<Vec<f32>> {
        self.inverse_frequencies_over(self.rotary_dim)
    }

    /// The inverse frequencies with exponents over `exponent_dim` instead of `rotary_dim`:
    /// `ω_i = θ^(−2i/exponent_dim)` for `i < rotary_dim / 2`. Hugging Face transformers rotates
    /// `2·⌈d/2⌉` features when a partial rotary factor gives an odd count `d`, with exponents
    /// over `d`; `exponent_dim` is then `rotary_dim − 1`. Any other value is refused.
    ///
    /// ```
    /// use tcat_position::{RopeScaling, RotaryConfig, RotaryLayout};
    /// let cfg = RotaryConfig { rotary_dim: 4, base: 100.0, layout: RotaryLayout::HalfSplit, scaling: RopeScaling::None };
    /// let odd = cfg.inverse_frequencies_over(3).unwrap();
    /// assert_eq!(odd.len(), 2);
    /// assert!((odd[1] - 100f32.powf(-2.0 / 3.0)).abs() < 1e-7);
    /// ```
    pub fn inverse_frequencies_over(&self, exponent_dim: usize) -> Result<Vec<f32>> {
        let d = self.rotary_dim;
        if d == 0 || !d.is_multiple_of(2) {
            candle_core::bail!("rotary_dim must be a positive even number, got {d}");
        }
        if exponent_dim != d && exponent_dim + 1 != d {
            candle_core::bail!(
                "rotary exponents over {exponent_dim} features for rotary_dim {d}: expected {d} or {}",
                d - 1
            );
        }
        self.scaling.validate()?;
        let e = exponent_dim as f64;
        if let RopeScaling::Yarn { factor, original_max_positions, beta_fast, beta_slow, truncate, .. } = self.scaling {
            // The feature index at which a frequency turns `rotations` times over the context.
            let at = |rotations: f64| {
                e * (original_max_positions as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln()
                    / (2.0 * self.base.ln())
            };
            let (mut low, mut high) = (at(beta_fast), at(beta_slow));
            if truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0), high.min(e - 1.0));
            if low == high {
                high += 0.001; // as transformers: no zero-width ramp
            }
            return Ok((0..d / 2)
                .map(|i| {
                    let omega = 1.0 / self.base.powf(2.0 * i as f64 / e);
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    (omega * (1.0 - ramp) + omega / factor * ramp) as f32
                })
                .collect());
        }
        let base = match self.scaling {
            RopeScaling::NtkAware { factor } => self.base * factor.powf(e / (e - 2.0)),
            _ => self.base,
        };
        Ok((0..d / 2).map(|i| self.scaling.scale_frequency(1.0 / base.powf(2.0 * i as f64 / e)) as f32).collect())
    }
}

/// Divides each inverse frequency by its factor: llama.cpp's `rope_freqs` tensor, which its
/// converter writes for Llama 3.1's scaling instead of the scaling parameters.
///
/// ```
/// assert_eq!(tcat_position::apply_frequency_factors(&[1.0, 0.5], &[1.0, 8.0]).unwrap(), [1.0, 0.0625]);
/// ```
pub fn apply_frequency_factors(inverse: &[f32], factors: &[f32]) -> Result<Vec<f32>> {
    if inverse.len() != factors.len() {
        candle_core::bail!("rope frequency factors: {} factors for {} frequencies", factors.len(), inverse.len());
    }
    if let Some(bad) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        candle_core::bail!("rope frequency factors must be positive and finite, found {bad}");
    }
    Ok(inverse.iter().zip(factors).map(|(w, f)| w / f).collect())
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
    long: Option<LongContext>,
}

/// The tables a rotary embedding switches to for long sequences (LongRoPE).
#[derive(Debug, Clone)]
struct LongContext {
    cos: Tensor,
    sin: Tensor,
    /// Sequences reaching past this many positions read the long tables.
    original_max_positions: usize,
}

impl RotaryEmbedding {
    /// Tables for positions `0..max_positions`.
    pub fn new(config: RotaryConfig, max_positions: usize, dtype: DType, device: &Device) -> Result<Self> {
        let inv_freq = config.inverse_frequencies()?;
        Self::from_inverse_frequencies(config, inv_freq, max_positions, dtype, device)
    }

    /// Tables for positions `0..max_positions` from explicit inverse frequencies (one per
    /// rotated pair, e.g. from [`RotaryConfig::inverse_frequencies_over`] or after
    /// [`apply_frequency_factors`]); `config` gives the layout and the position scaling.
    pub fn from_inverse_frequencies(
        config: RotaryConfig,
        inv_freq: Vec<f32>,
        max_positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let d = config.rotary_dim;
        if d == 0 || !d.is_multiple_of(2) {
            candle_core::bail!("rotary_dim must be a positive even number, got {d}");
        }
        if inv_freq.len() != d / 2 {
            candle_core::bail!("{} inverse frequencies for rotary_dim {d}, expected {}", inv_freq.len(), d / 2);
        }
        if let RopeScaling::DynamicNtk { original_max_positions, .. } = config.scaling
            && max_positions > original_max_positions
        {
            candle_core::bail!(
                "rope scaling dynamic: a table of {max_positions} positions passes the original {original_max_positions}, \
                 where dynamic NTK frequencies change with the sequence length (not supported)"
            );
        }
        let position_scale = match config.scaling {
            RopeScaling::Linear { factor } => 1.0 / factor,
            _ => 1.0,
        };
        let positions: Vec<f32> = (0..max_positions).map(|p| (p as f64 * position_scale) as f32).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, d / 2), device)?;
        let positions = Tensor::from_vec(positions, (max_positions, 1), device)?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        let (cos, sin) = match config.scaling {
            RopeScaling::Yarn { attention_factor, .. } if attention_factor != 1.0 => {
                ((angles.cos()? * attention_factor)?, (angles.sin()? * attention_factor)?)
            }
            _ => (angles.cos()?, angles.sin()?),
        };
        Ok(Self { cos: cos.to_dtype(dtype)?, sin: sin.to_dtype(dtype)?, config, long: None })
    }

    /// Multiplies the cos/sin tables by `factor`, so each rotated feature (and a score between
    /// two, by `factor²`) is scaled: LongRoPE's attention factor.
    pub fn with_magnitude(mut self, factor: f64) -> Result<Self> {
        self.cos = (self.cos * factor)?;
        self.sin = (self.sin * factor)?;
        if let Some(long) = &mut self.long {
            long.cos = (&long.cos * factor)?;
            long.sin = (&long.sin * factor)?;
        }
        Ok(self)
    }

    /// LongRoPE's switch (Ding et al. 2024, "LongRoPE", §3; Phi-3's `longrope`): a call whose
    /// largest position reaches `original_max_positions` or beyond reads `long`'s tables for
    /// every position, a shorter one this embedding's — the rule transformers applies per
    /// forward pass (`max(position_ids) + 1 > original_max_position_embeddings`). Both must
    /// have the same layout and width. Cached keys computed under one set are not recomputed
    /// when a sequence crosses: decoding across `original_max_positions` must re-run the
    /// prefix (as transformers does), see [`switches_at`](Self::switches_at).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use tcat_position::{RotaryConfig, RotaryEmbedding};
    /// let dev = Device::Cpu;
    /// let short = RotaryEmbedding::from_inverse_frequencies(RotaryConfig::new(2), vec![1.0], 8, DType::F32, &dev).unwrap();
    /// let long = RotaryEmbedding::from_inverse_frequencies(RotaryConfig::new(2), vec![0.5], 8, DType::F32, &dev).unwrap();
    /// let rope = short.with_long_context(long, 4).unwrap();
    /// assert_eq!(rope.switches_at(), Some(4));
    /// let x = Tensor::new(&[[[[1f32, 0.]]]], &dev).unwrap(); // [1, 1, 1, 2]
    /// let at = |p: u32, len: u32| {
    ///     let positions = Tensor::new(&[[p, len - 1]], &dev).unwrap();
    ///     let x = x.broadcast_as((1, 1, 2, 2)).unwrap().contiguous().unwrap();
    ///     rope.apply(&x, &positions).unwrap().get(0).unwrap().get(0).unwrap().get(0).unwrap().to_vec1::<f32>().unwrap()
    /// };
    /// // Position 2 rotates by 2 rad in a sequence of 4, by 1 rad in one of 6.
    /// assert!((at(2, 4)[0] - 2f32.cos()).abs() < 1e-6);
    /// assert!((at(2, 6)[0] - 1f32.cos()).abs() < 1e-6);
    /// ```
    pub fn with_long_context(mut self, long: RotaryEmbedding, original_max_positions: usize) -> Result<Self> {
        if long.config.rotary_dim != self.config.rotary_dim || long.config.layout != self.config.layout {
            candle_core::bail!("long-context rotary tables must have the short ones' width and layout");
        }
        if long.cos.dims() != self.cos.dims() {
            candle_core::bail!(
                "long-context rotary tables cover {:?}, the short ones {:?}",
                long.cos.dims(),
                self.cos.dims()
            );
        }
        self.long = Some(LongContext { cos: long.cos, sin: long.sin, original_max_positions });
        Ok(self)
    }

    /// The sequence length past which the long-context tables apply, if the embedding switches
    /// ([`with_long_context`](Self::with_long_context)).
    pub fn switches_at(&self) -> Option<usize> {
        self.long.as_ref().map(|l| l.original_max_positions)
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
        let (cos, sin) = match &self.long {
            Some(long) if b * s > 0 => {
                let last = flat.to_dtype(DType::F64)?.max(0)?.to_scalar::<f64>()?;
                if last + 1.0 > long.original_max_positions as f64 {
                    (&long.cos, &long.sin)
                } else {
                    (&self.cos, &self.sin)
                }
            }
            _ => (&self.cos, &self.sin),
        };
        let cos = cos.index_select(&flat, 0)?.reshape((b, s, ()))?;
        let sin = sin.index_select(&flat, 0)?.reshape((b, s, ()))?;
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

    /// `TCAT_TEST_DEVICE` (`cpu`, `cuda:0`, `metal`), the CPU when unset.
    fn device() -> Device {
        tcat_core::device_from_env("TCAT_TEST_DEVICE").unwrap_or_else(|e| panic!("TCAT_TEST_DEVICE: {e}"))
    }

    /// Largest |a - b|, on the host.
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let (a, b) = (a.to_device(&Device::Cpu).unwrap(), b.to_device(&Device::Cpu).unwrap());
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn kernels_match_the_pairwise_reference() {
        let dev = device();
        for layout in [RotaryLayout::HalfSplit, RotaryLayout::Interleaved] {
            for (rotary_dim, head_dim) in [(8, 8), (2, 8), (4, 6), (16, 16)] {
                for scaling in [
                    RopeScaling::None,
                    RopeScaling::Linear { factor: 2.0 },
                    RopeScaling::NtkAware { factor: 4.0 },
                    LLAMA3_SMALL,
                ] {
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

    /// Llama 3 scaling with a short original context, so that the 4 frequencies of a rotary
    /// dim of 8 at θ = 500000 (wavelengths 6.3, 167, 4443, 118000) fall in all three bands.
    const LLAMA3_SMALL: RopeScaling =
        RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_positions: 256 };

    /// The Llama 3 rule written the other way round: a smoothing weight
    /// `s = (L/λ − low) / (high − low)` clamped to [0, 1] blends `ω / factor` (s = 0) and `ω`
    /// (s = 1); the band edges follow from the clamp. In f32, as PyTorch evaluates it.
    fn llama3_by_clamp(theta: f32, dim: usize, factor: f32, low: f32, high: f32, context: f32) -> Vec<f32> {
        (0..dim / 2)
            .map(|i| {
                let w = 1.0 / theta.powf((2 * i) as f32 / dim as f32);
                let wavelength = 2.0 * std::f32::consts::PI / w;
                let s = ((context / wavelength - low) / (high - low)).clamp(0.0, 1.0);
                (1.0 - s) * w / factor + s * w
            })
            .collect()
    }

    #[test]
    fn llama3_frequencies_match_the_written_out_rule() {
        // Llama 3.1 8B: head_dim 128, θ 500000, factor 8, low 1, high 4, context 8192.
        let cfg = RotaryConfig {
            rotary_dim: 128,
            base: 500000.0,
            layout: RotaryLayout::HalfSplit,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions: 8192,
            },
        };
        let got = cfg.inverse_frequencies().unwrap();
        let want = llama3_by_clamp(500000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        let base = RotaryConfig { scaling: RopeScaling::None, ..cfg }.inverse_frequencies().unwrap();
        assert_eq!(got.len(), 64);
        let (mut kept, mut divided, mut blended) = (0, 0, 0);
        for (i, ((g, w), b)) in got.iter().zip(&want).zip(&base).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs(), "frequency {i}: {g} vs {w}");
            if g == b {
                kept += 1;
            } else if (g * 8.0 - b).abs() <= 1e-6 * b {
                divided += 1;
            } else {
                assert!(g > &(b / 8.0) && g < b, "frequency {i}: {g} not between {b}/8 and {b}");
                blended += 1;
            }
        }
        // The highest frequency (ω₀ = 1, wavelength 2π) is kept; the lowest is divided by 8.
        assert_eq!(got[0], 1.0);
        assert!((got[63] * 8.0 - base[63]).abs() <= 1e-6 * base[63]);
        assert!(kept > 0 && divided > 0 && blended > 0, "bands {kept} / {blended} / {divided}");

        let small =
            RotaryConfig { rotary_dim: 8, base: 500000.0, layout: RotaryLayout::HalfSplit, scaling: LLAMA3_SMALL };
        let got = small.inverse_frequencies().unwrap();
        let want = llama3_by_clamp(500000.0, 8, 8.0, 1.0, 4.0, 256.0);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs(), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn dynamic_ntk_keeps_the_base_frequencies_within_the_original_length() {
        let scaling = RopeScaling::DynamicNtk { factor: 4.0, original_max_positions: 32 };
        let cfg = RotaryConfig { rotary_dim: 8, base: 10000.0, layout: RotaryLayout::HalfSplit, scaling };
        let plain = RotaryConfig { scaling: RopeScaling::None, ..cfg };
        assert_eq!(cfg.inverse_frequencies().unwrap(), plain.inverse_frequencies().unwrap());
        let dev = device();
        let rope = RotaryEmbedding::new(cfg, 32, DType::F32, &dev).unwrap();
        let base = RotaryEmbedding::new(plain, 32, DType::F32, &dev).unwrap();
        assert_eq!(max_diff(&rope.cos, &base.cos), 0.0);
        let err = RotaryEmbedding::new(cfg, 33, DType::F32, &dev).unwrap_err().to_string();
        assert!(err.contains("dynamic") && err.contains("33") && err.contains("32"), "{err}");
    }

    #[test]
    fn llama3_parameters_are_checked() {
        let bad = [
            RopeScaling::Llama3 { factor: 0.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_positions: 8 },
            RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 4.0, high_freq_factor: 4.0, original_max_positions: 8 },
            RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_positions: 0 },
        ];
        for scaling in bad {
            let cfg = RotaryConfig { rotary_dim: 8, base: 10000.0, layout: RotaryLayout::HalfSplit, scaling };
            let err = RotaryEmbedding::new(cfg, 8, DType::F32, &device()).unwrap_err().to_string();
            assert!(err.contains("llama3") || err.contains("factor"), "{err}");
        }
    }

    /// The defining property: ⟨R(m)q, R(n)k⟩ depends only on m − n.
    #[test]
    fn scores_depend_only_on_relative_position() {
        let dev = device();
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
        let dev = device();
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

#[cfg(test)]
mod yarn_tests {
    use super::*;

    fn yarn(factor: f64, original: usize, attention_factor: f64) -> RopeScaling {
        RopeScaling::Yarn {
            factor,
            original_max_positions: original,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor,
            truncate: true,
        }
    }

    /// Values printed by transformers 5.23's `_compute_yarn_parameters` (DeepSeek-V2's rope
    /// settings: θ 10000, factor 40, original 4096, 64 rotated features; every 4th frequency).
    #[test]
    fn yarn_frequencies_match_transformers() {
        let cfg = RotaryConfig::new(64).with_scaling(yarn(40.0, 4096, 1.0));
        let got = cfg.inverse_frequencies().unwrap();
        let want =
            [1.0, 0.316_227_76, 0.100_000_0, 0.026_879_36, 0.005_500_000_4, 0.000_790_569_4, 2.5e-5, 7.905_694_5e-6];
        for (k, w) in want.iter().enumerate() {
            let g = got[4 * k] as f64;
            assert!((g - w).abs() <= 1e-6 * w.max(1e-3), "frequency {}: {g} vs {w}", 4 * k);
        }
        // A tiny head: θ 1000, factor 4, original 16.
        let cfg = RotaryConfig::new(4).with_base(1000.0).with_scaling(yarn(4.0, 16, 1.0));
        let got = cfg.inverse_frequencies().unwrap();
        assert!((got[0] - 1.0).abs() < 1e-7 && (got[1] as f64 - 0.007_905_694_7).abs() < 1e-9, "{got:?}");
    }

    /// The attention factor scales the cos/sin tables (and so each rotated feature).
    #[test]
    fn yarn_attention_factor_scales_the_tables() {
        let factor = yarn_mscale(4.0, 1.0) / yarn_mscale(4.0, 0.8);
        assert!((factor - 1.024_957_960_796_966_8).abs() < 1e-12); // transformers' attention_factor
        let dev = Device::Cpu;
        let plain = RotaryEmbedding::new(RotaryConfig::new(4).with_scaling(yarn(4.0, 16, 1.0)), 8, DType::F32, &dev);
        let scaled =
            RotaryEmbedding::new(RotaryConfig::new(4).with_scaling(yarn(4.0, 16, factor)), 8, DType::F32, &dev);
        let x = Tensor::randn(0f32, 1., (1, 2, 5, 4), &dev).unwrap();
        let p = Tensor::new(&[[0u32, 1, 2, 5, 7]], &dev).unwrap();
        let (a, b) = (plain.unwrap().apply(&x, &p).unwrap(), scaled.unwrap().apply(&x, &p).unwrap());
        let d: f32 = ((a * factor).unwrap() - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(d < 1e-6, "{d}");
        assert!(RotaryConfig::new(4).with_scaling(yarn(0.0, 16, 1.0)).inverse_frequencies().is_err());
    }
}
