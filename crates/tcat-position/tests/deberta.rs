//! DeBERTa-v2's disentangled attention against one `DisentangledSelfAttention` layer of
//! transformers with perturbed weights (tests/fixtures/positions/deberta.safetensors, made by
//! `python -m tcat_fixtures deberta` in tests/fixtures): log buckets, relative positions, and the attention probabilities
//! computed through tcat's one attention with the bias from `disentangled_bias`.

use std::collections::HashMap;

mod common;

use candle_core::{DType, Tensor};
use common::{device, max_diff};
use tcat_position::{LogBuckets, deberta_relative_positions, disentangled_bias, log_bucket_position};

const HEADS: usize = 4;
const SPAN: usize = 8;
const BUCKETS: LogBuckets = LogBuckets { bucket_size: 8, max_position: 16 };

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/positions/deberta.safetensors");
    candle_core::safetensors::load(path, &device()).unwrap()
}

#[test]
fn log_buckets_match_transformers() {
    let fx = fixture();
    let offsets = &fx["bucket_offsets"];
    for (key, bucket_size, max_position) in
        [("buckets_8_16", 8, 16), ("buckets_32_128", 32, 128), ("buckets_6_20", 6, 20)]
    {
        let got = log_bucket_position(offsets, LogBuckets { bucket_size, max_position }).unwrap();
        assert_eq!(got.to_vec1::<i64>().unwrap(), fx[key].to_vec1::<i64>().unwrap(), "{key}");
    }
    let rel = deberta_relative_positions(21, 21, Some(BUCKETS), &device()).unwrap();
    assert_eq!(rel.to_vec2::<i64>().unwrap(), fx["relative_pos"].to_vec2::<i64>().unwrap());
}

/// `x Wᵀ + b` split into heads: `[batch, heads, len, head_dim]`.
fn project(x: &Tensor, fx: &HashMap<String, Tensor>, name: &str) -> Tensor {
    let y = x
        .broadcast_matmul(&fx[&format!("{name}.weight")].t().unwrap())
        .unwrap()
        .broadcast_add(&fx[&format!("{name}.bias")])
        .unwrap();
    let (b, n, h) = y.dims3().unwrap();
    y.reshape((b, n, HEADS, h / HEADS)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
}

#[test]
fn attention_probabilities_match_transformers() {
    let fx = fixture();
    let hidden = &fx["hidden"];
    let (q, k) = (project(hidden, &fx, "query_proj"), project(hidden, &fx, "key_proj"));
    let head_dim = q.dim(3).unwrap();
    // share_att_key: the relative embeddings go through the layer's own query and key projections.
    let rel_emb = fx["rel_embeddings"].unsqueeze(0).unwrap();
    let pos_query = project(&rel_emb, &fx, "query_proj").squeeze(0).unwrap();
    let pos_key = project(&rel_emb, &fx, "key_proj").squeeze(0).unwrap();
    let len = hidden.dim(1).unwrap();
    let rel = deberta_relative_positions(len, len, Some(BUCKETS), &device()).unwrap();
    let scale = 1.0 / ((head_dim * 3) as f64).sqrt(); // c2p and p2c: three terms
    let bias = disentangled_bias(&q, &k, Some(&pos_query), Some(&pos_key), &rel, SPAN, scale).unwrap();
    let scores = ((q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap() + &bias).unwrap();
    let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
    let d = max_diff(&probs, &fx["probs"]);
    assert!(d < 1e-5, "attention probabilities differ from transformers by {d}");
    // Without the position terms the probabilities are far off: the fixture exercises them.
    let plain = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap()).unwrap();
    assert!(max_diff(&plain, &fx["probs"]) > 1e-2);
}

#[test]
fn bad_shapes_are_errors() {
    let dev = device();
    let q = Tensor::zeros((1, 2, 5, 4), DType::F32, &dev).unwrap();
    let rel = deberta_relative_positions(5, 5, None, &dev).unwrap();
    let wrong = Tensor::zeros((2, 5, 4), DType::F32, &dev).unwrap(); // 5 rows for span 3
    assert!(disentangled_bias(&q, &q, Some(&wrong), None, &rel, 3, 1.0).is_err());
    assert!(disentangled_bias(&q, &q, None, None, &rel.narrow(0, 0, 4).unwrap(), 3, 1.0).is_err());
    assert!(log_bucket_position(&rel, LogBuckets { bucket_size: 2, max_position: 16 }).is_err());
}
