//! The fused (tiled, online-softmax) attention against the plain reference and the materialised
//! path, on random shapes and masks.

mod common;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{AttentionMask, fused_attention, reference, scaled_dot_product_attention};
use tcat_testkit::max_diff;

/// Each row keeps a random prefix of at least one key, or a random set, or (sometimes) nothing.
fn random_keep(rng: &mut StdRng, batch: usize, kv_len: usize, dev: &Device) -> Tensor {
    let mut rows = Vec::new();
    for _ in 0..batch {
        let len = rng.random_range(1..=kv_len);
        let style = rng.random_range(0..10);
        for j in 0..kv_len {
            let keep = match style {
                0 => false, // a fully padded row: every query of this batch row sees nothing
                1..=3 => rng.random_bool(0.7),
                _ => j < len,
            };
            rows.push(keep as u32);
        }
    }
    Tensor::from_vec(rows, (batch, kv_len), dev).unwrap()
}

struct Case {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
}

fn random_mask(rng: &mut StdRng, c: &Case, dev: &Device) -> AttentionMask {
    let mut mask = match rng.random_range(0..4) {
        0 => AttentionMask::none(),
        1 => AttentionMask::causal(),
        2 => AttentionMask::causal().with_sliding_window(rng.random_range(0..=c.kv_len / 2 + 2)),
        _ => AttentionMask::causal().with_sliding_window(rng.random_range(1..=70)),
    };
    if rng.random_bool(0.4) {
        mask = mask.with_key_padding(random_keep(rng, c.batch, c.kv_len, dev));
    }
    let bias_shapes = [
        vec![1, c.heads, c.q_len, c.kv_len],
        vec![c.batch, 1, c.q_len, c.kv_len],
        vec![c.q_len, c.kv_len],
        vec![c.batch, c.heads, 1, c.kv_len],
    ];
    for _ in 0..rng.random_range(0..=2) {
        let shape = bias_shapes[rng.random_range(0..bias_shapes.len())].clone();
        mask = mask.with_bias(Tensor::randn(0f32, 1., shape, dev).unwrap());
    }
    if rng.random_bool(0.3) {
        mask = mask.with_logit_softcap(rng.random_range(0.5..5.0));
    }
    mask
}

fn random_case(rng: &mut StdRng, max_len: usize) -> Case {
    let kv_heads = [1, 2, 3][rng.random_range(0..3)];
    let group = [1, 2, 3, 5][rng.random_range(0..4)]; // odd head counts included
    let kv_len = rng.random_range(1..=max_len);
    let q_len = match rng.random_range(0..4) {
        0 => 1,
        1 => rng.random_range(1..=kv_len),
        2 => rng.random_range(1..=max_len), // may exceed kv_len: early causal queries see nothing
        _ => kv_len,
    };
    Case {
        batch: rng.random_range(1..=3),
        heads: kv_heads * group,
        kv_heads,
        q_len,
        kv_len,
        head_dim: [1, 8, 13, 16, 33, 64][rng.random_range(0..6)],
    }
}

fn inputs(c: &Case, dev: &Device) -> (Tensor, Tensor, Tensor) {
    let q = Tensor::randn(0f32, 1.5, (c.batch, c.heads, c.q_len, c.head_dim), dev).unwrap();
    let k = Tensor::randn(0f32, 1.5, (c.batch, c.kv_heads, c.kv_len, c.head_dim), dev).unwrap();
    let v = Tensor::randn(0f32, 1., (c.batch, c.kv_heads, c.kv_len, c.head_dim), dev).unwrap();
    (q, k, v)
}

#[test]
fn fused_matches_reference_and_sdpa_on_random_shapes() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(11);
    for case in 0..150 {
        // Lengths up to 150 cross several tiles (66 queries, 64 keys) and are rarely multiples of them.
        let c = random_case(&mut rng, if case % 3 == 0 { 150 } else { 20 });
        let (q, k, v) = inputs(&c, &dev);
        let mask = random_mask(&mut rng, &c, &dev);
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let fused = fused_attention(&q, &k, &v, &mask, scale).unwrap();
        assert_eq!(fused.dims(), q.dims());
        let slow = reference::attention(&q, &k, &v, &mask, scale).unwrap();
        let sdpa = scaled_dot_product_attention(&q, &k, &v, &mask, scale).unwrap();
        let what = format!(
            "case {case}: b={} h={} kv_h={} q={} kv={} d={} {:?}",
            c.batch,
            c.heads,
            c.kv_heads,
            c.q_len,
            c.kv_len,
            c.head_dim,
            mask.causality()
        );
        let (d_ref, d_sdpa) = (max_diff(&fused, &slow), max_diff(&fused, &sdpa));
        assert!(d_ref <= 1e-5, "{what}: vs reference {d_ref}");
        assert!(d_sdpa <= 1e-5, "{what}: vs sdpa {d_sdpa}");
    }
}

#[test]
fn fully_masked_rows_average_all_values_like_sdpa() {
    let dev = common::device();
    let (q_len, kv_len) = (70, 67);
    let c = Case { batch: 2, heads: 3, kv_heads: 1, q_len, kv_len, head_dim: 8 };
    let (q, k, v) = inputs(&c, &dev);
    // Batch row 1 is entirely padding; causal queries 0..3 sit before the first key; a window of
    // 0 hides every key from every query.
    let keep = Tensor::cat(
        &[Tensor::ones((1, kv_len), DType::U8, &dev).unwrap(), Tensor::zeros((1, kv_len), DType::U8, &dev).unwrap()],
        0,
    )
    .unwrap();
    let mean = v.mean_keepdim(2).unwrap().broadcast_as((2, 1, q_len, 8)).unwrap();
    for mask in [
        AttentionMask::none().with_key_padding(keep.clone()),
        AttentionMask::causal().with_key_padding(keep),
        AttentionMask::causal().with_sliding_window(0),
    ] {
        let fused = fused_attention(&q, &k, &v, &mask, 0.3).unwrap();
        let sdpa = scaled_dot_product_attention(&q, &k, &v, &mask, 0.3).unwrap();
        assert!(max_diff(&fused, &sdpa) <= 1e-5, "{mask:?}");
        // The fully padded batch row (and, for the causal masks, the first queries) is the mean of v.
        let padded = fused.get(1).unwrap().get(2).unwrap();
        assert!(max_diff(&padded, &mean.get(1).unwrap().get(0).unwrap()) <= 1e-5, "{mask:?}");
        assert!(fused.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|x| x.is_finite()));
    }
    let fused = fused_attention(&q, &k, &v, &AttentionMask::causal(), 0.3).unwrap();
    let early = fused.get(0).unwrap().narrow(1, 0, q_len - kv_len).unwrap();
    let expected = mean.get(0).unwrap().narrow(1, 0, q_len - kv_len).unwrap().broadcast_as(early.shape()).unwrap();
    assert!(max_diff(&early, &expected) <= 1e-5);
}

#[test]
fn half_precision_matches_the_f64_reference() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(5);
    for case in 0..40 {
        let c = random_case(&mut rng, 140);
        let (q, k, v) = inputs(&c, &dev);
        let mask = random_mask(&mut rng, &c, &dev);
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        for dtype in [DType::F16, DType::BF16] {
            let (qh, kh, vh) = (q.to_dtype(dtype).unwrap(), k.to_dtype(dtype).unwrap(), v.to_dtype(dtype).unwrap());
            let fused = fused_attention(&qh, &kh, &vh, &mask, scale).unwrap();
            assert_eq!(fused.dtype(), dtype);
            // The reference sees the same rounded inputs, in f64.
            let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            let slow = reference::attention(&f(&qh), &f(&kh), &f(&vh), &mask, scale).unwrap();
            let err = max_diff(&fused, &slow);
            let size = slow.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-3);
            assert!(err <= 1e-2 * size, "case {case} {dtype:?}: {err} vs max |out| {size}");
        }
    }
}

#[test]
fn non_contiguous_inputs_are_accepted() {
    let dev = common::device();
    // [batch, seq, heads, d] transposed to [batch, heads, seq, d], as projections produce them.
    let q = Tensor::randn(0f32, 1., (2, 77, 4, 16), &dev).unwrap().transpose(1, 2).unwrap();
    let k = Tensor::randn(0f32, 1., (2, 77, 2, 16), &dev).unwrap().transpose(1, 2).unwrap();
    let v = Tensor::randn(0f32, 1., (2, 77, 2, 16), &dev).unwrap().transpose(1, 2).unwrap();
    let mask = AttentionMask::causal();
    let fused = fused_attention(&q, &k, &v, &mask, 0.25).unwrap();
    let slow = reference::attention(&q, &k, &v, &mask, 0.25).unwrap();
    assert!(max_diff(&fused, &slow) <= 1e-5);
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let dev = common::device();
    let q = Tensor::zeros((1, 3, 4, 8), DType::F32, &dev).unwrap();
    let k = Tensor::zeros((1, 2, 4, 8), DType::F32, &dev).unwrap();
    let err = fused_attention(&q, &k, &k, &AttentionMask::none(), 1.).unwrap_err().to_string();
    assert!(err.contains("num_heads (3)") && err.contains("num_kv_heads (2)"), "{err}");
    let k = Tensor::zeros((1, 1, 4, 8), DType::F32, &dev).unwrap();
    let v = Tensor::zeros((1, 1, 5, 8), DType::F32, &dev).unwrap();
    assert!(fused_attention(&q, &k, &v, &AttentionMask::none(), 1.).is_err());
    let keep = Tensor::ones((2, 4), DType::U8, &dev).unwrap();
    let err = fused_attention(&q, &k, &k, &AttentionMask::none().with_key_padding(keep), 1.).unwrap_err().to_string();
    assert!(err.contains("expected [batch=1, kv_len=4]"), "{err}");
    let bias = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
    assert!(fused_attention(&q, &k, &k, &AttentionMask::none().with_bias(bias), 1.).is_err());
}

/// Gemma 2's score soft-cap, binding hard (scores up to ~±40 capped at 2), through both kernels
/// against the f64 reference loop, over several tiles, a sliding window, padding and a bias.
#[test]
fn softcapped_scores_match_the_reference() {
    let dev = Device::Cpu;
    let (b, h, kvh, n, d) = (2, 4, 2, 150, 16);
    let q = Tensor::randn(0f32, 2., (b, h, n, d), &dev).unwrap();
    let k = Tensor::randn(0f32, 2., (b, kvh, n, d), &dev).unwrap();
    let v = Tensor::randn(0f32, 1., (b, kvh, n, d), &dev).unwrap();
    let keep = Tensor::from_vec((0..b * n).map(|i| u32::from(i % n >= 3 * (i / n))).collect::<Vec<_>>(), (b, n), &dev)
        .unwrap();
    let bias = Tensor::randn(0f32, 1., (1, h, n, n), &dev).unwrap();
    for mask in [
        AttentionMask::causal(),
        AttentionMask::causal().with_sliding_window(40).with_key_padding(keep),
        AttentionMask::none().with_bias(bias),
    ] {
        for cap in [2.0, 50.0] {
            let mask = mask.clone().with_logit_softcap(cap);
            let want = reference::attention(&q, &k, &v, &mask, 0.25).unwrap();
            let fused = fused_attention(&q, &k, &v, &mask, 0.25).unwrap();
            let plain = scaled_dot_product_attention(&q, &k, &v, &mask, 0.25).unwrap();
            let (df, dp) = (max_diff(&fused, &want), max_diff(&plain, &want));
            assert!(df < 1e-5 && dp < 1e-5, "cap {cap}: fused {df}, materialised {dp}");
            let uncapped = reference::attention(&q, &k, &v, &AttentionMask::causal(), 0.25).unwrap();
            if cap == 2.0 {
                assert!(max_diff(&uncapped, &want) > 1e-2, "the cap should bind");
            }
        }
    }
}
