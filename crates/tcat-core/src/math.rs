//! Branch-free f32 approximations of `exp` and `erf`, and a parallel elementwise map that lets
//! loops over them vectorise on the running CPU.
//!
//! candle's CPU unary ops evaluate libm-style scalar functions on one thread; the activations of
//! a BERT-base forward call `erf` 38 million times. These approximations are accurate to a few
//! f32 ulps of the results that matter (see each function), have no branches, and are mapped
//! over slices in chunks shared among candle's worker pool, inside an AVX2/FMA-enabled function
//! when the CPU has it.
//!
//! ```
//! let xs = [-2.0f32, 0.0, 0.5, 3.0];
//! let ys = tcat_core::math::map(&xs, tcat_core::math::erf);
//! for (x, y) in xs.iter().zip(ys) {
//!     assert!((y - libm_like_erf(*x)).abs() < 3e-7);
//! }
//! # fn libm_like_erf(x: f32) -> f32 {
//! #     // the series, in f64
//! #     let x = x as f64;
//! #     let (mut sum, mut term) = (0.0, x);
//! #     for n in 0..80 { sum += term / (2 * n + 1) as f64; term *= -x * x / (n + 1) as f64; }
//! #     (2.0 / std::f64::consts::PI.sqrt() * sum) as f32
//! # }
//! ```

use crate::shared::SharedSlice;

/// `eˣ` for `x ≤ 88`: `x = n ln 2 + r` with `|r| ≤ ln 2 / 2`, `eʳ` by the degree-6 minimax
/// polynomial of Cephes' `expf` (relative error about 1e-7), times `2ⁿ` built in the exponent
/// bits. Arguments below −87 give exactly 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding and subtracting it rounds to an integer
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut poly = 1.987_569_1e-4;
    poly = poly * r + 1.398_199_9e-3;
    poly = poly * r + 8.333_452e-3;
    poly = poly * r + 4.166_579_6e-2;
    poly = poly * r + 0.166_666_65;
    poly = poly * r + 0.5;
    let e = poly * r * r + r + 1.0;
    let pow2 = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { e * pow2 }
}

/// The error function: its Taylor series (12 terms) for `|x| < 1`, Abramowitz & Stegun 7.1.26
/// above (`erf |x| = 1 − t (a₁ + t (a₂ + …)) e^(−x²)`, `t = 1 / (1 + p|x|)`, absolute error
/// ≤ 1.5e-7 in exact arithmetic), with the sign of `x`. Both halves are computed and one is
/// selected, so loops still vectorise; the f32 result is within 3e-7 of erf.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let large = 1.0 - poly * exp(-a * a);
    let a2 = a * a;
    let mut series = ERF_TAYLOR[ERF_TAYLOR.len() - 1];
    for c in ERF_TAYLOR.iter().rev().skip(1) {
        series = series * a2 + c;
    }
    let small = a * series;
    (if a < 1.0 { small } else { large }).copysign(x)
}

/// `erf x = x Σₙ cₙ x²ⁿ` with `cₙ = (2 / √π) (−1)ⁿ / (n! (2n + 1))`.
const ERF_TAYLOR: [f32; 12] = {
    let mut c = [0f32; 12];
    let mut factorial = 1f64;
    let mut n = 0;
    while n < 12 {
        if n > 0 {
            factorial *= n as f64;
        }
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        c[n] = (std::f64::consts::FRAC_2_SQRT_PI * sign / (factorial * (2 * n + 1) as f64)) as f32;
        n += 1;
    }
    c
};

/// `tanh x = 1 − 2 / (e^(2x) + 1)`, saturating to ±1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let xc = x.clamp(-10.0, 10.0);
    1.0 - 2.0 / (exp(2.0 * xc) + 1.0)
}

/// The logistic function `1 / (1 + e^(−x))`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Elements per work item of [`map`]: large enough to amortise a hand-off, small enough to
/// share a 768-wide row set among two workers.
const CHUNK: usize = 16 * 1024;

/// `f` applied to every element, the chunks shared among tcat's CPU worker pool.
pub fn map(xs: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; xs.len()];
    let items = xs.len().div_ceil(CHUNK);
    if items <= 1 {
        map_chunk(xs, &mut out, &f);
        return out;
    }
    let shared = SharedSlice::new(&mut out);
    crate::pool::pool().execute_chunked(items, |range| {
        for item in range {
            let start = item * CHUNK;
            let len = CHUNK.min(xs.len() - start);
            // SAFETY: each chunk index is handed to exactly one worker, so the ranges never overlap.
            let out = unsafe { shared.range(start, len) };
            map_chunk(&xs[start..start + len], out, &f);
        }
    });
    out
}

fn map_chunk(xs: &[f32], out: &mut [f32], f: &impl Fn(f32) -> f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        unsafe { map_chunk_avx2(xs, out, f) };
        return;
    }
    map_plain(xs, out, f)
}

#[inline(always)]
fn map_plain(xs: &[f32], out: &mut [f32], f: &impl Fn(f32) -> f32) {
    for (o, x) in out.iter_mut().zip(xs) {
        *o = f(*x);
    }
}

/// The same loop compiled with AVX2 and FMA, so that `f` inlined into it vectorises.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_chunk_avx2(xs: &[f32], out: &mut [f32], f: &impl Fn(f32) -> f32) {
    map_plain(xs, out, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64: its Taylor series below 3, the asymptotic series of erfc above.
    fn erf_exact(x: f64) -> f64 {
        if x.abs() >= 3.0 {
            let a = x.abs();
            let inv = 1.0 / (2.0 * a * a);
            let series = 1.0 - inv + 3.0 * inv * inv - 15.0 * inv.powi(3) + 105.0 * inv.powi(4);
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series;
            return (1.0 - erfc).copysign(x);
        }
        let (mut sum, mut term) = (0.0, x);
        for n in 0..200 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    fn sweep(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..=n).map(|i| lo + (hi - lo) * i as f32 / n as f32).collect()
    }

    #[test]
    fn exp_is_accurate() {
        for x in sweep(-90.0, 88.0, 100_000) {
            let (fast, exact) = (exp(x) as f64, (x as f64).exp());
            if x < -87.0 {
                assert_eq!(fast, 0.0);
            } else {
                assert!((fast - exact).abs() <= 3e-7 * exact, "exp({x}) = {fast}, expected {exact}");
            }
        }
        assert_eq!((exp(0.0), exp(f32::NEG_INFINITY)), (1.0, 0.0));
    }

    #[test]
    fn erf_tanh_sigmoid_are_accurate() {
        for x in sweep(-8.0, 8.0, 50_000) {
            let exact = erf_exact(x as f64);
            assert!((erf(x) as f64 - exact).abs() < 3e-7, "erf({x}) = {}, expected {exact}", erf(x));
        }
        for x in sweep(-30.0, 30.0, 50_000) {
            let t = (x as f64).tanh();
            assert!((tanh(x) as f64 - t).abs() < 3e-7, "tanh({x}) = {}, expected {t}", tanh(x));
            let s = 1.0 / (1.0 + (-x as f64).exp());
            assert!((sigmoid(x) as f64 - s).abs() < 3e-7 * s.max(1e-3), "sigmoid({x})");
        }
        assert_eq!((erf(0.0), erf(-0.0).is_sign_negative()), (0.0, true));
        assert_eq!((erf(50.0), erf(-50.0), tanh(1e4), tanh(-1e4)), (1.0, -1.0, 1.0, -1.0));
    }

    #[test]
    fn map_covers_every_element_in_order() {
        for n in [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 5] {
            let xs: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let ys = map(&xs, |x| 2.0 * x + 1.0);
            assert_eq!(ys.len(), n);
            assert!(ys.iter().enumerate().all(|(i, y)| *y == 2.0 * i as f32 + 1.0), "n = {n}");
        }
    }
}
