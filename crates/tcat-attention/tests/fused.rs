//! The tiled online-softmax attention against the loop reference and the materialised path,
//! on random shapes longer than its tiles, with every mask it takes.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{AttentionMask, fused_attention, reference, scaled_dot_product_attention};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
    d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn keep(rng: &mut StdRng, batch: usize, kv_len: usize, dev: &Device) -> Tensor {
    // A random prefix per row, sometimes a scattered set, sometimes nothing at all.
    let mut rows = Vec::new();
    for _ in 0..batch {
        let (len, mode) = (rng.random_range(0..=kv_len), rng.random_range(0..3));
        for j in 0..kv_len {
            rows.push(match mode {
                0 => u32::from(j < len),
                1 => u32::from(rng.random_bool(0.6)),
                _ => u32::from(j < len.max(1)),
            });
        }
    }
    Tensor::from_vec(rows, (batch, kv_len), dev).unwrap()
}

#[test]
fn fused_matches_reference_and_materialised_attention() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(11);
    for case in 0..40 {
        let kv_heads = [1, 2, 3][rng.random_range(0..3)];
        let heads = kv_heads * [1, 2, 3, 5][rng.random_range(0..4)];
        let batch = rng.random_range(1..=2);
        let head_dim = [1, 7, 16, 33][rng.random_range(0..4)];
        // Lengths around the tiles (32 queries, 128 keys), seq 1 included.
        let kv_len = [1, 5, 31, 33, 127, 129, 300][rng.random_range(0..7)];
        let q_len = if rng.random_bool(0.6) { kv_len } else { rng.random_range(1..=kv_len) };
        let q = Tensor::randn(0f32, 1.5, (batch, heads, q_len, head_dim), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.5, (batch, kv_heads, kv_len, head_dim), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (batch, kv_heads, kv_len, head_dim), &dev).unwrap();
        let mut mask = match rng.random_range(0..3) {
            0 => AttentionMask::none(),
            1 => AttentionMask::causal(),
            _ => AttentionMask::causal().with_sliding_window(rng.random_range(1..=kv_len.max(2))),
        };
        if rng.random_bool(0.5) {
            mask = mask.with_key_padding(keep(&mut rng, batch, kv_len, &dev));
        }
        if rng.random_bool(0.3) {
            mask = mask.with_bias(Tensor::randn(0f32, 1., (1, heads, q_len, kv_len), &dev).unwrap());
        }
        if rng.random_bool(0.3) {
            mask = mask.with_bias(Tensor::randn(0f32, 1., (batch, 1, q_len, kv_len), &dev).unwrap());
        }
        let scale = 1.0 / (head_dim as f64).sqrt();
        let fused = fused_attention(&q, &k, &v, &mask, scale).unwrap();
        let slow = reference::attention(&q, &k, &v, &mask, scale).unwrap();
        let dense = scaled_dot_product_attention(&q, &k, &v, &mask, scale).unwrap();
        let (to_ref, to_dense) = (max_abs_diff(&fused, &slow), max_abs_diff(&fused, &dense));
        assert!(
            to_ref <= 1e-5 && to_dense <= 1e-5,
            "case {case}: b{batch} h{heads}/{kv_heads} q{q_len} kv{kv_len} d{head_dim} {:?}: {to_ref} / {to_dense}",
            mask.causality()
        );
    }
}

#[test]
fn half_precision_inputs_stay_close() {
    let dev = Device::Cpu;
    let q = Tensor::randn(0f32, 1., (2, 4, 70, 16), &dev).unwrap();
    let k = Tensor::randn(0f32, 1., (2, 2, 70, 16), &dev).unwrap();
    let v = Tensor::randn(0f32, 1., (2, 2, 70, 16), &dev).unwrap();
    let mask = AttentionMask::causal();
    let want = scaled_dot_product_attention(&q, &k, &v, &mask, 0.25).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let h = |t: &Tensor| t.to_dtype(dtype).unwrap();
        let got = fused_attention(&h(&q), &h(&k), &h(&v), &mask, 0.25).unwrap();
        assert_eq!(got.dtype(), dtype);
        let rel = max_abs_diff(&got, &want) / want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(rel < 1e-2, "{dtype:?}: {rel}");
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let dev = Device::Cpu;
    let q = Tensor::zeros((1, 3, 4, 8), DType::F32, &dev).unwrap();
    let kv = Tensor::zeros((1, 2, 4, 8), DType::F32, &dev).unwrap();
    assert!(fused_attention(&q, &kv, &kv, &AttentionMask::none(), 1.0).is_err()); // 3 heads, 2 kv heads
    let kv = Tensor::zeros((1, 1, 4, 7), DType::F32, &dev).unwrap();
    assert!(fused_attention(&q, &kv, &kv, &AttentionMask::none(), 1.0).is_err());
    let kv = Tensor::zeros((1, 1, 4, 8), DType::F32, &dev).unwrap();
    let bad_keep = Tensor::ones((1, 5), DType::U32, &dev).unwrap();
    assert!(fused_attention(&q, &kv, &kv, &AttentionMask::none().with_key_padding(bad_keep), 1.0).is_err());
}
