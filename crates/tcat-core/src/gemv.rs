//! Matrix-vector products with dense f32, f16 or bf16 weights on the CPU: `y = W x` for a few
//! input rows at a time (GEMV, the BLAS level-2 routine, batched over a handful of vectors).
//!
//! Decoding one token multiplies every weight matrix with one activation row, so each weight is
//! used once per product: the time is the time to stream the matrix from memory, and a
//! half-precision weight (2 bytes) should take half the time of an f32 one. candle's matmul (a
//! GEMM) has no fast path for this shape in half precision. Here the weights (`[out, in]`,
//! row-major, as stored) are read once, widened to f32 in registers (bf16 by a 16-bit shift,
//! f16 by F16C's `vcvtph2ps`), multiplied with f32 inputs and accumulated in f32; the outputs
//! are f32. Each pass over a weight row serves up to [`MAX_INPUT_ROWS`] input rows, so for that
//! many rows the weights still come from memory once (more rows take further passes over the
//! [`ROWS_PER_ITEM`] rows of a work item, then in cache).
//!
//! [`reference()`] is the plain loop, what the kernels compute. The SIMD kernels (AVX-512F where
//! present, else AVX2 + FMA + F16C) are chosen at run time ([`Kernel::detect`]), so a portable
//! build still runs them; other architectures use the reference. Groups of weight rows are
//! shared among tcat's CPU worker pool (`pool.rs`).
//!
//! ```
//! use tcat_core::gemv::{Matrix, Weights, reference};
//! use half::bf16;
//! let w: Vec<bf16> = [1f32, 2., 3., 4., 5., 6.].map(bf16::from_f32).to_vec(); // [out=2, in=3]
//! let m = Matrix::new(Weights::BF16(&w), 2, 3).unwrap();
//! let x = [1f32, 0., -1.];
//! let mut y = [0f32; 2];
//! m.gemv(&x, 1, &mut y).unwrap();
//! assert_eq!(y, [-2., -2.]);
//! let mut want = [0f32; 2];
//! reference(&m, &x, 1, &mut want).unwrap();
//! assert_eq!(y, want);
//! ```

use half::{bf16, f16};

use crate::shared::SharedSlice;

/// The weight values of a [`Matrix`], in their stored dtype.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// IEEE half precision.
    F16(&'a [f16]),
    /// bfloat16 (the upper half of an f32).
    BF16(&'a [bf16]),
}

impl Weights<'_> {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(w) => w.len(),
            Self::F16(w) => w.len(),
            Self::BF16(w) => w.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored dtype.
    ///
    /// ```
    /// use tcat_core::gemv::Weights;
    /// assert_eq!(Weights::F32(&[1.]).dtype(), candle_core::DType::F32);
    /// ```
    pub fn dtype(&self) -> candle_core::DType {
        match self {
            Self::F32(_) => candle_core::DType::F32,
            Self::F16(_) => candle_core::DType::F16,
            Self::BF16(_) => candle_core::DType::BF16,
        }
    }
}

/// A borrowed `[rows, cols]` row-major weight matrix (`rows` outputs, `cols` inputs).
///
/// ```
/// use tcat_core::gemv::{Matrix, Weights};
/// assert!(Matrix::new(Weights::F32(&[0.; 6]), 2, 3).is_ok());
/// assert!(Matrix::new(Weights::F32(&[0.; 6]), 4, 3).is_err());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    weights: Weights<'a>,
    rows: usize,
    cols: usize,
}

/// The error of operands that do not fit together.
fn shape_error(message: String) -> candle_core::Error {
    candle_core::Error::Msg(format!("gemv: {message}"))
}

impl<'a> Matrix<'a> {
    /// Wraps `weights`, which must hold exactly `rows × cols` values.
    pub fn new(weights: Weights<'a>, rows: usize, cols: usize) -> candle_core::Result<Self> {
        if rows.checked_mul(cols) != Some(weights.len()) {
            return Err(shape_error(format!("[{rows}, {cols}] matrix from {} values", weights.len())));
        }
        Ok(Self { weights, rows, cols })
    }

    /// `(rows, cols)`: output and input features.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The stored values.
    pub fn weights(&self) -> Weights<'a> {
        self.weights
    }

    /// `y = x Wᵀ` for `m` input rows (`x` is `[m, cols]`, `y` is `[m, rows]`, row-major) by the
    /// fastest kernel this CPU runs, on tcat's worker pool.
    pub fn gemv(&self, x: &[f32], m: usize, y: &mut [f32]) -> candle_core::Result<()> {
        self.gemv_with(Kernel::detect(), x, m, y)
    }

    /// [`gemv`](Self::gemv) by a given kernel (one [`Kernel::detect`] allows, else the
    /// reference is used): for tests and benchmarks.
    pub fn gemv_with(&self, kernel: Kernel, x: &[f32], m: usize, y: &mut [f32]) -> candle_core::Result<()> {
        self.check_operands(x, m, y)?;
        let kernel = if kernel.is_available() { kernel } else { Kernel::Reference };
        let (rows, cols) = (self.rows, self.cols);
        if rows == 0 || m == 0 {
            return Ok(());
        }
        let shared = SharedSlice::new(y);
        crate::pool::pool().execute_chunked(rows.div_ceil(ROWS_PER_ITEM), |items| {
            let mut dots = [[0f32; MAX_INPUT_ROWS]; ROWS_PER_ITEM];
            for item in items {
                let first = item * ROWS_PER_ITEM;
                let count = ROWS_PER_ITEM.min(rows - first);
                let mut start = 0;
                while start < m {
                    let pass = MAX_INPUT_ROWS.min(m - start);
                    let inputs = &x[start * cols..(start + pass) * cols];
                    kernel.dot_rows(self, first, count, inputs, pass, &mut dots);
                    for (i, y_row) in (start..start + pass).enumerate() {
                        // SAFETY: output row `y_row`, columns `first..first + count` belong to
                        // this item alone.
                        let dst = unsafe { shared.range(y_row * rows + first, count) };
                        for (d, row) in dst.iter_mut().zip(&dots) {
                            *d = row[i];
                        }
                    }
                    start += pass;
                }
            }
        });
        Ok(())
    }

    fn check_operands(&self, x: &[f32], m: usize, y: &[f32]) -> candle_core::Result<()> {
        crate::shared::check_operands("gemv", x, m, y, self.rows, self.cols)
    }
}

/// Weight rows per work item, computed together with independent accumulators.
pub const ROWS_PER_ITEM: usize = 4;

/// The most input rows one pass over a group of weight rows serves (more take further passes,
/// over weight rows then in cache).
pub const MAX_INPUT_ROWS: usize = 4;

/// `y = x Wᵀ` for `m` input rows, plainly: every output is the f32 sum, in order, of the
/// widened weights times the inputs. Single-threaded; what the kernels compute.
///
/// ```
/// use tcat_core::gemv::{Matrix, Weights, reference};
/// let m = Matrix::new(Weights::F32(&[1., 2., 3., 4.]), 2, 2).unwrap();
/// let mut y = [0f32; 4];
/// reference(&m, &[1., 1., 0., 1.], 2, &mut y).unwrap();
/// assert_eq!(y, [3., 7., 2., 4.]);
/// ```
pub fn reference(w: &Matrix, x: &[f32], m: usize, y: &mut [f32]) -> candle_core::Result<()> {
    w.check_operands(x, m, y)?;
    for i in 0..m {
        for r in 0..w.rows {
            y[i * w.rows + r] = reference_dot(w, r, &x[i * w.cols..(i + 1) * w.cols]);
        }
    }
    Ok(())
}

/// The f32 dot product of weight row `r` with `x`, summed in order.
fn reference_dot(w: &Matrix, r: usize, x: &[f32]) -> f32 {
    let span = r * w.cols..(r + 1) * w.cols;
    match w.weights {
        Weights::F32(v) => v[span].iter().zip(x).fold(0.0, |s, (w, x)| s + w * x),
        Weights::F16(v) => v[span].iter().zip(x).fold(0.0, |s, (w, x)| s + w.to_f32() * x),
        Weights::BF16(v) => v[span].iter().zip(x).fold(0.0, |s, (w, x)| s + w.to_f32() * x),
    }
}

/// Which implementation computes the dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The plain loops of [`reference()`].
    Reference,
    /// AVX2 + FMA + F16C: 8 values per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (with the AVX2 set): 16 values per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    ///
    /// ```
    /// let k = tcat_core::gemv::Kernel::detect();
    /// assert!(k.is_available());
    /// ```
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if x86::avx512_available() {
                return Self::Avx512;
            }
            if x86::avx2_available() {
                return Self::Avx2;
            }
        }
        Self::Reference
    }

    /// Whether this CPU runs the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Self::Reference => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => x86::avx2_available(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => x86::avx512_available(),
        }
    }

    /// Every kernel this CPU runs, the reference first.
    pub fn all_available() -> Vec<Self> {
        let all = [
            Self::Reference,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512,
        ];
        all.into_iter().filter(|k| k.is_available()).collect()
    }

    /// `dots[r][i]` = weight row `first + r` · input row `i`, for `r < count` (≤
    /// [`ROWS_PER_ITEM`]) and `i < m` (≤ [`MAX_INPUT_ROWS`]); `x` is `[m, cols]`.
    fn dot_rows(self, w: &Matrix, first: usize, count: usize, x: &[f32], m: usize, dots: &mut Dots) {
        match self {
            Self::Reference => {
                for (r, row) in dots.iter_mut().enumerate().take(count) {
                    for (i, d) in row.iter_mut().enumerate().take(m) {
                        *d = reference_dot(w, first + r, &x[i * w.cols..(i + 1) * w.cols]);
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 | Self::Avx512 => {
                let avx512 = self == Self::Avx512;
                // SAFETY: `gemv_with` checked the kernel's features; the rows and inputs are
                // checked by `x86::dot_rows`.
                unsafe {
                    match w.weights {
                        Weights::F32(v) => x86::dot_rows(v, w.cols, first, count, x, m, dots, avx512),
                        Weights::F16(v) => x86::dot_rows(v, w.cols, first, count, x, m, dots, avx512),
                        Weights::BF16(v) => x86::dot_rows(v, w.cols, first, count, x, m, dots, avx512),
                    }
                }
            }
        }
    }
}

/// The dot products of a group of weight rows with a pass of input rows: `[row][input]`.
type Dots = [[f32; MAX_INPUT_ROWS]; ROWS_PER_ITEM];

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The SIMD kernels: the weight rows of a work item one after another, each against `M`
    //! input rows, the weights widened to f32 as they are loaded; the last `cols mod lanes`
    //! values are summed by scalar code.

    use std::arch::x86_64::*;

    use half::{bf16, f16};

    use super::{Dots, MAX_INPUT_ROWS, ROWS_PER_ITEM};

    pub(super) fn avx2_available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }

    pub(super) fn avx512_available() -> bool {
        avx2_available() && is_x86_feature_detected!("avx512f")
    }

    /// A weight dtype the kernels widen to f32.
    pub(super) trait Widen: Copy {
        /// Eight values at `p` as f32 (AVX2, F16C).
        unsafe fn load8(p: *const Self) -> __m256;
        /// Sixteen values at `p` as f32 (AVX-512F).
        unsafe fn load16(p: *const Self) -> __m512;
        /// One value as f32.
        fn scalar(self) -> f32;
    }

    impl Widen for f32 {
        #[inline(always)]
        unsafe fn load8(p: *const Self) -> __m256 {
            // SAFETY: the caller points at 8 readable values and has AVX.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load16(p: *const Self) -> __m512 {
            // SAFETY: the caller points at 16 readable values and has AVX-512F.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        fn scalar(self) -> f32 {
            self
        }
    }

    impl Widen for f16 {
        #[inline(always)]
        unsafe fn load8(p: *const Self) -> __m256 {
            // SAFETY: as for f32 (with F16C).
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
        }
        #[inline(always)]
        unsafe fn load16(p: *const Self) -> __m512 {
            // SAFETY: as for f32.
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
        }
        #[inline(always)]
        fn scalar(self) -> f32 {
            self.to_f32()
        }
    }

    impl Widen for bf16 {
        /// bf16 is the upper half of an f32: zero-extend to 32 bits and shift left by 16.
        #[inline(always)]
        unsafe fn load8(p: *const Self) -> __m256 {
            // SAFETY: as for f32 (with AVX2).
            unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) }
        }
        #[inline(always)]
        unsafe fn load16(p: *const Self) -> __m512 {
            // SAFETY: as for f32.
            unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())))) }
        }
        #[inline(always)]
        fn scalar(self) -> f32 {
            self.to_f32()
        }
    }

    /// `dots[r][i]` = row `first + r` of the `[.., cols]` matrix `w` · row `i` of `x` (`m`
    /// rows), for `r < count`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, and AVX-512F when `avx512`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dot_rows<E: Widen>(
        w: &[E],
        cols: usize,
        first: usize,
        count: usize,
        x: &[f32],
        m: usize,
        dots: &mut Dots,
        avx512: bool,
    ) {
        assert!(count <= ROWS_PER_ITEM && (first + count) * cols <= w.len(), "weight rows past the matrix");
        assert!(x.len() == m * cols && (1..=MAX_INPUT_ROWS).contains(&m), "input rows");
        let w = w[first * cols..].as_ptr();
        let x: [*const f32; MAX_INPUT_ROWS] = std::array::from_fn(|i| x[i.min(m - 1) * cols..].as_ptr());
        // SAFETY: `count` rows of `cols` values from `w` and `cols` values from every `x[i]`
        // are readable (checked above); the features are the caller's contract.
        unsafe {
            match (avx512, m) {
                (true, 1) => avx512_rows::<E, 1, 4>(w, count, x, cols, dots),
                (true, 2) => avx512_rows::<E, 2, 2>(w, count, x, cols, dots),
                (true, 3) => avx512_rows::<E, 3, 2>(w, count, x, cols, dots),
                (true, _) => avx512_rows::<E, 4, 2>(w, count, x, cols, dots),
                (false, 1) => avx2_rows::<E, 1, 4>(w, count, x, cols, dots),
                (false, 2) => avx2_rows::<E, 2, 2>(w, count, x, cols, dots),
                (false, 3) => avx2_rows::<E, 3, 2>(w, count, x, cols, dots),
                (false, _) => avx2_rows::<E, 4, 2>(w, count, x, cols, dots),
            }
        }
    }

    /// `cols` values of `w` times `x`, summed in f32 (the tail after the vectors).
    #[inline(always)]
    unsafe fn scalar_dot<E: Widen>(w: *const E, x: *const f32, from: usize, cols: usize) -> f32 {
        let mut s = 0f32;
        for k in from..cols {
            // SAFETY: `k < cols`, inside both runs.
            s += unsafe { (*w.add(k)).scalar() * *x.add(k) };
        }
        s
    }

    /// The weight rows one after another (one sequential stream per thread, which the
    /// hardware prefetcher follows: rows read side by side in lockstep ran at a quarter of the
    /// bandwidth on the LM head), each against `M` input rows with `U` accumulators per input
    /// row (`M × U` independent FMA chains).
    // Indexed loops over the const-sized accumulator arrays: unrolled into registers.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn avx512_rows<E: Widen, const M: usize, const U: usize>(
        w: *const E,
        count: usize,
        x: [*const f32; MAX_INPUT_ROWS],
        cols: usize,
        dots: &mut Dots,
    ) {
        // SAFETY: `count` rows of `cols` values from `w` and `cols` values from every `x[i]`
        // (the caller's contract).
        unsafe {
            let (step, full) = (16 * U, cols / 16 * 16);
            let main = cols / step * step;
            for (r, out) in dots.iter_mut().enumerate().take(count) {
                let w = w.add(r * cols);
                let mut acc = [[_mm512_setzero_ps(); M]; U];
                let mut k = 0;
                while k < main {
                    for u in 0..U {
                        let wv = E::load16(w.add(k + 16 * u));
                        for i in 0..M {
                            acc[u][i] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[i].add(k + 16 * u)), acc[u][i]);
                        }
                    }
                    k += step;
                }
                while k < full {
                    let wv = E::load16(w.add(k));
                    for i in 0..M {
                        acc[0][i] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[i].add(k)), acc[0][i]);
                    }
                    k += 16;
                }
                for i in 0..M {
                    let mut sum = acc[0][i];
                    for a in &acc[1..] {
                        sum = _mm512_add_ps(sum, a[i]);
                    }
                    out[i] = _mm512_reduce_add_ps(sum) + scalar_dot(w, x[i], full, cols);
                }
            }
        }
    }

    /// [`avx512_rows`] on 256-bit registers.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn avx2_rows<E: Widen, const M: usize, const U: usize>(
        w: *const E,
        count: usize,
        x: [*const f32; MAX_INPUT_ROWS],
        cols: usize,
        dots: &mut Dots,
    ) {
        // SAFETY: as in `avx512_rows`.
        unsafe {
            let (step, full) = (8 * U, cols / 8 * 8);
            let main = cols / step * step;
            for (r, out) in dots.iter_mut().enumerate().take(count) {
                let w = w.add(r * cols);
                let mut acc = [[_mm256_setzero_ps(); M]; U];
                let mut k = 0;
                while k < main {
                    for u in 0..U {
                        let wv = E::load8(w.add(k + 8 * u));
                        for i in 0..M {
                            acc[u][i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[i].add(k + 8 * u)), acc[u][i]);
                        }
                    }
                    k += step;
                }
                while k < full {
                    let wv = E::load8(w.add(k));
                    for i in 0..M {
                        acc[0][i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[i].add(k)), acc[0][i]);
                    }
                    k += 8;
                }
                for i in 0..M {
                    let mut sum = acc[0][i];
                    for a in &acc[1..] {
                        sum = _mm256_add_ps(sum, a[i]);
                    }
                    out[i] = horizontal_sum(sum) + scalar_dot(w, x[i], full, cols);
                }
            }
        }
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn horizontal_sum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }
}

#[cfg(test)]
mod tests;
