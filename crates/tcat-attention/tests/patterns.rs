//! Sparse patterns and block-diagonal masks: the mask tensor equals the predicate, and the
//! materialised and fused attentions with them equal the loop reference.

mod common;

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{
    AttentionMask, GridAxis, SparsePattern, fused_attention, reference, scaled_dot_product_attention,
};
use tcat_testkit::max_diff;

fn random_pattern(rng: &mut StdRng) -> SparsePattern {
    match rng.random_range(0..7) {
        6 => SparsePattern::Band { radius: rng.random_range(0..5) },
        0 => SparsePattern::Strided { stride: rng.random_range(1..6) },
        1 => {
            let block = rng.random_range(1..7);
            SparsePattern::Fixed { block, summary: rng.random_range(1..=block) }
        }
        2 => SparsePattern::BigBird {
            block: rng.random_range(1..5),
            window: [1, 3, 5][rng.random_range(0..3)],
            global: rng.random_range(0..3),
            random: rng.random_range(0..3),
            seed: rng.random(),
        },
        n => SparsePattern::Dalle {
            text: rng.random_range(0..4),
            rows: rng.random_range(1..5),
            cols: rng.random_range(1..5),
            axis: match n {
                3 => GridAxis::Row,
                4 => GridAxis::Column,
                _ => GridAxis::Convolutional { kernel: rng.random_range(1..5) },
            },
        },
    }
}

#[test]
fn mask_tensors_equal_the_predicate() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..200 {
        let pattern = random_pattern(&mut rng);
        let kv_len = rng.random_range(1..40);
        let q_len = rng.random_range(1..=kv_len);
        let allowed =
            AttentionMask::none().with_pattern(pattern).allowed(1, q_len, kv_len, &common::device()).unwrap().unwrap();
        let rows: Vec<Vec<u8>> = allowed.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        for (i, row) in rows.iter().enumerate() {
            for (j, &a) in row.iter().enumerate() {
                assert_eq!(
                    a != 0,
                    pattern.allows(i + kv_len - q_len, j, kv_len),
                    "{pattern:?} q{q_len} kv{kv_len} ({i}, {j})"
                );
            }
        }
    }
}

/// Row `i` of the `[q_len, kv_len]` mask of `pattern`, queries at the end of the keys.
fn mask_rows(pattern: SparsePattern, q_len: usize, kv_len: usize) -> Vec<Vec<bool>> {
    let allowed =
        AttentionMask::none().with_pattern(pattern).allowed(1, q_len, kv_len, &common::device()).unwrap().unwrap();
    let rows: Vec<Vec<u8>> = allowed.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    rows.into_iter().map(|r| r.into_iter().map(|a| a != 0).collect()).collect()
}

/// Compares the mask with `want` (`[n][n]`, the sets written out from the paper) for the whole
/// square and for the last rows only (queries after a cache).
fn assert_mask(pattern: SparsePattern, want: &[Vec<bool>]) {
    let n = want.len();
    for q_len in [n, n.div_ceil(2), 1] {
        let got = mask_rows(pattern, q_len, n);
        for (i, row) in got.iter().enumerate() {
            let p = n - q_len + i;
            assert_eq!(row, &want[p], "{pattern:?}: query {p} of {n} (q_len {q_len})");
        }
    }
}

/// The fixed pattern of Child et al. 2019 (§4.2) as sets: with `l = block` and `c = summary`,
/// `A(1)_i = {j : ⌊j/l⌋ = ⌊i/l⌋}` and `A(2)_i = {j : j mod l ∈ {l − c, …, l − 1}}`, both
/// restricted to `j ≤ i` (autoregressive). Built by listing members, not by testing pairs.
fn fixed_sets(block: usize, summary: usize, n: usize) -> Vec<Vec<bool>> {
    let mut sets = vec![vec![false; n]; n];
    for (i, set) in sets.iter_mut().enumerate() {
        // A(1): the query's own block, from its start up to the query.
        for member in set.iter_mut().take(i + 1).skip(i - i % block) {
            *member = true;
        }
        // A(2): the last `summary` positions of every block, those not after the query.
        for start in (0..n).step_by(block) {
            let (first, end) = (start + block - summary, (start + block).min(i + 1));
            for member in set.iter_mut().take(end).skip(first) {
                *member = true;
            }
        }
    }
    sets
}

#[test]
fn fixed_pattern_equals_the_sets_of_the_paper() {
    for block in 1..=6 {
        for summary in 1..=block {
            for n in [1, 5, 12, 31] {
                assert_mask(SparsePattern::Fixed { block, summary }, &fixed_sets(block, summary, n));
            }
        }
    }
}

/// DALL-E's masks (Ramesh et al. 2021, appendix B.1, Fig. 11) as sets over `text` text tokens
/// followed by a `rows × cols` image in raster order: text queries see the text up to
/// themselves; image queries see all the text and, among the image tokens up to themselves:
/// row, the previous `cols` ones (a band of `cols + 1`); column, those `cols`, `2·cols`, …
/// before it; convolutional, those at rows `r − k + 1 ..= r` and columns `c − k/2 ..= c + k/2`.
fn dalle_sets(text: usize, rows: usize, cols: usize, axis: GridAxis) -> Vec<Vec<bool>> {
    let n = text + rows * cols;
    let mut sets = vec![vec![false; n]; n];
    for (i, set) in sets.iter_mut().enumerate() {
        if i < text {
            set[..=i].iter_mut().for_each(|m| *m = true);
            continue;
        }
        set[..text].iter_mut().for_each(|m| *m = true);
        let (r, c) = ((i - text) / cols, (i - text) % cols);
        let image = |row: usize, col: usize| text + row * cols + col;
        match axis {
            GridAxis::Row => {
                for back in 0..=cols.min(i - text) {
                    set[i - back] = true;
                }
            }
            GridAxis::Column => {
                for above in 0..=r {
                    set[image(above, c)] = true;
                }
            }
            GridAxis::Convolutional { kernel } => {
                for row in r.saturating_sub(kernel - 1)..=r {
                    for col in c.saturating_sub(kernel / 2)..=(c + kernel / 2).min(cols - 1) {
                        if image(row, col) <= i {
                            set[image(row, col)] = true;
                        }
                    }
                }
            }
        }
    }
    sets
}

#[test]
fn dalle_masks_equal_the_sets_of_the_paper() {
    for text in [0, 1, 4] {
        for (rows, cols) in [(1, 1), (2, 3), (4, 4), (3, 5), (5, 2)] {
            let mut axes = vec![GridAxis::Row, GridAxis::Column];
            axes.extend((1..=5).map(|kernel| GridAxis::Convolutional { kernel }));
            for axis in axes {
                assert_mask(SparsePattern::Dalle { text, rows, cols, axis }, &dalle_sets(text, rows, cols, axis));
            }
        }
    }
}

#[test]
fn dalle_row_band_reads_the_figure() {
    // Ramesh et al. 2021, Fig. 11a on a 4 × 4 image: image token 8 (counted from 1) sees tokens
    // 4 to 8: 5, 6, 7 of its own row and 4, above it, from the row before.
    let sets = dalle_sets(0, 4, 4, GridAxis::Row);
    let seen: Vec<usize> = (0..16).filter(|&j| sets[7][j]).map(|j| j + 1).collect();
    assert_eq!(seen, [4, 5, 6, 7, 8]);
    assert_eq!(mask_rows(SparsePattern::Dalle { text: 0, rows: 4, cols: 4, axis: GridAxis::Row }, 16, 16)[7], sets[7]);
}

#[test]
fn attention_with_patterns_and_segments_matches_the_reference() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(5);
    for case in 0..60 {
        let kv_heads = [1, 2][rng.random_range(0..2)];
        let heads = kv_heads * [1, 3][rng.random_range(0..2)];
        let batch = rng.random_range(1..=2);
        let head_dim = [3, 8][rng.random_range(0..2)];
        let kv_len = [1, 9, 37, 140][rng.random_range(0..4)];
        let q_len = if rng.random_bool(0.7) { kv_len } else { rng.random_range(1..=kv_len) };
        let q = Tensor::randn(0f32, 1.5, (batch, heads, q_len, head_dim), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.5, (batch, kv_heads, kv_len, head_dim), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (batch, kv_heads, kv_len, head_dim), &dev).unwrap();
        let mut mask = match rng.random_range(0..3) {
            0 => AttentionMask::none(),
            1 => AttentionMask::causal(),
            _ => AttentionMask::causal().with_sliding_window(rng.random_range(1..=kv_len)),
        };
        if rng.random_bool(0.8) {
            mask = mask.with_pattern(random_pattern(&mut rng));
        }
        if rng.random_bool(0.4) {
            // Packed sequences: segment ids increase along the row.
            let ids: Vec<u32> = (0..batch)
                .flat_map(|_| {
                    let cut = rng.random_range(0..=kv_len);
                    (0..kv_len).map(move |j| u32::from(j >= cut))
                })
                .collect();
            mask = mask.with_segments(Tensor::from_vec(ids, (batch, kv_len), &dev).unwrap());
        }
        if rng.random_bool(0.3) {
            let keep: Vec<u32> = (0..batch * kv_len).map(|_| u32::from(rng.random_bool(0.8))).collect();
            mask = mask.with_key_padding(Tensor::from_vec(keep, (batch, kv_len), &dev).unwrap());
        }
        let scale = 1.0 / (head_dim as f64).sqrt();
        let want = reference::attention(&q, &k, &v, &mask, scale).unwrap();
        let dense = scaled_dot_product_attention(&q, &k, &v, &mask, scale).unwrap();
        let fused = fused_attention(&q, &k, &v, &mask, scale).unwrap();
        let (d, f) = (max_diff(&dense, &want), max_diff(&fused, &want));
        assert!(d <= 1e-5 && f <= 1e-5, "case {case}: {:?} q{q_len} kv{kv_len}: dense {d}, fused {f}", mask.pattern());
    }
}

#[test]
fn strided_reaches_every_earlier_key_in_two_hops() {
    // The Sparse Transformer's claim for its factorised heads (§4.2).
    for stride in [2, 3, 5] {
        let p = SparsePattern::Strided { stride };
        let n = 40;
        for i in 0..n {
            for j in 0..=i {
                let two_hops = (0..=i).any(|m| p.allows(i, m, n) && p.allows(m, j, n));
                assert!(two_hops, "stride {stride}: {j} not reachable from {i}");
            }
        }
    }
}

#[test]
fn bigbird_is_deterministic_per_seed_and_global_both_ways() {
    let grid = |seed| {
        let p = SparsePattern::BigBird { block: 2, window: 1, global: 1, random: 2, seed };
        AttentionMask::none().with_pattern(p).grid(20, 20).unwrap()
    };
    assert_eq!(grid(7), grid(7));
    assert_ne!(grid(7), grid(8), "the random blocks should depend on the seed");
    let p = SparsePattern::BigBird { block: 3, window: 3, global: 1, random: 1, seed: 1 };
    for x in 0..25 {
        for g in 0..3 {
            assert!(p.allows(x, g, 25) && p.allows(g, x, 25), "global block: {x} and {g}");
        }
    }
}

#[test]
fn bad_patterns_are_errors() {
    let dev = common::device();
    let q = Tensor::zeros((1, 1, 4, 4), DType::F32, &dev).unwrap();
    for bad in [
        SparsePattern::Strided { stride: 0 },
        SparsePattern::Fixed { block: 2, summary: 3 },
        SparsePattern::BigBird { block: 0, window: 1, global: 0, random: 0, seed: 0 },
        SparsePattern::Dalle { text: 1, rows: 2, cols: 0, axis: GridAxis::Row },
    ] {
        let mask = AttentionMask::none().with_pattern(bad);
        assert!(scaled_dot_product_attention(&q, &q, &q, &mask, 1.0).is_err(), "{bad:?}");
        assert!(fused_attention(&q, &q, &q, &mask, 1.0).is_err(), "{bad:?}");
    }
    let segments = Tensor::zeros((2, 4), DType::U32, &dev).unwrap(); // batch 2 for a batch of 1
    assert!(scaled_dot_product_attention(&q, &q, &q, &AttentionMask::none().with_segments(segments), 1.0).is_err());
}

#[test]
fn tile_summaries_agree_with_the_pairs() {
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..300 {
        let pattern = random_pattern(&mut rng);
        let kv_len = rng.random_range(1..60);
        let (q0, k0) = (rng.random_range(0..kv_len), rng.random_range(0..kv_len));
        let (q1, k1) = (rng.random_range(q0 + 1..=kv_len), rng.random_range(k0 + 1..=kv_len));
        let pairs: Vec<bool> = (q0..q1).flat_map(|i| (k0..k1).map(move |j| pattern.allows(i, j, kv_len))).collect();
        let want = (pairs.iter().any(|&p| p), pairs.iter().all(|&p| p));
        assert_eq!(pattern.tile(q0, q1, k0, k1, kv_len), want, "{pattern:?} {q0}..{q1} x {k0}..{k1} of {kv_len}");
    }
}

/// The band is `|i − j| ≤ radius`, as transformers' bidirectional sliding window
/// (`abs(q_idx - kv_idx) <= sliding_window`), written out pair by pair; attention under it (and
/// under it with padding) equals the loop reference on both kernels.
#[test]
fn band_is_the_symmetric_window_and_attention_matches_the_reference() {
    for radius in [0, 1, 2, 5] {
        let n = 9;
        let want: Vec<Vec<bool>> =
            (0..n).map(|i: usize| (0..n).map(|j: usize| i.abs_diff(j) <= radius).collect()).collect();
        let got = mask_rows(SparsePattern::Band { radius }, n, n);
        assert_eq!(got, want, "radius {radius}");
    }
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..10 {
        let (b, h, n, d) = (2, 2, rng.random_range(1..20), 4);
        let radius = rng.random_range(0..6);
        let q = Tensor::randn(0f32, 1., (b, h, n, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (b, h, n, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (b, h, n, d), &dev).unwrap();
        let keep: Vec<u32> = (0..b * n).map(|i| u32::from(i / n == 0 || i % n < n.div_ceil(2))).collect();
        let keep = Tensor::from_vec(keep, (b, n), &dev).unwrap();
        for mask in [
            AttentionMask::none().with_pattern(SparsePattern::Band { radius }),
            AttentionMask::none().with_key_padding(keep.clone()).with_pattern(SparsePattern::Band { radius }),
        ] {
            let want = reference::attention(&q, &k, &v, &mask, 0.5).unwrap();
            let fused = fused_attention(&q, &k, &v, &mask, 0.5).unwrap();
            let plain = scaled_dot_product_attention(&q, &k, &v, &mask, 0.5).unwrap();
            assert!(max_diff(&fused, &want) < 1e-5, "fused, radius {radius}, n {n}");
            assert!(max_diff(&plain, &want) < 1e-5, "materialised, radius {radius}, n {n}");
        }
    }
}
