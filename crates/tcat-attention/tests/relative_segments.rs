//! XLNet's relative segment term equals a plain reference computed element by element on the
//! host, `(q_i + b)·s_±` by whether query `i` and key `j` share a token type; through the
//! attention module it equals the same bias handed over as an explicit additive bias; without
//! token types it adds nothing; and Transformer-XL distances clamp as XLNet's `clamp_len` does.

use candle_core::{DType, Device, Module, Tensor};
use tcat_attention::{AttentionMask, MultiHeadAttention, PositionTerm, QkvProjection, RelativeSegments, ScoreTerm};
use tcat_core::Linear;

const HEADS: usize = 3;
const HEAD_DIM: usize = 4;
const HIDDEN: usize = HEADS * HEAD_DIM;

/// `b` by head, and `s_±` by segment relation and head, on the host.
type Bias = Vec<Vec<f32>>;
type Embeddings = Vec<Vec<Vec<f32>>>;

fn term(dev: &Device) -> (RelativeSegments, Bias, Embeddings) {
    let bias = Tensor::randn(0f32, 1.0, (HEADS, HEAD_DIM), dev).unwrap();
    let embeddings = Tensor::randn(0f32, 1.0, (2, HEADS, HEAD_DIM), dev).unwrap();
    let (b, e) = (bias.to_vec2().unwrap(), embeddings.to_vec3().unwrap());
    (RelativeSegments::new(bias, embeddings).unwrap(), b, e)
}

/// The term by hand: `[batch][head][i][j]`, queries at the end of the keys.
fn by_hand(
    q: &[Vec<Vec<Vec<f32>>>],
    types: &[Vec<u32>],
    bias: &[Vec<f32>],
    emb: &[Vec<Vec<f32>>],
    scale: f32,
) -> Vec<f32> {
    let mut out = Vec::new();
    for (b, heads) in q.iter().enumerate() {
        let kv_len = types[b].len();
        for (h, queries) in heads.iter().enumerate() {
            let offset = kv_len - queries.len();
            for (i, qi) in queries.iter().enumerate() {
                for j in 0..kv_len {
                    let s = if types[b][offset + i] == types[b][j] { &emb[0][h] } else { &emb[1][h] };
                    let dot: f32 = (0..HEAD_DIM).map(|d| (qi[d] + bias[h][d]) * s[d]).sum();
                    out.push(dot * scale);
                }
            }
        }
    }
    out
}

#[test]
fn segment_term_equals_the_element_by_element_reference() {
    let dev = Device::Cpu;
    let (term, bias, emb) = term(&dev);
    let types = vec![vec![0u32, 0, 1, 1, 2], vec![1, 0, 1, 0, 0]];
    let types_t = Tensor::new(types.clone(), &dev).unwrap();
    // Three queries at the end of five keys (as after a memory).
    let q = Tensor::randn(0f32, 1.0, (2, HEADS, 3, HEAD_DIM), &dev).unwrap();
    let k = Tensor::randn(0f32, 1.0, (2, HEADS, 5, HEAD_DIM), &dev).unwrap();
    let mask = AttentionMask::none().with_token_types(types_t);
    let got: Vec<f32> = term.score_bias_in(&q, &k, 0.5, &mask).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let want = by_hand(&vec4(&q), &types, &bias, &emb, 0.5);
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(d < 1e-5, "relative segments differ from the reference by {d}");
    // Without token types: nothing.
    let none = term.score_bias_in(&q, &k, 0.5, &AttentionMask::none()).unwrap();
    assert_eq!(none.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn segment_term_in_the_module_equals_the_same_bias_given_explicitly() {
    let dev = Device::Cpu;
    let (term, bias, emb) = term(&dev);
    let lin = |o: usize, i: usize| Linear::new(Tensor::randn(0f32, 0.4, (o, i), &dev).unwrap(), None);
    let (wq, wk, wv, wo) = (lin(HIDDEN, HIDDEN), lin(HIDDEN, HIDDEN), lin(HIDDEN, HIDDEN), lin(HIDDEN, HIDDEN));
    let module = |qkv| MultiHeadAttention::new(qkv, wo.clone(), HEADS, HEADS, HEAD_DIM).unwrap();
    let stacked = || QkvProjection::stacked(wq.clone(), wk.clone(), wv.clone());
    let x = Tensor::randn(0f32, 1.0, (2, 4, HIDDEN), &dev).unwrap();
    let types = vec![vec![0u32, 0, 1, 1], vec![1, 0, 0, 1]];
    let keep = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], &dev).unwrap();
    let mask = AttentionMask::none().with_key_padding(keep);
    let with_term = module(stacked()).with_position(PositionTerm::score(term));
    let got = with_term
        .forward(&x, &mask.clone().with_token_types(Tensor::new(types.clone(), &dev).unwrap()), None, None)
        .unwrap();
    // The same bias by hand, from the module's own queries, added to the mask.
    let q = wq.forward(&x).unwrap().reshape((2, 4, HEADS, HEAD_DIM)).unwrap().transpose(1, 2).unwrap();
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    let hand = by_hand(&vec4(&q), &types, &bias, &emb, scale);
    let hand = Tensor::from_vec(hand, (2, HEADS, 4, 4), &dev).unwrap();
    let want = module(stacked()).forward(&x, &mask.with_bias(hand), None, None).unwrap();
    let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-5, "the module's segment term differs from the explicit bias by {d}");
}

fn vec4(t: &Tensor) -> Vec<Vec<Vec<Vec<f32>>>> {
    (0..t.dim(0).unwrap()).map(|b| t.get(b).unwrap().to_vec3().unwrap()).collect()
}

#[test]
fn xl_clamp_reads_clamped_distances() {
    let dev = Device::Cpu;
    let eye = Linear::new(Tensor::eye(HIDDEN, DType::F32, &dev).unwrap(), None);
    let zeros = Tensor::zeros((HEADS, HEAD_DIM), DType::F32, &dev).unwrap();
    let xl = tcat_attention::XlRelativePosition::new(eye, zeros.clone(), zeros).unwrap();
    let clamped = xl.clone().with_clamp(2).projected_sinusoids(5, 5, DType::F32).unwrap(); // -4..=4
    let plain = xl.projected_sinusoids(5, 5, DType::F32).unwrap();
    let row = |t: &Tensor, i: usize| t.narrow(1, i, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, distance) in (-4i64..=4).enumerate() {
        let source = distance.clamp(-2, 2) + 4; // the unclamped row of the clamped distance
        assert_eq!(row(&clamped, i), row(&plain, source as usize), "distance {distance}");
    }
    assert_ne!(row(&clamped, 0), row(&plain, 0), "clamping changed nothing");
}
