//! CoCa's attentional pooler and the diffusion models' text conditioning against naive
//! references written out on the host: layer norms, projections and a softmax over each query's
//! scores, loop by loop in f64.

use candle_core::{DType, Device, Tensor};
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{AttentionalPooler, Norm, TextConditioning};
use tcat_core::Linear;

const HEADS: usize = 2;
const HEAD_DIM: usize = 3;
const WIDTH: usize = HEADS * HEAD_DIM;
const TEXT: usize = 5;
const EPS: f64 = 1e-5;

type Matrix = Vec<Vec<f64>>;

fn host(t: &Tensor) -> Matrix {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn rand(shape: (usize, usize), dev: &Device) -> Tensor {
    Tensor::randn(0f32, 0.5, shape, dev).unwrap()
}

struct Params {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    gain: Tensor,
    shift: Tensor,
}

impl Params {
    fn new(kv_in: usize, dev: &Device) -> Self {
        Self {
            q: rand((WIDTH, WIDTH), dev),
            k: rand((WIDTH, kv_in), dev),
            v: rand((WIDTH, kv_in), dev),
            o: rand((WIDTH, WIDTH), dev),
            gain: Tensor::rand(0.5f32, 1.5, WIDTH, dev).unwrap(),
            shift: Tensor::rand(-0.3f32, 0.3, WIDTH, dev).unwrap(),
        }
    }

    fn attention(&self) -> MultiHeadAttention {
        let lin = |w: &Tensor| Linear::new(w.clone(), None);
        MultiHeadAttention::new(
            QkvProjection::Separate { q: lin(&self.q), k: lin(&self.k), v: lin(&self.v) },
            lin(&self.o),
            HEADS,
            HEADS,
            HEAD_DIM,
        )
        .unwrap()
    }

    fn norm(&self) -> Norm {
        Norm::layer_norm(self.gain.clone(), self.shift.clone(), EPS)
    }

    fn norm_by_hand(&self, rows: &Matrix) -> Matrix {
        layer_norm_by_hand(rows, &self.gain, &self.shift)
    }
}

/// `rows · wᵀ` for `w` `[out, in]`.
fn project(rows: &Matrix, w: &Tensor) -> Matrix {
    let w = host(w);
    rows.iter().map(|r| w.iter().map(|wr| wr.iter().zip(r).map(|(a, b)| a * b).sum()).collect()).collect()
}

/// Multi-head attention of `q` over `k`, `v` (rows of WIDTH, heads side by side), keys with
/// `keep[j] == false` left out, through the output projection `o`.
fn attend_by_hand(q: &Matrix, k: &Matrix, v: &Matrix, keep: &[bool], o: &Tensor) -> Matrix {
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    let mut out = vec![vec![0.0; WIDTH]; q.len()];
    for (i, qi) in q.iter().enumerate() {
        for h in 0..HEADS {
            let span = h * HEAD_DIM..(h + 1) * HEAD_DIM;
            let scores: Vec<f64> = k
                .iter()
                .map(|kj| qi[span.clone()].iter().zip(&kj[span.clone()]).map(|(a, b)| a * b).sum::<f64>() * scale)
                .collect();
            let max = scores.iter().zip(keep).filter(|(_, k)| **k).map(|(s, _)| *s).fold(f64::MIN, f64::max);
            let weights: Vec<f64> =
                scores.iter().zip(keep).map(|(s, k)| if *k { (s - max).exp() } else { 0.0 }).collect();
            let total: f64 = weights.iter().sum();
            for (j, w) in weights.iter().enumerate() {
                for d in span.clone() {
                    out[i][d] += w / total * v[j][d];
                }
            }
        }
    }
    project(&out, o)
}

/// LayerNorm of each row with `gain` and `shift`, in f64.
fn layer_norm_by_hand(rows: &Matrix, gain: &Tensor, shift: &Tensor) -> Matrix {
    let (g, b): (Vec<f64>, Vec<f64>) =
        (gain.to_dtype(DType::F64).unwrap().to_vec1().unwrap(), shift.to_dtype(DType::F64).unwrap().to_vec1().unwrap());
    rows.iter()
        .map(|r| {
            let mean = r.iter().sum::<f64>() / r.len() as f64;
            let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / r.len() as f64;
            r.iter().enumerate().map(|(i, x)| (x - mean) / (var + EPS).sqrt() * g[i] + b[i]).collect()
        })
        .collect()
}

fn max_diff(a: &Matrix, b: &Matrix) -> f64 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn attentional_pooler_equals_the_naive_reference() {
    let dev = Device::Cpu;
    let p = Params::new(WIDTH, &dev);
    let queries = rand((4, WIDTH), &dev);
    // The context norm has its own gains.
    let context = Params::new(WIDTH, &dev);
    let pooler = AttentionalPooler::new(queries.clone(), p.attention(), p.norm(), context.norm()).unwrap();
    let tokens = Tensor::randn(0f32, 1.0, (2, 7, WIDTH), &dev).unwrap();
    let keep = Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]], &dev).unwrap();
    let got = pooler.forward(&tokens, Some(&keep)).unwrap();
    assert_eq!(got.dims(), &[2, 4, WIDTH]);
    let q = project(&p.norm_by_hand(&host(&queries)), &p.q);
    for (row, real) in [(0usize, 7usize), (1, 4)] {
        let ctx = context.norm_by_hand(&host(&tokens.get(row).unwrap()));
        let keep: Vec<bool> = (0..7).map(|j| j < real).collect();
        let want = attend_by_hand(&q, &project(&ctx, &p.k), &project(&ctx, &p.v), &keep, &p.o);
        let d = max_diff(&host(&got.get(row).unwrap()), &want);
        assert!(d < 1e-4, "pooler row {row} differs from the reference by {d}");
    }
}

/// Image tokens of another width than the queries (CoCa's image encoder and text decoder may
/// differ): keys and values project from the tokens' width, the result has the queries'.
#[test]
fn attentional_pooler_over_a_narrower_sequence_equals_the_naive_reference() {
    let dev = Device::Cpu;
    let p = Params::new(TEXT, &dev);
    let queries = rand((3, WIDTH), &dev);
    let (gain, shift) =
        (Tensor::rand(0.5f32, 1.5, TEXT, &dev).unwrap(), Tensor::rand(-0.3f32, 0.3, TEXT, &dev).unwrap());
    let context_norm = Norm::layer_norm(gain.clone(), shift.clone(), EPS);
    let pooler = AttentionalPooler::new(queries.clone(), p.attention(), p.norm(), context_norm).unwrap();
    let tokens = Tensor::randn(0f32, 1.0, (2, 6, TEXT), &dev).unwrap();
    let got = pooler.forward(&tokens, None).unwrap();
    assert_eq!(got.dims(), &[2, 3, WIDTH]);
    let q = project(&p.norm_by_hand(&host(&queries)), &p.q);
    for row in 0..2 {
        let ctx = layer_norm_by_hand(&host(&tokens.get(row).unwrap()), &gain, &shift);
        let want = attend_by_hand(&q, &project(&ctx, &p.k), &project(&ctx, &p.v), &[true; 6], &p.o);
        let d = max_diff(&host(&got.get(row).unwrap()), &want);
        assert!(d < 1e-4, "pooler row {row} differs from the reference by {d}");
    }
}

#[test]
fn cross_attention_conditioning_equals_the_naive_reference() {
    let dev = Device::Cpu;
    let p = Params::new(TEXT, &dev);
    let block = TextConditioning::cross_attention(p.norm(), p.attention());
    let image = Tensor::randn(0f32, 1.0, (2, 9, WIDTH), &dev).unwrap();
    let text = Tensor::randn(0f32, 1.0, (2, 4, TEXT), &dev).unwrap();
    let keep = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 0, 0]], &dev).unwrap();
    let got = block.forward(&image, &text, Some(&keep)).unwrap();
    for (row, real) in [(0usize, 4usize), (1, 2)] {
        let x = host(&image.get(row).unwrap());
        let t = host(&text.get(row).unwrap());
        let keep: Vec<bool> = (0..4).map(|j| j < real).collect();
        let branch =
            attend_by_hand(&project(&p.norm_by_hand(&x), &p.q), &project(&t, &p.k), &project(&t, &p.v), &keep, &p.o);
        let want: Matrix = x.iter().zip(&branch).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x + y).collect()).collect();
        let d = max_diff(&host(&got.get(row).unwrap()), &want);
        assert!(d < 1e-4, "cross-attention conditioning row {row} differs by {d}");
    }
}

#[test]
fn concatenated_keys_conditioning_equals_the_naive_reference() {
    let dev = Device::Cpu;
    let p = Params::new(WIDTH, &dev);
    let text_kv = rand((2 * WIDTH, TEXT), &dev);
    let block =
        TextConditioning::concatenated_keys(p.norm(), p.attention(), Linear::new(text_kv.clone(), None)).unwrap();
    let image = Tensor::randn(0f32, 1.0, (2, 6, WIDTH), &dev).unwrap();
    let text = Tensor::randn(0f32, 1.0, (2, 3, TEXT), &dev).unwrap();
    let keep = Tensor::new(&[[1u32, 1, 1], [1, 0, 0]], &dev).unwrap();
    let got = block.forward(&image, &text, Some(&keep)).unwrap();
    for (row, real) in [(0usize, 3usize), (1, 1)] {
        let x = host(&image.get(row).unwrap());
        let h = p.norm_by_hand(&x);
        let kv = project(&host(&text.get(row).unwrap()), &text_kv);
        // Keys: the text's, then the image tokens' own; padded text keys left out.
        let mut k: Matrix = kv.iter().map(|r| r[..WIDTH].to_vec()).collect();
        let mut v: Matrix = kv.iter().map(|r| r[WIDTH..].to_vec()).collect();
        k.extend(project(&h, &p.k));
        v.extend(project(&h, &p.v));
        let keep: Vec<bool> = (0..3).map(|j| j < real).chain(std::iter::repeat_n(true, 6)).collect();
        let branch = attend_by_hand(&project(&h, &p.q), &k, &v, &keep, &p.o);
        let want: Matrix = x.iter().zip(&branch).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x + y).collect()).collect();
        let d = max_diff(&host(&got.get(row).unwrap()), &want);
        assert!(d < 1e-4, "concatenated-keys conditioning row {row} differs by {d}");
    }
    let wrong =
        TextConditioning::concatenated_keys(p.norm(), p.attention(), Linear::new(rand((WIDTH, TEXT), &dev), None));
    assert!(wrong.unwrap_err().to_string().contains("keys and values"));
}
