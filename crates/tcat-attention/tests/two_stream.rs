//! XLNet's two streams against masks written out from the rule (content: rank(j) ≤ rank(i);
//! query: rank(j) < rank(i); remembered positions visible to all) and the loop reference.

mod common;

use candle_core::Tensor;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use tcat_attention::{AttentionMask, permutation_masks, reference, two_stream_attention};
use tcat_testkit::max_diff;

fn rule_mask(order: &[usize], memory: usize, strict: bool) -> Tensor {
    let len = order.len();
    let rank = |p: usize| order.iter().position(|&x| x == p).unwrap();
    let mut cells = vec![0u8; len * (memory + len)];
    for i in 0..len {
        for j in 0..memory + len {
            let visible = j < memory || if strict { rank(j - memory) < rank(i) } else { rank(j - memory) <= rank(i) };
            cells[i * (memory + len) + j] = u8::from(visible);
        }
    }
    Tensor::from_vec(cells, (1, 1, len, memory + len), &common::device()).unwrap()
}

#[test]
fn both_streams_follow_the_factorisation_order() {
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(4);
    for (len, memory, heads, kv_heads) in [(1, 0, 1, 1), (5, 0, 2, 2), (7, 3, 4, 2), (6, 2, 3, 1)] {
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        let (content_mask, query_mask) = permutation_masks(&order, memory, &dev).unwrap();
        let as_vec = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        assert_eq!(as_vec(&content_mask), as_vec(&rule_mask(&order, memory, false)));
        assert_eq!(as_vec(&query_mask), as_vec(&rule_mask(&order, memory, true)));

        let h = Tensor::randn(0f32, 1., (2, heads, len, 8), &dev).unwrap();
        let g = Tensor::randn(0f32, 1., (2, heads, len, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (2, kv_heads, memory + len, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (2, kv_heads, memory + len, 8), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1., (1, heads, len, memory + len), &dev).unwrap();
        let shared = AttentionMask::none().with_bias(bias);
        let (content, query) = two_stream_attention(&h, &g, &k, &v, &order, &shared, 0.3).unwrap();
        let want = |q: &Tensor, strict| {
            reference::attention(q, &k, &v, &shared.clone().with_allowed(rule_mask(&order, memory, strict)), 0.3)
                .unwrap()
        };
        assert!(max_diff(&content, &want(&h, false)) < 1e-5);
        assert!(max_diff(&query, &want(&g, true)) < 1e-5);
    }
}

#[test]
fn bad_orders_are_errors() {
    let dev = common::device();
    assert!(permutation_masks(&[0, 0, 1], 0, &dev).is_err());
    assert!(permutation_masks(&[0, 3], 0, &dev).is_err());
    let q = Tensor::zeros((1, 1, 3, 4), candle_core::DType::F32, &dev).unwrap();
    assert!(two_stream_attention(&q, &q, &q, &q, &[0, 1], &AttentionMask::none(), 1.0).is_err());
}
