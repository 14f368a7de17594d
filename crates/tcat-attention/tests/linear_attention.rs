//! Linear attention against a loop-by-loop f64 reference: the chunked causal form, the
//! recurrent form token by token, and the non-causal form with key padding.

mod common;

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tcat_attention::{AttentionMask, LinearAttentionState, linear_attention};

fn phi(x: f64) -> f64 {
    if x > 0.0 { x + 1.0 } else { x.exp() }
}

/// out[b][h][i] = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j) over visible j.
fn reference(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool, keep: Option<&[Vec<u32>]>) -> Vec<f64> {
    let (b, h, n, d) = q.dims4().unwrap();
    let (kvh, m, dv) = (k.dim(1).unwrap(), k.dim(2).unwrap(), v.dim(3).unwrap());
    let flat = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let (qv, kv, vv) = (flat(q), flat(k), flat(v));
    let mut out = vec![0.0; b * h * n * dv];
    for bi in 0..b {
        for hi in 0..h {
            let g = hi / (h / kvh);
            for i in 0..n {
                let mut num = vec![0.0; dv];
                let mut den = 0.0;
                for j in 0..m {
                    if (causal && j > i) || keep.is_some_and(|keep| keep[bi][j] == 0) {
                        continue;
                    }
                    let w: f64 = (0..d)
                        .map(|x| phi(qv[((bi * h + hi) * n + i) * d + x]) * phi(kv[((bi * kvh + g) * m + j) * d + x]))
                        .sum();
                    den += w;
                    for (y, acc) in num.iter_mut().enumerate() {
                        *acc += w * vv[((bi * kvh + g) * m + j) * dv + y];
                    }
                }
                for y in 0..dv {
                    out[((bi * h + hi) * n + i) * dv + y] = num[y] / den;
                }
            }
        }
    }
    out
}

fn max_diff(got: &Tensor, want: &[f64]) -> f64 {
    let got = got.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

/// (batch, heads, kv_heads, len, d, d_v) over odd heads, GQA, seq 1 and lengths around the chunk.
fn shapes() -> Vec<(usize, usize, usize, usize, usize, usize)> {
    vec![(1, 1, 1, 1, 4, 4), (2, 3, 3, 7, 5, 6), (1, 6, 2, 64, 8, 8), (2, 4, 1, 65, 8, 3), (1, 5, 5, 150, 4, 4)]
}

fn inputs(shape: (usize, usize, usize, usize, usize, usize), seed: u64) -> (Tensor, Tensor, Tensor) {
    let (b, h, kvh, n, d, dv) = shape;
    let dev = common::device();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = |dims: (usize, usize, usize, usize)| {
        let len = dims.0 * dims.1 * dims.2 * dims.3;
        Tensor::from_vec((0..len).map(|_| rng.random_range(-1.5f32..1.5)).collect::<Vec<_>>(), dims, &dev).unwrap()
    };
    (t((b, h, n, d)), t((b, kvh, n, d)), t((b, kvh, n, dv)))
}

#[test]
fn chunked_causal_form_matches_the_reference() {
    for (i, shape) in shapes().into_iter().enumerate() {
        let (q, k, v) = inputs(shape, i as u64);
        let got = linear_attention(&q, &k, &v, &AttentionMask::causal()).unwrap();
        let d = max_diff(&got, &reference(&q, &k, &v, true, None));
        assert!(d < 1e-5, "{shape:?}: {d}");
    }
}

#[test]
fn recurrent_form_matches_the_reference_token_by_token() {
    for (i, shape) in shapes().into_iter().enumerate() {
        let (q, k, v) = inputs(shape, 10 + i as u64);
        let want = reference(&q, &k, &v, true, None);
        let mut state = LinearAttentionState::new();
        let n = q.dim(2).unwrap();
        let s = |x: &Tensor, t: usize, len: usize| x.narrow(2, t, len).unwrap();
        // A few tokens at once first, then one at a time.
        let first = n.min(3);
        let mut steps = vec![state.step(&s(&q, 0, first), &s(&k, 0, first), &s(&v, 0, first)).unwrap()];
        for t in first..n {
            steps.push(state.step(&s(&q, t, 1), &s(&k, t, 1), &s(&v, t, 1)).unwrap());
        }
        assert_eq!(state.len(), n);
        let d = max_diff(&Tensor::cat(&steps, 2).unwrap(), &want);
        assert!(d < 1e-5, "{shape:?}: {d}");
    }
}

#[test]
fn non_causal_form_with_key_padding_matches_the_reference() {
    for (i, shape) in shapes().into_iter().enumerate() {
        let (q, k, v) = inputs(shape, 20 + i as u64);
        let (b, n) = (shape.0, shape.3);
        let keep: Vec<Vec<u32>> =
            (0..b).map(|r| (0..n).map(|j| u32::from(j + r * 2 < n || j == 0)).collect()).collect();
        let keep_t = Tensor::new(keep.clone(), &common::device()).unwrap();
        let got = linear_attention(&q, &k, &v, &AttentionMask::none().with_key_padding(keep_t)).unwrap();
        let d = max_diff(&got, &reference(&q, &k, &v, false, Some(&keep)));
        assert!(d < 1e-5, "{shape:?}: {d}");
    }
}

#[test]
fn unsupported_masks_are_refused() {
    let (q, k, v) = inputs((1, 2, 2, 5, 4, 4), 0);
    let bias = Tensor::zeros((1, 2, 5, 5), DType::F32, &common::device()).unwrap();
    assert!(linear_attention(&q, &k, &v, &AttentionMask::none().with_bias(bias)).is_err());
    assert!(linear_attention(&q, &k, &v, &AttentionMask::causal().with_sliding_window(2)).is_err());
    let short = q.narrow(2, 0, 2).unwrap();
    assert!(linear_attention(&short, &k, &v, &AttentionMask::causal()).is_err());
}
