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

use candle_core::{DType, Result, Tensor};
use tcat_attention::{AttentionKernel, AttentionMask, GridAxis, SparsePattern};

use crate::Shape;

/// The BigBird configuration of [`Variant::BigBird`].
const BIGBIRD: SparsePattern = SparsePattern::BigBird { block: 64, window: 3, global: 2, random: 3, seed: 0 };

/// The neighbourhood width of [`Variant::DalleConv`]: 11, as in DALL-E's last layer.
pub const DALLE_CONV_KERNEL: usize = 11;

/// One attention variant, as named on the command line (`dense`, `sliding:256`, ...).
///
/// Every variant is a [`Composition`] of a mask ([`MaskChoice`]), a kernel ([`KernelChoice`])
/// and a head layout ([`HeadLayout`]); what it runs, whether it is memory-efficient and how
/// much memory it needs all follow from that triple ([`Variant::composition`]). The named
/// variants are today's names for common triples; any other triple is spelled
/// `MASK@KERNEL[/gqa:G]` (e.g. `strided:128@materialized`, `sliding:256@fused/gqa:4`) and
/// parses into [`Variant::Composed`]; a composed spelling of a named triple parses to its name.
///
/// ```
/// use tcat_bench::{Composition, HeadLayout, KernelChoice, MaskChoice, Variant};
/// assert_eq!("causal@fused".parse::<Variant>().unwrap(), Variant::Fused);
/// let v: Variant = "strided:64@materialized".parse().unwrap();
/// let c = Composition { mask: MaskChoice::Strided { stride: 64 }, kernel: KernelChoice::Materialized, heads: HeadLayout::Full };
/// assert_eq!(v, Variant::Composed(c));
/// assert_eq!(v.to_string(), "strided:64@materialized");
/// assert!(!v.memory_efficient());
/// ```
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
    /// Any other mask × kernel × head layout, spelled `MASK@KERNEL[/gqa:G]`.
    Composed(Composition),
}

/// Which keys each query sees in a benchmark variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskChoice {
    /// Causal (`causal`).
    Causal,
    /// None (`bidirectional`).
    Bidirectional,
    /// Causal sliding window (`sliding:W`).
    Sliding {
        /// Keys per query.
        window: usize,
    },
    /// Sparse Transformer strided (`strided:L`).
    Strided {
        /// `l`.
        stride: usize,
    },
    /// Sparse Transformer fixed (`fixed:L`), `c = l / 16` ([`Variant::fixed_summary`]).
    Fixed {
        /// `l`.
        block: usize,
    },
    /// BigBird with blocks of 64, a window of 3 blocks, 2 global and 3 random (`bigbird`).
    BigBird,
    /// DALL-E's masks on the squarest grid ([`Variant::dalle_grid`]): `dalle-row`,
    /// `dalle-column`, `dalle-conv` (kernel [`DALLE_CONV_KERNEL`]).
    Dalle(DalleAxis),
}

/// The image axis of [`MaskChoice::Dalle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DalleAxis {
    /// Row attention.
    Row,
    /// Column attention.
    Column,
    /// Convolutional attention.
    Conv,
}

/// How a benchmark variant computes attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelChoice {
    /// [`scaled_dot_product_attention`](tcat_attention::scaled_dot_product_attention), the
    /// materialised scores (`materialized`).
    Materialized,
    /// [`fused_attention`](tcat_attention::fused_attention), tiled (`fused`).
    Fused,
    /// The kernel `MultiHeadAttention` uses by default, [`AttentionKernel::default`] (`default`).
    ModuleDefault,
    /// Causal linear attention (`linear`; causal masks only).
    Linear,
    /// candle-nn's CPU flash attention, a peer (`candle-flash`; causal masks only).
    CandleFlash,
}

/// How query heads share key/value heads in a benchmark variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadLayout {
    /// One key/value head per query head.
    Full,
    /// `groups` query heads per key/value head (`/gqa:G`).
    Grouped {
        /// Query heads per key/value head.
        groups: usize,
    },
}

/// A benchmark variant as mask × kernel × head layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Composition {
    /// Which keys each query sees.
    pub mask: MaskChoice,
    /// How the scores are computed.
    pub kernel: KernelChoice,
    /// How heads are shared.
    pub heads: HeadLayout,
}

impl Composition {
    /// The attention mask for `seq` keys.
    pub fn attention_mask(&self, seq: usize) -> AttentionMask {
        match self.mask {
            MaskChoice::Causal => AttentionMask::causal(),
            MaskChoice::Bidirectional => AttentionMask::none(),
            MaskChoice::Sliding { window } => AttentionMask::causal().with_sliding_window(window),
            MaskChoice::Strided { stride } => AttentionMask::none().with_pattern(SparsePattern::Strided { stride }),
            MaskChoice::Fixed { block } => AttentionMask::none()
                .with_pattern(SparsePattern::Fixed { block, summary: Variant::fixed_summary(block) }),
            MaskChoice::BigBird => AttentionMask::none().with_pattern(BIGBIRD),
            MaskChoice::Dalle(axis) => {
                let axis = match axis {
                    DalleAxis::Row => GridAxis::Row,
                    DalleAxis::Column => GridAxis::Column,
                    DalleAxis::Conv => GridAxis::Convolutional { kernel: DALLE_CONV_KERNEL },
                };
                let (rows, cols) = Variant::dalle_grid(seq);
                AttentionMask::none().with_pattern(SparsePattern::Dalle { text: 0, rows, cols, axis })
            }
        }
    }

    /// Whether the kernel avoids the `seq × seq` scores.
    pub fn memory_efficient(&self) -> bool {
        match self.kernel {
            KernelChoice::Materialized => false,
            KernelChoice::ModuleDefault => AttentionKernel::default() == AttentionKernel::Fused,
            KernelChoice::Fused | KernelChoice::Linear | KernelChoice::CandleFlash => true,
        }
    }

    /// A generous estimate of the heap bytes one run allocates above its inputs: three
    /// `f32` score matrices for the materialised path (scores, masked scores, probabilities;
    /// measured: 388 MiB at 8 × 2048², where one is 128 MiB), five `f32` copies of the queries'
    /// size otherwise (f32 inputs, output, the fused kernel's transposed keys and the kernels'
    /// buffers; measured 32 MiB at 8 × 8192 × 64 in f32, where one is 16 MiB).
    pub fn estimated_bytes(&self, shape: Shape) -> usize {
        let rows = shape.batch.saturating_mul(shape.heads).saturating_mul(shape.seq);
        let activations = rows.saturating_mul(shape.head_dim).saturating_mul(4);
        if self.memory_efficient() {
            activations.saturating_mul(5)
        } else {
            shape.score_bytes(DType::F32).saturating_mul(3).saturating_add(activations)
        }
    }

    fn check(self, name: &str) -> Result<Self> {
        let causal_only = matches!(self.kernel, KernelChoice::Linear | KernelChoice::CandleFlash);
        if causal_only && self.mask != MaskChoice::Causal {
            candle_core::bail!(
                "attention variant `{name}`: the {} kernel takes the causal mask only",
                kernel_name(self.kernel)
            );
        }
        Ok(self)
    }
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
        if name.contains('@') {
            return parse_composed(name);
        }
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
            _ => candle_core::bail!(
                "unknown attention variant `{name}`; known: {known}; or compose MASK@KERNEL[/gqa:G] with a mask \
                 (causal, bidirectional, sliding:W, strided:L, fixed:L, bigbird, dalle-row, dalle-column, dalle-conv) \
                 and a kernel (materialized, fused, default, linear, candle-flash)"
            ),
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

    /// The variant as mask × kernel × head layout: everything else follows from it.
    ///
    /// ```
    /// use tcat_bench::{HeadLayout, KernelChoice, MaskChoice, Variant};
    /// let c = Variant::Gqa { groups: 2 }.composition();
    /// assert_eq!((c.mask, c.kernel, c.heads), (MaskChoice::Causal, KernelChoice::ModuleDefault, HeadLayout::Grouped { groups: 2 }));
    /// ```
    pub fn composition(&self) -> Composition {
        let with = |mask, kernel| Composition { mask, kernel, heads: HeadLayout::Full };
        match *self {
            Self::Dense => with(MaskChoice::Causal, KernelChoice::Materialized),
            Self::DenseBidirectional => with(MaskChoice::Bidirectional, KernelChoice::Materialized),
            Self::Sliding { window } => with(MaskChoice::Sliding { window }, KernelChoice::Materialized),
            Self::Fused => with(MaskChoice::Causal, KernelChoice::Fused),
            Self::FusedSliding { window } => with(MaskChoice::Sliding { window }, KernelChoice::Fused),
            Self::Strided { stride } => with(MaskChoice::Strided { stride }, KernelChoice::Fused),
            Self::Fixed { block } => with(MaskChoice::Fixed { block }, KernelChoice::Fused),
            Self::BigBird => with(MaskChoice::BigBird, KernelChoice::Fused),
            Self::DalleRow => with(MaskChoice::Dalle(DalleAxis::Row), KernelChoice::Fused),
            Self::DalleColumn => with(MaskChoice::Dalle(DalleAxis::Column), KernelChoice::Fused),
            Self::DalleConv => with(MaskChoice::Dalle(DalleAxis::Conv), KernelChoice::Fused),
            Self::Gqa { groups } => Composition {
                mask: MaskChoice::Causal,
                kernel: KernelChoice::ModuleDefault,
                heads: HeadLayout::Grouped { groups },
            },
            Self::CandleFlash => with(MaskChoice::Causal, KernelChoice::CandleFlash),
            Self::Linear => with(MaskChoice::Causal, KernelChoice::Linear),
            Self::Composed(c) => c,
        }
    }

    /// The named variant of a composition, or [`Variant::Composed`].
    pub fn from_composition(c: Composition) -> Self {
        Self::benchmarked()
            .into_iter()
            .chain([
                Self::Sliding { window: 0 },
                Self::FusedSliding { window: 0 },
                Self::Strided { stride: 0 },
                Self::Fixed { block: 0 },
                Self::Gqa { groups: 0 },
            ])
            .map(|v| match (v, c.mask, c.heads) {
                (Self::Sliding { .. }, MaskChoice::Sliding { window }, _) => Self::Sliding { window },
                (Self::FusedSliding { .. }, MaskChoice::Sliding { window }, _) => Self::FusedSliding { window },
                (Self::Strided { .. }, MaskChoice::Strided { stride }, _) => Self::Strided { stride },
                (Self::Fixed { .. }, MaskChoice::Fixed { block }, _) => Self::Fixed { block },
                (Self::Gqa { .. }, _, HeadLayout::Grouped { groups }) => Self::Gqa { groups },
                (v, _, _) => v,
            })
            .find(|v| v.composition() == c)
            .unwrap_or(Self::Composed(c))
    }

    /// The key/value heads the variant runs with, given `heads` query heads: `heads / G` for a
    /// grouped layout (`gqa:G`; an error when `G` does not divide `heads`), `heads` otherwise.
    pub fn kv_heads(&self, heads: usize) -> Result<usize> {
        match self.composition().heads {
            HeadLayout::Grouped { groups } if heads.is_multiple_of(groups) => Ok(heads / groups),
            HeadLayout::Grouped { groups } => candle_core::bail!(
                "attention variant `{self}`: {groups} does not divide the {heads} query heads \
                 (gqa:G needs heads / G key/value heads; choose G among the divisors of {heads})"
            ),
            HeadLayout::Full => Ok(heads),
        }
    }

    /// Whether the variant's memory grows slower than the `seq × seq` score matrix, so that it
    /// is worth running at lengths where dense attention does not fit.
    pub fn memory_efficient(&self) -> bool {
        self.composition().memory_efficient()
    }

    /// A generous estimate of the heap bytes one run on `shape` allocates above its inputs
    /// ([`Composition::estimated_bytes`]), checked against the memory available before a run
    /// ([`crate::memory::fits`]).
    ///
    /// ```
    /// use tcat_bench::{Shape, Variant};
    /// let shape = Shape { batch: 1, heads: 8, seq: 16384, head_dim: 64 };
    /// assert!(Variant::Dense.estimated_bytes(shape) > 24 << 30); // 3 × 8 GiB of scores
    /// assert!(Variant::Fused.estimated_bytes(shape) < 200 << 20);
    /// ```
    pub fn estimated_bytes(&self, shape: Shape) -> usize {
        self.composition().estimated_bytes(shape)
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
        let c = self.composition();
        let scale = (q.dims4()?.3 as f64).powf(-0.5);
        if let HeadLayout::Grouped { groups } = c.heads {
            let heads = q.dims4()?.1;
            let (kv_heads, found) = (self.kv_heads(heads)?, k.dims4()?.1);
            if found != kv_heads {
                candle_core::bail!(
                    "attention variant `{self}` needs k and v with {heads} / {groups} = {kv_heads} heads, \
                     found {found} (Inputs::for_variant builds them)"
                );
            }
        }
        let mask = c.attention_mask(k.dims4()?.2);
        match c.kernel {
            KernelChoice::Materialized => AttentionKernel::Materialized.attention(q, k, v, &mask, scale),
            KernelChoice::Fused => AttentionKernel::Fused.attention(q, k, v, &mask, scale),
            KernelChoice::ModuleDefault => AttentionKernel::default().attention(q, k, v, &mask, scale),
            KernelChoice::Linear => tcat_attention::linear_attention(q, k, v, &mask),
            KernelChoice::CandleFlash => {
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

/// Parses `MASK@KERNEL[/gqa:G]`.
fn parse_composed(name: &str) -> Result<Variant> {
    let (body, heads) = match name.split_once('/') {
        Some((body, groups)) => match groups.trim().split_once(':') {
            Some(("gqa", g)) => (body, HeadLayout::Grouped { groups: number(name, g)? }),
            _ => candle_core::bail!("attention variant `{name}`: the head layout is /gqa:G, found `/{groups}`"),
        },
        None => (name, HeadLayout::Full),
    };
    let Some((mask, kernel)) = body.split_once('@') else {
        candle_core::bail!("attention variant `{name}`: expected MASK@KERNEL[/gqa:G]")
    };
    let (kind, arg) = match mask.trim().split_once(':') {
        Some((kind, arg)) => (kind, Some(arg)),
        None => (mask.trim(), None),
    };
    let mask = match (kind, arg) {
        ("causal", None) => MaskChoice::Causal,
        ("bidirectional", None) => MaskChoice::Bidirectional,
        ("sliding", Some(a)) => MaskChoice::Sliding { window: number(name, a)? },
        ("strided", Some(a)) => MaskChoice::Strided { stride: number(name, a)? },
        ("fixed", Some(a)) => MaskChoice::Fixed { block: number(name, a)? },
        ("bigbird", None) => MaskChoice::BigBird,
        ("dalle-row", None) => MaskChoice::Dalle(DalleAxis::Row),
        ("dalle-column", None) => MaskChoice::Dalle(DalleAxis::Column),
        ("dalle-conv", None) => MaskChoice::Dalle(DalleAxis::Conv),
        _ => candle_core::bail!(
            "attention variant `{name}`: unknown mask `{mask}`; masks: causal, bidirectional, sliding:W, strided:L, \
             fixed:L, bigbird, dalle-row, dalle-column, dalle-conv"
        ),
    };
    let kernel = match kernel.trim() {
        "materialized" => KernelChoice::Materialized,
        "fused" => KernelChoice::Fused,
        "default" => KernelChoice::ModuleDefault,
        "linear" => KernelChoice::Linear,
        "candle-flash" => KernelChoice::CandleFlash,
        other => candle_core::bail!(
            "attention variant `{name}`: unknown kernel `{other}`; kernels: materialized, fused, default, linear, candle-flash"
        ),
    };
    Ok(Variant::from_composition(Composition { mask, kernel, heads }.check(name)?))
}

fn kernel_name(kernel: KernelChoice) -> &'static str {
    match kernel {
        KernelChoice::Materialized => "materialized",
        KernelChoice::Fused => "fused",
        KernelChoice::ModuleDefault => "default",
        KernelChoice::Linear => "linear",
        KernelChoice::CandleFlash => "candle-flash",
    }
}

impl fmt::Display for MaskChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Causal => write!(f, "causal"),
            Self::Bidirectional => write!(f, "bidirectional"),
            Self::Sliding { window } => write!(f, "sliding:{window}"),
            Self::Strided { stride } => write!(f, "strided:{stride}"),
            Self::Fixed { block } => write!(f, "fixed:{block}"),
            Self::BigBird => write!(f, "bigbird"),
            Self::Dalle(DalleAxis::Row) => write!(f, "dalle-row"),
            Self::Dalle(DalleAxis::Column) => write!(f, "dalle-column"),
            Self::Dalle(DalleAxis::Conv) => write!(f, "dalle-conv"),
        }
    }
}

impl fmt::Display for Composition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.mask, kernel_name(self.kernel))?;
        match self.heads {
            HeadLayout::Full => Ok(()),
            HeadLayout::Grouped { groups } => write!(f, "/gqa:{groups}"),
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
            Self::Composed(c) => write!(f, "{c}"),
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

    #[test]
    fn variants_are_compositions() -> Result<()> {
        let mut named = Variant::benchmarked();
        named.extend([Variant::Sliding { window: 7 }, Variant::FusedSliding { window: 3 }, Variant::Gqa { groups: 4 }]);
        for v in named {
            assert_eq!(Variant::from_composition(v.composition()), v, "{v}");
            assert_eq!(Variant::parse(&v.composition().to_string())?, v, "{}", v.composition());
        }
        let composed = ["strided:8@materialized", "sliding:4@fused/gqa:3", "dalle-row@materialized", "bigbird@default"];
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (1, 6, 16, 4), &dev)?;
        let kv = Tensor::randn(0f32, 1., (1, 6, 16, 4), &dev)?;
        for name in composed {
            let v = Variant::parse(name)?;
            assert!(matches!(v, Variant::Composed(_)), "{name}");
            assert_eq!(v.to_string(), name);
            let c = v.composition();
            let kv_heads = v.kv_heads(6)?;
            let (k, vv) = (kv.narrow(1, 0, kv_heads)?, kv.narrow(1, 0, kv_heads)?);
            let got = v.run(&q, &k, &vv)?;
            let want = tcat_attention::reference::attention(&q, &k, &vv, &c.attention_mask(16), 0.5)?;
            let diff = (got - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "{name}: {diff}");
        }
        for (bad, why) in [
            ("sliding:4@linear", "causal mask only"),
            ("causal@warp", "unknown kernel `warp`"),
            ("diagonal@fused", "unknown mask `diagonal`"),
            ("causal@fused/mqa", "the head layout is /gqa:G"),
        ] {
            let err = Variant::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        Ok(())
    }

    #[test]
    fn memory_estimates_follow_the_kernel() {
        let shape = Shape { batch: 1, heads: 8, seq: 2048, head_dim: 64 };
        // Measured peaks on this shape: 388 MiB materialised, 8.2 MiB fused (output and keys).
        let dense = Variant::Dense.estimated_bytes(shape);
        assert!((388 << 20..=600 << 20).contains(&dense), "{dense}");
        let fused = Variant::Fused.estimated_bytes(shape);
        assert!((4 << 20..=32 << 20).contains(&fused), "{fused}");
        let absurd = Shape { batch: 1, heads: 8, seq: 1 << 22, head_dim: 64 };
        match crate::memory::fits(Variant::Dense, absurd, &Device::Cpu) {
            crate::memory::Fit::TooLarge { needed, available } => assert!(needed > available),
            crate::memory::Fit::Unknown => assert!(crate::memory::available_bytes().is_none()),
            crate::memory::Fit::Fits => panic!("2^22 tokens of materialised scores cannot fit"),
        }
    }
}
