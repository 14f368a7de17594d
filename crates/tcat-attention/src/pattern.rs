//! Sparse attention patterns as types: which keys each query may see, by position, for the
//! factorised and block-sparse attentions of the catalog.
//!
//! Every pattern is a pure predicate on absolute positions ([`SparsePattern::allows`]); the
//! materialised path turns it into a mask, the fused kernel asks it tile by tile, and
//! [`AttentionMask::grid`](crate::AttentionMask::grid) prints it.

/// A sparse pattern over absolute positions, ANDed with a mask's causality and padding
/// (see [`AttentionMask::with_pattern`](crate::AttentionMask::with_pattern)).
///
/// The Sparse Transformer and DALL-E patterns are causal by definition (their rules include
/// `key ≤ query`); BigBird's and the band are bidirectional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparsePattern {
    /// Strided attention (Child et al. 2019, "Generating Long Sequences with Sparse
    /// Transformers", §4.2, the union of its two heads): query `i` sees key `j ≤ i` when
    /// `i − j < stride` (the recent window) or `(i − j) mod stride = 0` (the strided column).
    /// Every earlier key is reachable in two hops.
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, SparsePattern};
    /// let grid = AttentionMask::none().with_pattern(SparsePattern::Strided { stride: 2 }).grid(6, 6).unwrap();
    /// assert_eq!(grid, "■·····\n■■····\n■■■···\n·■■■··\n■·■■■·\n·■·■■■\n");
    /// ```
    Strided {
        /// `l`, about √n in the paper.
        stride: usize,
    },
    /// Fixed attention (Child et al. 2019, §4.2, both heads): query `i` sees key `j ≤ i` in
    /// its own block of `block` positions, and the last `summary` positions of every block
    /// (`j mod block ≥ block − summary`), which carry information forward.
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, SparsePattern};
    /// let fixed = SparsePattern::Fixed { block: 3, summary: 1 };
    /// let grid = AttentionMask::none().with_pattern(fixed).grid(7, 7).unwrap();
    /// assert_eq!(grid, "■······\n■■·····\n■■■····\n··■■···\n··■■■··\n··■■■■·\n··■··■■\n");
    /// ```
    Fixed {
        /// `l`: positions per block.
        block: usize,
        /// `c`: summary positions at the end of each block.
        summary: usize,
    },
    /// BigBird's block-sparse attention (Zaheer et al. 2020, "Big Bird: Transformers for Longer
    /// Sequences", §2, the ITC variant), bidirectional, on blocks of `block` positions (the last
    /// block may be partial): query block `a` sees key block `c` when `|a − c| ≤ window / 2`
    /// (the sliding window of `window` blocks), when either is one of the first `global` blocks
    /// (global tokens see and are seen by everything), or when `c` is one of `random` blocks
    /// drawn for `a` by a hash of `(seed, a, r)` (a fixed graph per seed, as the paper's
    /// random attention is fixed per layer).
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, SparsePattern};
    /// let bigbird = SparsePattern::BigBird { block: 2, window: 3, global: 1, random: 0, seed: 0 };
    /// let grid = AttentionMask::none().with_pattern(bigbird).grid(10, 10).unwrap();
    /// assert_eq!(
    ///     grid,
    ///     "■■■■■■■■■■\n■■■■■■■■■■\n■■■■■■····\n■■■■■■····\n■■■■■■■■··\n■■■■■■■■··\n■■··■■■■■■\n■■··■■■■■■\n■■····■■■■\n■■····■■■■\n"
    /// );
    /// ```
    BigBird {
        /// Positions per block.
        block: usize,
        /// Blocks in the sliding window, the query's own included (odd: `window / 2` each side).
        window: usize,
        /// Leading blocks that are global.
        global: usize,
        /// Random key blocks per query block.
        random: usize,
        /// Seed of the random blocks.
        seed: u64,
    },
    /// A symmetric band: query `i` sees key `j` when `|i − j| ≤ radius`, before and after it, a
    /// window of `2·radius + 1` keys centred on the query: the bidirectional sliding window of
    /// Longformer's local attention (Beltagy et al. 2020, "Longformer: The Long-Document
    /// Transformer", §3.1: "½w on each side") and of ModernBERT's local layers (Warner et al.
    /// 2024, "Smarter, Better, Faster, Longer: A Modern Bidirectional Encoder", §2.1.1: a
    /// 128-token window, so a radius of 64; transformers masks `|i − j| ≤ local_attention / 2`).
    /// Causal masking ANDed with it keeps the `radius + 1` most recent keys.
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, SparsePattern};
    /// let grid = AttentionMask::none().with_pattern(SparsePattern::Band { radius: 1 }).grid(5, 5).unwrap();
    /// assert_eq!(grid, "■■···\n■■■··\n·■■■·\n··■■■\n···■■\n");
    /// ```
    Band {
        /// Keys visible on each side of the query.
        radius: usize,
    },
    /// DALL-E's masks (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation", appendix B.1,
    /// Fig. 11): `text` text tokens followed by an image of `rows × cols` tokens in raster
    /// order, causal throughout. Text tokens see the text before them; image tokens see all the
    /// text and, among the image tokens before them, those the [`GridAxis`] selects.
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, GridAxis, SparsePattern};
    /// let column = SparsePattern::Dalle { text: 1, rows: 2, cols: 2, axis: GridAxis::Column };
    /// let grid = AttentionMask::none().with_pattern(column).grid(5, 5).unwrap();
    /// assert_eq!(grid, "■····\n■■···\n■·■··\n■■·■·\n■·■·■\n");
    /// ```
    Dalle {
        /// Text tokens before the image.
        text: usize,
        /// Image rows.
        rows: usize,
        /// Image columns.
        cols: usize,
        /// Which earlier image tokens an image token sees.
        axis: GridAxis,
    },
}

/// Which earlier image tokens an image token sees in DALL-E's masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridAxis {
    /// Row attention (Fig. 11a): the `cols` image tokens before it and itself, a band of
    /// `cols + 1` positions in raster order: the Sparse Transformer's local head with `l = cols`
    /// (Child et al. 2019, §4.2), which covers the earlier tokens of its own row and the row
    /// above from its own column on. (The paper defines its masks by this figure; the band
    /// is how the figure reads, e.g. token 8 of a 4 × 4 image, counted from 1, sees 4 to 8.)
    ///
    /// One text token, then a 2 × 3 image: the image token at row 1, column 0 (position 4) sees
    /// the whole first row; the one at row 1, column 2 (position 6) sees positions 3 to 6.
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, GridAxis, SparsePattern};
    /// let row = SparsePattern::Dalle { text: 1, rows: 2, cols: 3, axis: GridAxis::Row };
    /// let grid = AttentionMask::none().with_pattern(row).grid(7, 7).unwrap();
    /// assert_eq!(grid, "■······\n■■·····\n■■■····\n■■■■···\n■■■■■··\n■·■■■■·\n■··■■■■\n");
    /// ```
    Row,
    /// Column attention (Fig. 11b): the tokens above it in its own column, `(i − j) mod cols
    /// = 0`: the Sparse Transformer's strided head with `l = cols`. See the grid of
    /// [`SparsePattern::Dalle`].
    Column,
    /// Convolutional attention (Fig. 11d, the last layer): the earlier tokens within a
    /// `kernel × kernel` neighbourhood ending at its own row: rows `r − kernel + 1 ..= r`,
    /// columns `c − kernel / 2 ..= c + kernel / 2` (no wrap-around at the image's edges).
    ///
    /// One text token, then a 3 × 3 image with `kernel: 2` (rows `r − 1 ..= r`, columns
    /// `c − 1 ..= c + 1`): the last image token (row 2, column 2, position 9) sees the text,
    /// positions 5 and 6 of row 1 and 8 and itself in row 2.
    ///
    /// ```
    /// use tcat_attention::{AttentionMask, GridAxis, SparsePattern};
    /// let axis = GridAxis::Convolutional { kernel: 2 };
    /// let conv = SparsePattern::Dalle { text: 1, rows: 3, cols: 3, axis };
    /// let grid = AttentionMask::none().with_pattern(conv).grid(10, 10).unwrap();
    /// assert_eq!(
    ///     grid,
    ///     "■·········\n■■········\n■■■·······\n■·■■······\n■■■·■·····\n\
    ///      ■■■■■■····\n■·■■·■■···\n■···■■·■··\n■···■■■■■·\n■····■■·■■\n"
    /// );
    /// ```
    Convolutional {
        /// Neighbourhood width (11 in the paper's last layer).
        kernel: usize,
    },
}

impl SparsePattern {
    /// Checks the parameters, so that [`allows`](Self::allows) never divides by zero.
    pub fn validate(&self) -> candle_core::Result<()> {
        let bad = match *self {
            Self::Strided { stride } => (stride == 0).then_some("stride must be at least 1"),
            Self::Fixed { block, summary } => {
                (block == 0 || summary == 0 || summary > block).then_some("need 1 ≤ summary ≤ block")
            }
            Self::BigBird { block, window, .. } => {
                (block == 0 || window == 0).then_some("block and window must be at least 1")
            }
            // A zero radius is a legal (if odd) band: each query sees itself.
            Self::Band { .. } => None,
            Self::Dalle { rows, cols, axis, .. } => {
                (rows == 0 || cols == 0 || matches!(axis, GridAxis::Convolutional { kernel: 0 }))
                    .then_some("rows, cols and kernel must be at least 1")
            }
        };
        match bad {
            Some(why) => candle_core::bail!("sparse pattern {self:?}: {why}"),
            None => Ok(()),
        }
    }

    /// Whether the query at absolute position `query` may see the key at `key`, in a sequence
    /// of `kv_len` keys (BigBird's blocks depend on it).
    pub fn allows(&self, query: usize, key: usize, kv_len: usize) -> bool {
        match *self {
            Self::Strided { stride } => {
                key <= query && ((query - key) < stride || (query - key).is_multiple_of(stride))
            }
            Self::Fixed { block, summary } => {
                key <= query && (key / block == query / block || key % block >= block - summary)
            }
            Self::BigBird { block, window, global, random, seed } => {
                let (a, c) = (query / block, key / block);
                let blocks = kv_len.div_ceil(block);
                a.abs_diff(c) <= window / 2
                    || a < global
                    || c < global
                    || (0..random).any(|r| random_block(seed, a, r, blocks) == c)
            }
            Self::Band { radius } => query.abs_diff(key) <= radius,
            Self::Dalle { text, rows: _, cols, axis } => {
                if key > query {
                    return false;
                }
                if query < text || key < text {
                    return true;
                }
                let (tq, tk) = (query - text, key - text);
                let (rq, cq, rk, ck) = (tq / cols, tq % cols, tk / cols, tk % cols);
                match axis {
                    GridAxis::Row => tq - tk <= cols,
                    GridAxis::Column => cq == ck,
                    GridAxis::Convolutional { kernel } => rq - rk < kernel && cq.abs_diff(ck) <= kernel / 2,
                }
            }
        }
    }
}

impl SparsePattern {
    /// Whether any and whether all of the pairs of queries `q0..q1` and keys `k0..k1` (absolute
    /// positions, non-empty ranges) are allowed: what a tiled kernel needs to skip or trust a
    /// tile. BigBird is decided per block pair, the band by the tile's nearest and farthest
    /// pairs, the others pair by pair.
    pub fn tile(&self, q0: usize, q1: usize, k0: usize, k1: usize, kv_len: usize) -> (bool, bool) {
        let (mut any, mut all) = (false, true);
        match *self {
            Self::Band { radius } => {
                // The nearest pair is 0 apart when the ranges overlap, else the gap between them;
                // the farthest is between opposite corners.
                let nearest = if k0 >= q1 { k0 + 1 - q1 } else { q0.saturating_sub(k1 - 1) };
                let farthest = (q1 - 1).abs_diff(k0).max(q0.abs_diff(k1 - 1));
                (any, all) = (nearest <= radius, farthest <= radius);
            }
            Self::BigBird { block, .. } => {
                for a in q0 / block..=(q1 - 1) / block {
                    for c in k0 / block..=(k1 - 1) / block {
                        let ok = self.allows(a * block, c * block, kv_len);
                        (any, all) = (any || ok, all && ok);
                    }
                }
            }
            _ => {
                for i in q0..q1 {
                    for j in k0..k1 {
                        let ok = self.allows(i, j, kv_len);
                        (any, all) = (any || ok, all && ok);
                    }
                }
            }
        }
        (any, all)
    }
}

/// The `r`-th random key block of query block `a` (SplitMix64 of the seed and both indices).
fn random_block(seed: u64, a: usize, r: usize, blocks: usize) -> usize {
    let mut z = seed ^ (a as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (r as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % blocks.max(1) as u64) as usize
}
