//! DeBERTa-v2's token convolution against a loop-by-loop f64 reference: grouped 1-D
//! convolution with zero padding, the padding mask, tanh, the residual sum and a LayerNorm; and
//! a stack runs it beside its first layer only.

use candle_core::{DType, Device, Tensor};
use tcat_blocks::{Activation, Norm, TokenConvolution};

const EPS: f64 = 1e-7;

fn host3(t: &Tensor) -> Vec<Vec<Vec<f64>>> {
    t.to_dtype(DType::F64).unwrap().to_vec3().unwrap()
}

/// `LayerNorm(y + tanh(m · conv(m · x))) · m`, written out.
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    keep: &[bool],
    w: &[Vec<Vec<f64>>],
    bias: &[f64],
    groups: usize,
    gain: &[f64],
    shift: &[f64],
) -> Vec<Vec<f64>> {
    let (seq, hidden, k) = (x.len(), bias.len(), w[0][0].len());
    let (per_group, pad) = (hidden / groups, (k - 1) / 2);
    let mut out = vec![vec![0.0; hidden]; seq];
    for t in 0..seq {
        let mut sum = vec![0.0; hidden];
        for (o, s) in sum.iter_mut().enumerate() {
            let g = o / per_group;
            let mut acc = bias[o];
            for (c, wc) in w[o].iter().enumerate() {
                for (j, wj) in wc.iter().enumerate() {
                    let src = t as isize + j as isize - pad as isize;
                    if src >= 0 && (src as usize) < seq && keep[src as usize] {
                        acc += wj * x[src as usize][g * per_group + c];
                    }
                }
            }
            let conv = if keep[t] { acc } else { 0.0 };
            *s = y[t][o] + conv.tanh();
        }
        let mean = sum.iter().sum::<f64>() / hidden as f64;
        let var = sum.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / hidden as f64;
        for o in 0..hidden {
            let normed = (sum[o] - mean) / (var + EPS).sqrt() * gain[o] + shift[o];
            out[t][o] = if keep[t] { normed } else { 0.0 };
        }
    }
    out
}

#[test]
fn token_convolution_equals_the_loop_reference() {
    let dev = Device::Cpu;
    let (hidden, seq) = (6, 7);
    for (groups, kernel) in [(1, 3), (2, 5), (3, 1)] {
        let weight = Tensor::randn(0f32, 0.4, (hidden, hidden / groups, kernel), &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.2, hidden, &dev).unwrap();
        let gain = Tensor::rand(0.5f32, 1.5, hidden, &dev).unwrap();
        let shift = Tensor::rand(-0.3f32, 0.3, hidden, &dev).unwrap();
        let norm = Norm::layer_norm(gain.clone(), shift.clone(), EPS);
        let conv = TokenConvolution::new(weight.clone(), bias.clone(), groups, Activation::Tanh, norm).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, seq, hidden), &dev).unwrap();
        let y = Tensor::randn(0f32, 1.0, (2, seq, hidden), &dev).unwrap();
        let keep = Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]], &dev).unwrap();
        let got = host3(&conv.forward(&x, &y, Some(&keep)).unwrap());
        let (xs, ys, w) = (host3(&x), host3(&y), host3(&weight));
        let v1 = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
        for (row, real) in [(0usize, 7usize), (1, 4)] {
            let keep: Vec<bool> = (0..seq).map(|t| t < real).collect();
            let want = reference(&xs[row], &ys[row], &keep, &w, &v1(&bias), groups, &v1(&gain), &v1(&shift));
            let d =
                got[row].iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(d < 1e-5, "groups {groups}, kernel {kernel}, row {row}: differs from the reference by {d}");
        }
    }
}

#[test]
fn shapes_that_do_not_fit_are_refused() {
    let dev = Device::Cpu;
    let norm = || {
        Norm::layer_norm(Tensor::ones(4, DType::F32, &dev).unwrap(), Tensor::zeros(4, DType::F32, &dev).unwrap(), EPS)
    };
    let bias = Tensor::zeros(4, DType::F32, &dev).unwrap();
    let even = Tensor::zeros((4, 4, 2), DType::F32, &dev).unwrap();
    assert!(
        TokenConvolution::new(even, bias.clone(), 1, Activation::Tanh, norm()).unwrap_err().to_string().contains("odd")
    );
    let grouped = Tensor::zeros((4, 4, 3), DType::F32, &dev).unwrap();
    assert!(TokenConvolution::new(grouped, bias, 2, Activation::Tanh, norm()).is_err());
}
