//! The fast attention path against the plain reference, on random shapes and masks.

mod common;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{
    AttentionMask, KvCache, MultiHeadAttention, QkvProjection, reference, scaled_dot_product_attention,
};
use tcat_core::Linear;
use tcat_position::{RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout};
use tcat_testkit::max_diff;

fn random_keep(rng: &mut StdRng, batch: usize, kv_len: usize, dev: &Device) -> Tensor {
    // Each row keeps a random prefix of at least one key (right padding), sometimes a random set.
    let mut rows = Vec::new();
    for _ in 0..batch {
        let len = rng.random_range(1..=kv_len);
        let scattered = rng.random_bool(0.3);
        for j in 0..kv_len {
            let keep = if scattered { rng.random_bool(0.7) } else { j < len };
            rows.push(keep as u32);
        }
    }
    Tensor::from_vec(rows, (batch, kv_len), dev).unwrap()
}

#[test]
fn fast_path_matches_reference_on_random_shapes() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(7);
    for case in 0..90 {
        let kv_heads = [1, 2, 3][rng.random_range(0..3)];
        let group = [1, 2, 3, 5][rng.random_range(0..4)]; // odd head counts included
        let heads = kv_heads * group;
        let batch = rng.random_range(1..=3);
        let head_dim = [1, 4, 8, 13][rng.random_range(0..4)];
        let kv_len = rng.random_range(1..=9);
        let q_len = rng.random_range(1..=kv_len);
        let q = Tensor::randn(0f32, 1.5, (batch, heads, q_len, head_dim), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.5, (batch, kv_heads, kv_len, head_dim), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (batch, kv_heads, kv_len, head_dim), &dev).unwrap();
        let mut mask = match rng.random_range(0..3) {
            0 => AttentionMask::none(),
            1 => AttentionMask::causal(),
            _ => AttentionMask::causal().with_sliding_window(rng.random_range(1..=4)),
        };
        if rng.random_bool(0.5) {
            mask = mask.with_key_padding(random_keep(&mut rng, batch, kv_len, &dev));
        }
        if rng.random_bool(0.4) {
            mask = mask.with_bias(Tensor::randn(0f32, 1., (1, heads, q_len, kv_len), &dev).unwrap());
        }
        let scale = 1.0 / (head_dim as f64).sqrt();
        let fast = scaled_dot_product_attention(&q, &k, &v, &mask, scale).unwrap();
        let slow = reference::attention(&q, &k, &v, &mask, scale).unwrap();
        let diff = max_diff(&fast, &slow);
        assert!(
            diff <= 1e-5,
            "case {case}: b={batch} h={heads} kv_h={kv_heads} q={q_len} kv={kv_len} d={head_dim} {mask:?}: {diff}"
        );
    }
}

#[test]
fn causal_mask_is_aligned_to_the_end_of_the_keys() {
    let dev = common::device();
    let allowed = AttentionMask::causal().allowed(1, 2, 4, &dev).unwrap().unwrap();
    let grid = allowed.reshape((2, 4)).unwrap().to_vec2::<u8>().unwrap();
    // two new queries after two cached keys: positions 2 and 3
    assert_eq!(grid, [[1, 1, 1, 0], [1, 1, 1, 1]]);
    assert!(AttentionMask::causal().allowed(1, 1, 4, &dev).unwrap().is_none());
    assert!(AttentionMask::none().allowed(1, 3, 3, &dev).unwrap().is_none());
}

#[test]
fn a_fully_masked_row_is_finite() {
    let dev = common::device();
    let q = Tensor::randn(0f32, 1., (1, 1, 2, 4), &dev).unwrap();
    let k = Tensor::randn(0f32, 1., (1, 1, 2, 4), &dev).unwrap();
    let keep = Tensor::new(&[[0u32, 0]], &dev).unwrap();
    let out = scaled_dot_product_attention(&q, &k, &k, &AttentionMask::none().with_key_padding(keep), 0.5).unwrap();
    let values = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|x| x.is_finite()));
}

#[test]
fn mismatched_heads_are_an_error() {
    let dev = common::device();
    let q = Tensor::zeros((1, 4, 2, 8), DType::F32, &dev).unwrap();
    let k = Tensor::zeros((1, 3, 2, 8), DType::F32, &dev).unwrap();
    let err = scaled_dot_product_attention(&q, &k, &k, &AttentionMask::none(), 1.0).unwrap_err();
    assert!(err.to_string().contains("num_kv_heads"), "{err}");
}

fn random_attention(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    fused: bool,
    dev: &Device,
) -> MultiHeadAttention {
    let lin = |o: usize, i: usize| {
        Linear::new(
            Tensor::randn(0f32, (1.0 / i as f32).sqrt(), (o, i), dev).unwrap(),
            Some(Tensor::randn(0f32, 0.2, o, dev).unwrap()),
        )
    };
    let qkv = if fused {
        QkvProjection::Fused(lin((heads + 2 * kv_heads) * head_dim, hidden))
    } else {
        QkvProjection::Separate {
            q: lin(heads * head_dim, hidden),
            k: lin(kv_heads * head_dim, hidden),
            v: lin(kv_heads * head_dim, hidden),
        }
    };
    MultiHeadAttention::new(qkv, lin(hidden, heads * head_dim), heads, kv_heads, head_dim).unwrap()
}

#[test]
fn cached_decoding_equals_full_forward_at_every_step() {
    let dev = common::device();
    let rope = |layout| {
        let cfg = RotaryConfig { rotary_dim: 4, base: 10000.0, layout, scaling: RopeScaling::None };
        RotaryEmbedding::new(cfg, 16, DType::F32, &dev).unwrap()
    };
    for (heads, kv_heads, fused, rotary) in [
        (4, 4, true, None),
        (6, 2, false, Some(RotaryLayout::HalfSplit)),
        (3, 1, false, Some(RotaryLayout::Interleaved)),
    ] {
        let mut attn = random_attention(heads, kv_heads, 6, 12, fused, &dev);
        if let Some(layout) = rotary {
            attn = attn.with_rotary(rope(layout));
        }
        let x = Tensor::randn(0f32, 1., (2, 7, 12), &dev).unwrap();
        let full = attn.forward(&x, &AttentionMask::causal(), None, None).unwrap();
        let mut cache = KvCache::new(7);
        // a 3-token prompt, then one token at a time
        let mut pieces =
            vec![attn.forward(&x.narrow(1, 0, 3).unwrap(), &AttentionMask::causal(), None, Some(&mut cache)).unwrap()];
        for t in 3..7 {
            pieces.push(
                attn.forward(&x.narrow(1, t, 1).unwrap(), &AttentionMask::causal(), None, Some(&mut cache)).unwrap(),
            );
        }
        let incremental = Tensor::cat(&pieces, 1).unwrap();
        assert!(max_diff(&full, &incremental) < 1e-5);
        assert_eq!(cache.len(), 7);
        let err =
            attn.forward(&x.narrow(1, 0, 1).unwrap(), &AttentionMask::causal(), None, Some(&mut cache)).unwrap_err();
        assert!(err.to_string().contains("capacity of 7"), "{err}");
    }
}

#[test]
fn padded_batch_equals_rows_one_by_one() {
    let dev = common::device();
    let attn = random_attention(4, 2, 4, 16, false, &dev);
    let x = Tensor::randn(0f32, 1., (2, 5, 16), &dev).unwrap();
    let keep = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 0, 0, 0]], &dev).unwrap();
    for mask in [AttentionMask::none(), AttentionMask::causal()] {
        let batched = attn.forward(&x, &mask.clone().with_key_padding(keep.clone()), None, None).unwrap();
        let row0 = attn.forward(&x.narrow(0, 0, 1).unwrap(), &mask, None, None).unwrap();
        let row1 = attn.forward(&x.narrow(0, 1, 1).unwrap().narrow(1, 0, 2).unwrap(), &mask, None, None).unwrap();
        assert!(max_diff(&batched.narrow(0, 0, 1).unwrap(), &row0) < 1e-5);
        assert!(max_diff(&batched.narrow(0, 1, 1).unwrap().narrow(1, 0, 2).unwrap(), &row1) < 1e-5);
    }
}

#[test]
fn masked_attention_in_f64_and_half_precision_matches_the_reference() {
    // The masked-score fill is made on the device per dtype: f64 scores, and f16/bf16 inputs
    // whose scores are softmaxed in f32. Row 1 of the batch is fully padded (uniform average).
    let dev = common::device();
    let q = Tensor::randn(0f32, 1., (2, 4, 5, 8), &dev).unwrap();
    let k = Tensor::randn(0f32, 1., (2, 2, 5, 8), &dev).unwrap();
    let v = Tensor::randn(0f32, 1., (2, 2, 5, 8), &dev).unwrap();
    let keep = Tensor::new(&[[1u32, 1, 1, 0, 1], [0, 0, 0, 0, 0]], &dev).unwrap();
    let mask = AttentionMask::causal().with_key_padding(keep);
    for (dtype, tolerance) in [(DType::F64, 1e-12), (DType::F32, 1e-6), (DType::F16, 1e-2), (DType::BF16, 2e-2)] {
        let (q, k, v) = (q.to_dtype(dtype).unwrap(), k.to_dtype(dtype).unwrap(), v.to_dtype(dtype).unwrap());
        let fast = scaled_dot_product_attention(&q, &k, &v, &mask, 0.3).unwrap();
        assert_eq!(fast.dtype(), dtype);
        let slow = reference::attention(&q, &k, &v, &mask, 0.3).unwrap();
        let diff = (fast.to_dtype(DType::F64).unwrap() - slow.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff <= tolerance, "{dtype:?}: {diff}");
    }
}
