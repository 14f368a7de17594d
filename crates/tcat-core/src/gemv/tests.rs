use super::*;
use crate::shared::uniform;

/// A random `[rows, cols]` matrix (off zero-mean) in all three dtypes.
struct Owned {
    f32: Vec<f32>,
    f16: Vec<f16>,
    bf16: Vec<bf16>,
}

fn random(rows: usize, cols: usize, seed: u64) -> Owned {
    let f32: Vec<f32> = uniform(rows * cols, seed).iter().map(|v| 2.0 * v + 0.3).collect();
    let f16 = f32.iter().map(|&v| f16::from_f32(v)).collect();
    let bf16 = f32.iter().map(|&v| bf16::from_f32(v)).collect();
    Owned { f32, f16, bf16 }
}

impl Owned {
    fn all(&self) -> [Weights<'_>; 3] {
        [Weights::F32(&self.f32), Weights::F16(&self.f16), Weights::BF16(&self.bf16)]
    }
}

/// The weights as f64, exactly.
fn widened(w: Weights) -> Vec<f64> {
    match w {
        Weights::F32(v) => v.iter().map(|&v| v as f64).collect(),
        Weights::F16(v) => v.iter().map(|v| v.to_f64()).collect(),
        Weights::BF16(v) => v.iter().map(|v| v.to_f64()).collect(),
    }
}

/// `(Σ wₖxₖ, Σ |wₖxₖ|)` in f64 for output `r` of input row `i`.
fn exact(w: &[f64], x: &[f32], cols: usize, r: usize, i: usize) -> (f64, f64) {
    let (row, xs) = (&w[r * cols..(r + 1) * cols], &x[i * cols..(i + 1) * cols]);
    row.iter().zip(xs).fold((0.0, 0.0), |(s, a), (w, &x)| (s + w * x as f64, a + (w * x as f64).abs()))
}

/// The rounding-error bound of an f32 sum of `n` products, `γ · Σ |wₖxₖ|` with unit roundoff
/// `u = 2⁻²⁴`: the in-order sum errs by at most about `n u Σ|wₖxₖ|` (each product and partial
/// sum rounds once); the SIMD order (per-lane sums of `n / lanes` terms, a 4-step reduction and
/// a tail of under 16 terms) by at most `(n / 16 + 21) u Σ|wₖxₖ|`. Their difference stays under
/// `(1.1 n + 24) u Σ|wₖxₖ|`. A dropped or repeated product is off by `|wₖxₖ|`, about `Σ/n`: far
/// above this for every length tested (`n = 1000`: 6.7e-5 Σ against 1e-3 Σ).
fn tolerance(n: usize, sum_abs: f64) -> f64 {
    (1.1 * n as f64 + 24.0) * f64::from(f32::EPSILON) / 2.0 * sum_abs
}

const COLS: [usize; 9] = [1, 3, 8, 17, 63, 64, 65, 576, 1000];
const ROWS: [usize; 5] = [1, 2, 5, 13, 130];

/// The reference is the exact dot product of the stored (widened) weights, up to f32 rounding.
#[test]
fn reference_is_the_exact_dot_product() {
    for cols in COLS {
        let owned = random(13, cols, cols as u64);
        let x = uniform(3 * cols, 7);
        for w in owned.all() {
            let matrix = Matrix::new(w, 13, cols).unwrap();
            let mut y = vec![0f32; 3 * 13];
            reference(&matrix, &x, 3, &mut y).unwrap();
            let wide = widened(w);
            for i in 0..3 {
                for r in 0..13 {
                    let (want, sum_abs) = exact(&wide, &x, cols, r, i);
                    let got = y[i * 13 + r] as f64;
                    assert!(
                        (got - want).abs() <= tolerance(cols, sum_abs),
                        "{:?} cols {cols}: {got} vs {want}",
                        w.dtype()
                    );
                }
            }
        }
    }
}

/// Every kernel this CPU runs against the reference: lengths with and without tails, output
/// counts around the four-row groups, 1 to 9 input rows (passes of 2 or 4 and their remainders),
/// each dtype.
#[test]
fn kernels_match_the_reference() {
    let kernels = Kernel::all_available();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        assert!(kernels.len() > 1, "an AVX2 CPU runs a SIMD kernel");
    }
    for cols in COLS {
        for rows in ROWS {
            let owned = random(rows, cols, (rows * 1000 + cols) as u64);
            for w in owned.all() {
                let matrix = Matrix::new(w, rows, cols).unwrap();
                let wide = widened(w);
                for m in 1..=9 {
                    let x: Vec<f32> = uniform(m * cols, m as u64).iter().map(|v| 3.0 * v).collect();
                    let mut want = vec![0f32; m * rows];
                    reference(&matrix, &x, m, &mut want).unwrap();
                    for &kernel in &kernels {
                        let mut got = vec![f32::NAN; m * rows];
                        matrix.gemv_with(kernel, &x, m, &mut got).unwrap();
                        for i in 0..m {
                            for r in 0..rows {
                                let (_, sum_abs) = exact(&wide, &x, cols, r, i);
                                let (g, e) = (got[i * rows + r], want[i * rows + r]);
                                assert!(
                                    (g as f64 - e as f64).abs() <= tolerance(cols, sum_abs),
                                    "{kernel:?} {:?} [{rows}, {cols}] m {m} output ({i}, {r}): {g} vs {e}",
                                    w.dtype()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Enough rows for the pool to split them among threads: every output is written, once.
#[test]
fn large_matrices_are_covered_by_the_pool() {
    let (rows, cols) = (4099, 96);
    let owned = random(rows, cols, 11);
    for w in owned.all() {
        let matrix = Matrix::new(w, rows, cols).unwrap();
        for m in [1, 5] {
            let x = uniform(m * cols, 3);
            let mut want = vec![0f32; m * rows];
            reference(&matrix, &x, m, &mut want).unwrap();
            let mut got = vec![f32::NAN; m * rows];
            matrix.gemv(&x, m, &mut got).unwrap();
            let wide = widened(w);
            for (j, (g, e)) in got.iter().zip(&want).enumerate() {
                let (_, sum_abs) = exact(&wide, &x, cols, j % rows, j / rows);
                assert!(
                    (*g as f64 - *e as f64).abs() <= tolerance(cols, sum_abs),
                    "{:?} output {j}: {g} vs {e}",
                    w.dtype()
                );
            }
        }
    }
}

#[test]
fn operands_that_do_not_fit_are_errors() {
    let w = [0f32; 6];
    assert!(Matrix::new(Weights::F32(&w), 2, 2).unwrap_err().to_string().contains("[2, 2] matrix from 6 values"));
    assert!(Matrix::new(Weights::F32(&w), usize::MAX, 2).is_err());
    let m = Matrix::new(Weights::F32(&w), 2, 3).unwrap();
    assert_eq!(m.dims(), (2, 3));
    let mut y = [0f32; 2];
    assert!(m.gemv(&[0.; 2], 1, &mut y).is_err());
    assert!(m.gemv(&[0.; 3], 1, &mut [0f32; 3]).is_err());
    assert!(reference(&m, &[0.; 6], 1, &mut y).is_err());
    // Nothing to compute is not an error.
    m.gemv(&[], 0, &mut []).unwrap();
    let empty = Matrix::new(Weights::BF16(&[]), 0, 5).unwrap();
    empty.gemv(&[1.; 5], 1, &mut []).unwrap();
    let zero_cols = Matrix::new(Weights::F16(&[]), 3, 0).unwrap();
    let mut y = [f32::NAN; 3];
    zero_cols.gemv(&[], 1, &mut y).unwrap();
    assert_eq!(y, [0.; 3]);
}
