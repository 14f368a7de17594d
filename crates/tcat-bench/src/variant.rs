//! The registry of attention variants that `tcat bench attention` and `benches/attention.rs` run.
//!
//! Every variant computes scaled dot-product attention (Vaswani et al. 2017, "Attention Is All
//! You Need", eq. 1) over the same `q`, `k`, `v`; they differ in which keys each query sees and
//! in how the scores are computed. The softmax variants go through tcat's one
//! [`scaled_dot_product_attention`], which materialises the `[batch, heads, seq, seq]` scores:
//! `dense` with the causal mask, `dense-bidirectional` with none, and `sliding:W` with the
//! causal sliding window of Longformer (Beltagy et al. 2020, "Longformer: The Long-Document
//! Transformer", §3.1) and Mistral. `linear` is causal linear attention (Katharopoulos et al.
//! 2020), linear in time and memory. `fused` and `fused-sliding:W` run the same softmax attention
//! as `dense` and `sliding:W` through tcat's tiled online-softmax kernel; `strided:L` and
//! `fixed:L` (Child et al. 2019), `bigbird` (Zaheer et al. 2020) and `dalle-row`, `dalle-column`,
//! `dalle-conv` (Ramesh et al. 2021) run their sparse patterns through it. `gqa:G` is causal
//! grouped-query attention (Ainslie et al. 2023), `G` query heads per key/value head, through the
//! kernel tcat's attention modules use by default.

use std::fmt;

use candle_core::{Result, Tensor};
use tcat_attention::{
    AttentionKernel, AttentionMask, GridAxis, SparsePattern, fused_attention, scaled_dot_product_attention,
};

/// The BigBird configuration of [`Variant::BigBird`].
const BIGBIRD: SparsePattern = SparsePattern::BigBird { block: 64, window: 3, global: 2, random: 3, seed: 0 };

/// The neighbourhood width of [`Variant::DalleConv`]: 11, as in DALL-E's last layer.
pub const DALLE_CONV_KERNEL: usize = 11;

/// One attention variant, as named on the command line (`dense`, `sliding:256`, ...).
///
/// # Adding a variant
///
/// A new kernel joins the benchmark with a few lines in this file, and the compiler points at
/// every place because the matches are exhaustive:
///
/// 1. an arm here, e.g. `Fused` or `Strided { stride: usize }`;
/// 2. its syntax in [`Variant::SYNTAX`] (what the error for an unknown name lists) and a line
///    in [`Variant::parse`], e.g. `("strided", Some(arg)) => Self::Strided { stride: number(name, arg)? }`;
/// 3. its name in [`fmt::Display`] (it must parse back to the same variant);
/// 4. its call in [`Variant::run`], e.g.
///    `Self::Fused => tcat_attention::fused_attention(q, k, v, &AttentionMask::causal(), scale)`;
/// 5. whether it avoids the `seq × seq` scores in [`Variant::memory_efficient`] (the criterion
///    bench then also runs it at 16384 tokens), and, if the criterion bench should run it, an
///    instance in [`Variant::benchmarked`].
///
/// ```
/// use tcat_bench::Variant;
/// let v: Variant = "sliding:256".parse().unwrap();
/// assert_eq!(v, Variant::Sliding { window: 256 });
/// assert_eq!(v.to_string(), "sliding:256");
/// let err = "warp".parse::<Variant>().unwrap_err().to_string();
/// assert!(err.contains("dense") && err.contains("sliding:W"), "{err}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Causal scaled dot-product attention with materialised scores.
    Dense,
    /// Unmasked scaled dot-product attention with materialised scores (encoders).
    DenseBidirectional,
    /// Causal attention restricted to the `window` most recent keys, through the same
    /// materialised scores (`AttentionMask::causal().with_sliding_window(window)`).
    Sliding {
        /// Keys visible to each query, itself included.
        window: usize,
    },
    /// Causal attention through the tiled online-softmax kernel ([`tcat_attention::fused_attention`]),
    /// which never materialises the scores.
    Fused,
    /// The sliding window through the fused kernel, which skips the key tiles outside the
    /// window: O(seq · window) time.
    FusedSliding {
        /// Keys visible to each query, itself included.
        window: usize,
    },
    /// The Sparse Transformer's strided pattern (Child et al. 2019) through the fused kernel,
    /// which skips the key tiles the pattern hides.
    Strided {
        /// The pattern's stride `l`.
        stride: usize,
    },
    /// The Sparse Transformer's fixed pattern (Child et al. 2019, §4.2) through the fused
    /// kernel, which skips the key tiles the pattern hides: causal, each query sees its own
    /// block of `block` positions and the last `c` positions of every earlier block, with
    /// `c = block / 16` (at least 1; [`Variant::fixed_summary`]): `c = 8` for `l = 128`, the
    /// paper's worked example, and within its `c ∈ {8, 16, 32}` for `l ∈ {128, 256}`.
    ///
    /// ```
    /// use tcat_bench::Variant;
    /// assert_eq!("fixed:128".parse::<Variant>().unwrap(), Variant::Fixed { block: 128 });
    /// assert_eq!(Variant::fixed_summary(128), 8);
    /// assert!("fixed".parse::<Variant>().unwrap_err().to_string().contains("fixed:L"));
    /// ```
    Fixed {
        /// The pattern's block length `l`.
        block: usize,
    },
    /// BigBird's block-sparse pattern (Zaheer et al. 2020) through the fused kernel: blocks of
    /// 64, a window of 3 blocks, 2 global and 3 random blocks (seed 0), bidirectional.
    BigBird,
    /// DALL-E's row mask (Ramesh et al. 2021, appendix B.1, Fig. 11a) through the fused kernel:
    /// no text tokens, the sequence is an image of [`Variant::dalle_grid`] `rows × cols` tokens
    /// in raster order, and each token sees the `cols` tokens before it and itself.
    ///
    /// ```
    /// use tcat_bench::Variant;
    /// assert_eq!("dalle-row".parse::<Variant>().unwrap(), Variant::DalleRow);
    /// assert_eq!(Variant::dalle_grid(8192), (128, 64)); // the image run at 8192 tokens
    /// ```
    DalleRow,
    /// DALL-E's column mask (Ramesh et al. 2021, Fig. 11b) through the fused kernel, on the
    /// image grid of [`Variant::DalleRow`]: each token sees the tokens above it in its column.
    DalleColumn,
    /// DALL-E's convolutional mask (Ramesh et al. 2021, Fig. 11d) through the fused kernel, on
    /// the image grid of [`Variant::DalleRow`]: each token sees the earlier tokens of the
    /// [`DALLE_CONV_KERNEL`]` × `[`DALLE_CONV_KERNEL`] (11 × 11, the paper's last layer)
    /// neighbourhood ending at its own row.
    DalleConv,
    /// Grouped-query attention (Ainslie et al. 2023, "GQA: Training Generalized Multi-Query
    /// Transformer Models from Multi-Head Checkpoints"): causal, `groups` query heads sharing
    /// each key/value head, through the kernel tcat's `MultiHeadAttention` uses by default
    /// ([`AttentionKernel::default`], the fused kernel). `k` and `v` have `heads / groups`
    /// heads ([`Variant::kv_heads`]; [`Inputs::for_variant`](crate::Inputs::for_variant)
    /// builds them); `groups` must divide `heads`.
    ///
    /// ```
    /// use tcat_bench::Variant;
    /// let gqa: Variant = "gqa:2".parse().unwrap();
    /// assert_eq!(gqa.kv_heads(8).unwrap(), 4);
    /// assert!(gqa.kv_heads(3).unwrap_err().to_string().contains("does not divide"));
    /// ```
    Gqa {
        /// Query heads per key/value head, `G`.
        groups: usize,
    },
    /// candle-nn's CPU flash attention (`candle_nn::attention::flash_attn`, causal), a peer:
    /// it takes `[batch, seq, heads, head_dim]`, so the transposes in and out are included.
    CandleFlash,
    /// Causal linear attention (Katharopoulos et al. 2020, `φ(x) = elu(x) + 1`), chunked: a
    /// different kernel than softmax, so it computes a different function of the same inputs.
    Linear,
}

impl Variant {
    /// The accepted spellings, in the order an error message lists them.
    pub const SYNTAX: &'static [&'static str] = &[
        "dense",
        "dense-bidirectional",
        "sliding:W",
        "fused",
        "fused-sliding:W",
        "gqa:G",
        "strided:L",
        "fixed:L",
        "bigbird",
        "dalle-row",
        "dalle-column",
        "dalle-conv",
        "linear",
        "candle-flash",
    ];

    /// Parses one variant name such as `dense` or `sliding:256`.
    ///
    /// ```
    /// use tcat_bench::Variant;
    /// assert_eq!(Variant::parse("dense").unwrap(), Variant::Dense);
    /// assert!(Variant::parse("sliding:0").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<Self> {
        let name = name.trim();
        let (kind, arg) = match name.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (name, None),
        };
        let known = Self::SYNTAX.join(", ");
        Ok(match (kind, arg) {
            ("dense", None) => Self::Dense,
            ("dense-bidirectional", None) => Self::DenseBidirectional,
            ("linear", None) => Self::Linear,
            ("fused", None) => Self::Fused,
            ("bigbird", None) => Self::BigBird,
            ("candle-flash", None) => Self::CandleFlash,
            ("dalle-row", None) => Self::DalleRow,
            ("dalle-column", None) => Self::DalleColumn,
            ("dalle-conv", None) => Self::DalleConv,
            ("dalle", _) => {
                candle_core::bail!("attention variant `{name}`: DALL-E's masks are dalle-row, dalle-column, dalle-conv")
            }
            ("fixed", Some(arg)) => Self::Fixed { block: number(name, arg)? },
            ("fixed", None) => {
                candle_core::bail!("attention variant `fixed` needs a block length: fixed:L, e.g. fixed:128")
            }
            ("gqa", Some(arg)) => Self::Gqa { groups: number(name, arg)? },
            ("gqa", None) => {
                candle_core::bail!(
                    "attention variant `gqa` needs the query heads per key/value head: gqa:G, e.g. gqa:2"
                )
            }
            ("strided", Some(arg)) => Self::Strided { stride: number(name, arg)? },
            ("strided", None) => {
                candle_core::bail!("attention variant `strided` needs a stride: strided:L, e.g. strided:128")
            }
            ("fused-sliding", Some(arg)) => Self::FusedSliding { window: number(name, arg)? },
            ("fused-sliding", None) => {
                candle_core::bail!(
                    "attention variant `fused-sliding` needs a window: fused-sliding:W, e.g. fused-sliding:256"
                )
            }
            ("sliding", Some(arg)) => Self::Sliding { window: number(name, arg)? },
            ("sliding", None) => {
                candle_core::bail!("attention variant `sliding` needs a window: sliding:W, e.g. sliding:256")
            }
            (_, Some(_)) if Self::SYNTAX.contains(&kind) => {
                candle_core::bail!("attention variant `{kind}` takes no `:` argument (found `{name}`); known: {known}")
            }
            _ => candle_core::bail!("unknown attention variant `{name}`; known: {known}"),
        })
    }

    /// Parses a comma-separated list (`dense,sliding:256`), dropping repeats and keeping order.
    ///
    /// ```
    /// use tcat_bench::Variant;
    /// let vs = Variant::parse_list("dense, sliding:64,dense").unwrap();
    /// assert_eq!(vs, [Variant::Dense, Variant::Sliding { window: 64 }]);
    /// assert!(Variant::parse_list(" , ").is_err());
    /// ```
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        let mut out: Vec<Self> = Vec::new();
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let v = Self::parse(name)?;
            if !out.contains(&v) {
                out.push(v);
            }
        }
        if out.is_empty() {
            candle_core::bail!("no attention variant in `{text}`; known: {}", Self::SYNTAX.join(", "));
        }
        Ok(out)
    }

    /// The instances the criterion bench (`benches/attention.rs`) runs.
    pub fn benchmarked() -> Vec<Self> {
        vec![
            Self::Dense,
            Self::DenseBidirectional,
            Self::Sliding { window: 256 },
            Self::Fused,
            Self::FusedSliding { window: 256 },
            Self::Gqa { groups: 2 },
            Self::Strided { stride: 128 },
            Self::Fixed { block: 128 },
            Self::BigBird,
            Self::DalleRow,
            Self::DalleColumn,
            Self::DalleConv,
            Self::Linear,
            Self::CandleFlash,
        ]
    }

    /// The summary positions `c` per block of [`Variant::Fixed`]: `block / 16`, at least 1.
    pub fn fixed_summary(block: usize) -> usize {
        (block / 16).max(1)
    }

    /// The image grid `(rows, cols)` the DALL-E variants lay `seq` tokens on: no text tokens,
    /// `rows × cols = seq`, with `cols` the largest divisor of `seq` not above `√seq` (the
    /// squarest grid; a prime length gets a single column).
    ///
    /// ```
    /// use tcat_bench::Variant;
    /// assert_eq!(Variant::dalle_grid(1024), (32, 32));
    /// assert_eq!(Variant::dalle_grid(2048), (64, 32));
    /// assert_eq!(Variant::dalle_grid(150), (15, 10));
    /// assert_eq!(Variant::dalle_grid(13), (13, 1));
    /// ```
    pub fn dalle_grid(seq: usize) -> (usize, usize) {
        let cols = (1..=seq.isqrt().max(1)).rev().find(|c| seq.is_multiple_of(*c)).unwrap_or(1);
        (seq / cols, cols)
    }

    /// The key/value heads the variant runs with, given `heads` query heads: `heads / G` for
    /// `gqa:G` (an error when `G` does not divide `heads`), `heads` for every other variant.
    pub fn kv_heads(&self, heads: usize) -> Result<usize> {
        match *self {
            Self::Gqa { groups } if heads.is_multiple_of(groups) => Ok(heads / groups),
            Self::Gqa { groups } => candle_core::bail!(
                "attention variant `{self}`: {groups} does not divide the {heads} query heads \
                 (gqa:G needs heads / G key/value heads; choose G among the divisors of {heads})"
            ),
            _ => Ok(heads),
        }
    }

    /// Whether the variant's memory grows slower than the `seq × seq` score matrix, so that it
    /// is worth running at lengths where dense attention does not fit.
    pub fn memory_efficient(&self) -> bool {
        match self {
            // The sliding window is applied as a mask over the full scores today.
            Self::Dense | Self::DenseBidirectional | Self::Sliding { .. } => false,
            Self::Fused
            | Self::FusedSliding { .. }
            | Self::Strided { .. }
            | Self::Fixed { .. }
            | Self::BigBird
            | Self::DalleRow
            | Self::DalleColumn
            | Self::DalleConv
            | Self::Linear
            | Self::CandleFlash => true,
            Self::Gqa { .. } => AttentionKernel::default() == AttentionKernel::Fused,
        }
    }

    /// Runs the variant on `q` `[batch, heads, seq, head_dim]` and `k`, `v`
    /// `[batch, kv_heads, seq, head_dim]`, with scale `head_dim^-1/2`; `gqa:G` needs
    /// `kv_heads = heads / G` ([`Variant::kv_heads`]).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use tcat_bench::Variant;
    /// let q = Tensor::randn(0f32, 1., (1, 2, 5, 4), &Device::Cpu).unwrap();
    /// let out = Variant::Sliding { window: 2 }.run(&q, &q, &q).unwrap();
    /// assert_eq!(out.dims(), q.dims());
    /// ```
    pub fn run(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let scale = (q.dims4()?.3 as f64).powf(-0.5);
        match self {
            Self::Dense => scaled_dot_product_attention(q, k, v, &AttentionMask::causal(), scale),
            Self::DenseBidirectional => scaled_dot_product_attention(q, k, v, &AttentionMask::none(), scale),
            Self::Sliding { window } => {
                scaled_dot_product_attention(q, k, v, &AttentionMask::causal().with_sliding_window(*window), scale)
            }
            Self::Fused => fused_attention(q, k, v, &AttentionMask::causal(), scale),
            Self::FusedSliding { window } => {
                fused_attention(q, k, v, &AttentionMask::causal().with_sliding_window(*window), scale)
            }
            Self::Strided { stride } => fused_attention(
                q,
                k,
                v,
                &AttentionMask::none().with_pattern(SparsePattern::Strided { stride: *stride }),
                scale,
            ),
            Self::Fixed { block } => {
                let fixed = SparsePattern::Fixed { block: *block, summary: Self::fixed_summary(*block) };
                fused_attention(q, k, v, &AttentionMask::none().with_pattern(fixed), scale)
            }
            Self::BigBird => fused_attention(q, k, v, &AttentionMask::none().with_pattern(BIGBIRD), scale),
            Self::DalleRow | Self::DalleColumn | Self::DalleConv => {
                let axis = match self {
                    Self::DalleRow => GridAxis::Row,
                    Self::DalleColumn => GridAxis::Column,
                    _ => GridAxis::Convolutional { kernel: DALLE_CONV_KERNEL },
                };
                let (rows, cols) = Self::dalle_grid(k.dims4()?.2);
                let dalle = SparsePattern::Dalle { text: 0, rows, cols, axis };
                fused_attention(q, k, v, &AttentionMask::none().with_pattern(dalle), scale)
            }
            Self::Gqa { groups } => {
                let heads = q.dims4()?.1;
                let (kv_heads, found) = (self.kv_heads(heads)?, k.dims4()?.1);
                if found != kv_heads {
                    candle_core::bail!(
                        "attention variant `{self}` needs k and v with {heads} / {groups} = {kv_heads} heads, \
                         found {found} (Inputs::for_variant builds them)"
                    );
                }
                AttentionKernel::default().attention(q, k, v, &AttentionMask::causal(), scale)
            }
            Self::Linear => tcat_attention::linear_attention(q, k, v, &AttentionMask::causal()),
            Self::CandleFlash => {
                let bshd = |t: &Tensor| t.transpose(1, 2)?.contiguous();
                let causal = candle_nn::attention::AttnMask::causal();
                let out = candle_nn::attention::flash_attn::<f32>(
                    &bshd(q)?,
                    &bshd(k)?,
                    &bshd(v)?,
                    scale as f32,
                    causal,
                    None,
                    None,
                )?;
                // Documented as (B, H, S, D); normalise whichever layout comes back.
                if out.dims() == q.dims() { Ok(out) } else { out.transpose(1, 2)?.contiguous() }
            }
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dense => write!(f, "dense"),
            Self::DenseBidirectional => write!(f, "dense-bidirectional"),
            Self::Sliding { window } => write!(f, "sliding:{window}"),
            Self::Fused => write!(f, "fused"),
            Self::FusedSliding { window } => write!(f, "fused-sliding:{window}"),
            Self::Strided { stride } => write!(f, "strided:{stride}"),
            Self::Fixed { block } => write!(f, "fixed:{block}"),
            Self::BigBird => write!(f, "bigbird"),
            Self::DalleRow => write!(f, "dalle-row"),
            Self::DalleColumn => write!(f, "dalle-column"),
            Self::DalleConv => write!(f, "dalle-conv"),
            Self::Gqa { groups } => write!(f, "gqa:{groups}"),
            Self::Linear => write!(f, "linear"),
            Self::CandleFlash => write!(f, "candle-flash"),
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = candle_core::Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// A positive integer argument of a variant, e.g. the `256` of `sliding:256`.
fn number(name: &str, arg: &str) -> Result<usize> {
    match arg.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => candle_core::bail!("attention variant `{name}`: `{arg}` is not a positive integer"),
    }
}

/// Parses comma-separated sequence lengths such as `512,2048,8192` (each at least 1).
///
/// ```
/// assert_eq!(tcat_bench::parse_lengths("512, 2048").unwrap(), [512, 2048]);
/// assert!(tcat_bench::parse_lengths("512,x").is_err());
/// ```
pub fn parse_lengths(text: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<usize>() {
            Ok(n) if n > 0 => {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            _ => candle_core::bail!("`{item}` is not a sequence length (expected a positive integer, e.g. 512,2048)"),
        }
    }
    if out.is_empty() {
        candle_core::bail!("no sequence length in `{text}` (expected e.g. 512,2048)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn names_round_trip() {
        for v in [
            Variant::Dense,
            Variant::DenseBidirectional,
            Variant::Sliding { window: 1 },
            Variant::Sliding { window: 4096 },
            Variant::Linear,
            Variant::Fused,
            Variant::FusedSliding { window: 3 },
            Variant::Strided { stride: 4 },
            Variant::BigBird,
            Variant::CandleFlash,
            Variant::Fixed { block: 64 },
            Variant::DalleRow,
            Variant::DalleColumn,
            Variant::DalleConv,
            Variant::Gqa { groups: 1 },
            Variant::Gqa { groups: 4 },
        ] {
            assert_eq!(Variant::parse(&v.to_string()).unwrap(), v);
        }
        for v in Variant::benchmarked() {
            assert_eq!(v.to_string().parse::<Variant>().unwrap(), v);
        }
    }

    #[test]
    fn every_syntax_entry_parses() {
        for syntax in Variant::SYNTAX {
            let name = syntax.replace(":W", ":8").replace(":L", ":8").replace(":G", ":8");
            assert!(Variant::parse(&name).is_ok(), "{name}");
        }
    }

    #[test]
    fn bad_names_are_errors_listing_the_known_ones() {
        for bad in ["fusion", "Dense", "dense:3", "sliding", "sliding:", "sliding:0", "sliding:-4", "sliding:x", ""] {
            let err = Variant::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad.split(':').next().unwrap()), "{bad}: {err}");
            if !bad.starts_with("sliding") {
                assert!(err.contains("known: dense, dense-bidirectional, sliding:W"), "{bad}: {err}");
            }
        }
        let err = Variant::parse_list("dense,strode:128").unwrap_err().to_string();
        assert!(err.contains("`strode:128`") && err.contains("strided:L"), "{err}");
    }

    #[test]
    fn lists() {
        assert_eq!(
            Variant::parse_list("sliding:256,dense").unwrap(),
            [Variant::Sliding { window: 256 }, Variant::Dense]
        );
        assert!(Variant::parse_list("").is_err());
        assert_eq!(parse_lengths("32,64,32,").unwrap(), [32, 64]);
        for bad in ["", ",", "0", "12,-1", "1.5", "x"] {
            assert!(parse_lengths(bad).is_err(), "{bad}");
        }
    }

    /// Each variant computes what its mask says: the same as sdpa's reference with that mask.
    #[test]
    fn variants_match_the_reference_attention() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (2, 3, 7, 4), &dev)?;
        let k = Tensor::randn(0f32, 1., (2, 3, 7, 4), &dev)?;
        let v = Tensor::randn(0f32, 1., (2, 3, 7, 4), &dev)?;
        let cases = [
            (Variant::Dense, AttentionMask::causal()),
            (Variant::DenseBidirectional, AttentionMask::none()),
            (Variant::Sliding { window: 3 }, AttentionMask::causal().with_sliding_window(3)),
            (Variant::Fused, AttentionMask::causal()),
            (Variant::FusedSliding { window: 3 }, AttentionMask::causal().with_sliding_window(3)),
            (Variant::Strided { stride: 2 }, AttentionMask::none().with_pattern(SparsePattern::Strided { stride: 2 })),
            (Variant::BigBird, AttentionMask::none().with_pattern(BIGBIRD)),
            (Variant::CandleFlash, AttentionMask::causal()),
        ];
        for (variant, mask) in cases {
            let got = variant.run(&q, &k, &v)?;
            let want = tcat_attention::reference::attention(&q, &k, &v, &mask, 0.5)?;
            let diff = (got - want)?.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "{variant}: {diff}");
        }
        Ok(())
    }
}
