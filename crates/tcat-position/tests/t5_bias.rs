//! T5's relative position buckets against the values transformers' own
//! `T5Attention._relative_position_bucket` gives (tests/fixtures/positions/t5_buckets.json), and
//! the bias against a lookup written out loop by loop.

mod common;

use candle_core::{DType, Tensor};
use common::device;
use tcat_position::{BucketDirection, RelativePositionBias, relative_position_bucket};

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/positions/t5_buckets.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn direction(bidirectional: bool) -> BucketDirection {
    if bidirectional { BucketDirection::Bidirectional } else { BucketDirection::Causal }
}

#[test]
fn buckets_match_transformers() {
    let fx = fixture();
    let relative: Vec<i64> = serde_json::from_value(fx["relative_positions"].clone()).unwrap();
    let rel = Tensor::new(relative.as_slice(), &device()).unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let (bi, n, max) = (
            case["bidirectional"].as_bool().unwrap(),
            case["num_buckets"].as_u64().unwrap(),
            case["max_distance"].as_u64().unwrap(),
        );
        let want: Vec<u32> = serde_json::from_value(case["buckets"].clone()).unwrap();
        let got =
            relative_position_bucket(&rel, direction(bi), n as usize, max as usize).unwrap().to_vec1::<u32>().unwrap();
        for ((r, g), w) in relative.iter().zip(&got).zip(&want) {
            assert_eq!(g, w, "bidirectional {bi}, {n} buckets, max_distance {max}: relative position {r}");
        }
    }
}

#[test]
fn bias_looks_up_each_pair_with_queries_at_the_end_of_the_keys() {
    let fx = fixture();
    let relative: Vec<i64> = serde_json::from_value(fx["relative_positions"].clone()).unwrap();
    let dev = device();
    for case in fx["cases"].as_array().unwrap().iter().take(4) {
        let (bi, n, max) = (
            case["bidirectional"].as_bool().unwrap(),
            case["num_buckets"].as_u64().unwrap() as usize,
            case["max_distance"].as_u64().unwrap() as usize,
        );
        let want_bucket: Vec<u32> = serde_json::from_value(case["buckets"].clone()).unwrap();
        let bucket_of = |rel: i64| want_bucket[relative.iter().position(|&r| r == rel).unwrap()] as usize;
        let heads = 3;
        let table = Tensor::randn(0f32, 1., (n, heads), &dev).unwrap();
        let rows: Vec<Vec<f32>> = table.to_vec2().unwrap();
        let bias = RelativePositionBias::new(table, direction(bi), max).unwrap();
        for (q_len, kv_len) in [(1, 1), (7, 7), (1, 150), (5, 140)] {
            let got = bias.bias(q_len, kv_len).unwrap();
            assert_eq!(got.dims(), &[1, heads, q_len, kv_len]);
            let got: Vec<Vec<Vec<f32>>> = got.squeeze(0).unwrap().to_vec3().unwrap();
            for (h, head) in got.iter().enumerate() {
                for (i, row) in head.iter().enumerate() {
                    for (j, &value) in row.iter().enumerate() {
                        let rel = j as i64 - (kv_len - q_len + i) as i64;
                        assert_eq!(value, rows[bucket_of(rel)][h], "head {h}, query {i}, key {j}");
                    }
                }
            }
        }
    }
}

#[test]
fn bad_parameters_are_errors() {
    let dev = device();
    let table = |n| Tensor::zeros((n, 2), DType::F32, &dev).unwrap();
    assert!(RelativePositionBias::new(table(2), BucketDirection::Bidirectional, 10).is_err());
    assert!(RelativePositionBias::new(table(32), BucketDirection::Causal, 8).is_err());
    let ok = RelativePositionBias::new(table(32), BucketDirection::Causal, 128).unwrap();
    assert!(ok.bias(5, 3).is_err());
    assert!(
        RelativePositionBias::new(Tensor::zeros(4, DType::F32, &dev).unwrap(), BucketDirection::Causal, 8).is_err()
    );
}
