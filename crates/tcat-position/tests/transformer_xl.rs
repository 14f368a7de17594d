//! Transformer-XL's position term against a loop that writes out `(q_i + v)·W_R R_{i−j}` with
//! the sinusoid computed in f64, with and without remembered positions.

mod common;

use candle_core::{DType, Tensor};
use common::{device, max_diff};
use tcat_position::{SegmentMemory, xl_distance_range, xl_position_bias, xl_sinusoids};

fn sinusoid(distance: f64, dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let freq = |k: usize| 10_000f64.powf(-2.0 * k as f64 / dim as f64);
    (0..half).map(|k| (distance * freq(k)).sin()).chain((0..half).map(|k| (distance * freq(k)).cos())).collect()
}

#[test]
fn position_term_matches_the_formula() {
    let dev = device();
    let (batch, heads, head_dim, model_dim) = (2, 3, 4, 10);
    for (q_len, kv_len) in [(1, 1), (5, 5), (3, 8), (1, 9)] {
        let q = Tensor::randn(0f32, 1., (batch, heads, q_len, head_dim), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (heads, head_dim), &dev).unwrap();
        let w_r = Tensor::randn(0f32, 0.5, (heads * head_dim, model_dim), &dev).unwrap();
        let (min, max) = xl_distance_range(q_len, kv_len);
        let r = xl_sinusoids(min, max, model_dim, &dev).unwrap();
        let projected = r.matmul(&w_r.t().unwrap()).unwrap(); // [distances, heads·head_dim]
        let projected = projected
            .reshape(((max - min + 1) as usize, heads, head_dim))
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap();
        let got: Vec<f32> =
            xl_position_bias(&q, &v, &projected, kv_len, 0.5).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let (qv, vv, wv): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            q.flatten_all().unwrap().to_vec1().unwrap(),
            v.flatten_all().unwrap().to_vec1().unwrap(),
            w_r.flatten_all().unwrap().to_vec1().unwrap(),
        );
        let offset = kv_len - q_len;
        for b in 0..batch {
            for h in 0..heads {
                for i in 0..q_len {
                    for j in 0..kv_len {
                        let rd = sinusoid((i + offset) as f64 - j as f64, model_dim);
                        let mut want = 0.0;
                        for x in 0..head_dim {
                            let wr: f64 =
                                (0..model_dim).map(|c| wv[(h * head_dim + x) * model_dim + c] as f64 * rd[c]).sum();
                            want +=
                                (qv[((b * heads + h) * q_len + i) * head_dim + x] + vv[h * head_dim + x]) as f64 * wr;
                        }
                        let g = got[((b * heads + h) * q_len + i) * kv_len + j] as f64;
                        assert!(
                            (g - 0.5 * want).abs() < 1e-4,
                            "q{q_len} kv{kv_len} ({b},{h},{i},{j}): {g} vs {}",
                            0.5 * want
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn remembered_keys_see_the_same_distances_as_one_long_segment() {
    // A segment of 3 after 4 remembered positions: its bias rows equal the last 3 rows of the
    // bias over all 7 positions.
    let dev = device();
    let q = Tensor::randn(0f32, 1., (1, 2, 7, 4), &dev).unwrap();
    let v = Tensor::randn(0f32, 1., (2, 4), &dev).unwrap();
    let project = |q_len, kv_len| {
        let (min, max) = xl_distance_range(q_len, kv_len);
        let w = Tensor::ones((8, 4), DType::F32, &dev).unwrap();
        let p = xl_sinusoids(min, max, 4, &dev).unwrap().matmul(&w.t().unwrap()).unwrap();
        p.reshape(((max - min + 1) as usize, 2, 4)).unwrap().transpose(0, 1).unwrap().contiguous().unwrap()
    };
    let full = xl_position_bias(&q, &v, &project(7, 7), 7, 1.0).unwrap().narrow(2, 4, 3).unwrap();
    let segment = xl_position_bias(&q.narrow(2, 4, 3).unwrap(), &v, &project(3, 7), 7, 1.0).unwrap();
    let d = max_diff(&full, &segment);
    assert!(d < 1e-5, "{d}");
}

#[test]
fn memory_keeps_the_last_positions_per_layer() {
    let dev = device();
    let mut memory = SegmentMemory::new(2, 4);
    let segment = |start: f32| Tensor::arange(start, start + 3.0, &dev).unwrap().reshape((1, 3, 1)).unwrap();
    memory.update(1, &segment(0.0)).unwrap();
    memory.update(1, &segment(3.0)).unwrap();
    assert_eq!(memory.len(0), 0);
    assert_eq!(memory.len(1), 4);
    let keys = memory.extended(1, &segment(6.0)).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(keys, [2., 3., 4., 5., 6., 7., 8.]);
    assert!(memory.extended(2, &segment(0.0)).is_err());
}

#[test]
fn bad_shapes_are_errors() {
    let dev = device();
    assert!(xl_sinusoids(0, 3, 5, &dev).is_err());
    let q = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev).unwrap();
    let v = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
    let wrong = Tensor::zeros((2, 4, 4), DType::F32, &dev).unwrap(); // 5 distances needed
    assert!(xl_position_bias(&q, &v, &wrong, 3, 1.0).is_err());
    assert!(xl_position_bias(&q, &v, &wrong, 2, 1.0).is_err());
}
