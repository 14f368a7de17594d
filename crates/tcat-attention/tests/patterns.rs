//! Sparse patterns and block-diagonal masks: the mask tensor equals the predicate, and the
//! materialised and fused attentions with them equal the loop reference.

mod common;

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{
    AttentionMask, GridAxis, SparsePattern, fused_attention, reference, scaled_dot_product_attention,
};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn random_pattern(rng: &mut StdRng) -> SparsePattern {
    match rng.random_range(0..6) {
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
        let (d, f) = (max_abs_diff(&dense, &want), max_abs_diff(&fused, &want));
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
