//! Matrix products with GGUF's block-quantized weights on the CPU, chosen by the running CPU.
//!
//! llama.cpp's legacy formats (Gerganov et al., `ggml`) store a weight row as blocks of 32
//! values sharing one f16 scale `d` (and, for Q4_1, an f16 offset `m`): Q4_0 holds
//! `wᵢ = d (qᵢ − 8)`, Q4_1 `wᵢ = d qᵢ + m` with 4-bit `qᵢ`, and Q8_0 `wᵢ = d qᵢ` with signed 8-bit
//! `qᵢ`. As in llama.cpp, each input row is itself quantized to 8-bit blocks
//! (`xᵢ ≈ dₓ pᵢ`, [`quantize_row`]), so a block's contribution to `x · w` is an integer dot
//! product scaled once:
//!
//! ```text
//! Q4_0: d dₓ (Σ qᵢpᵢ − 8 Σ pᵢ)      Q4_1: d dₓ Σ qᵢpᵢ + m dₓ Σ pᵢ      Q8_0: d dₓ Σ qᵢpᵢ
//! ```
//!
//! [`reference`] writes those sums out plainly; the AVX2 kernels compute the same integers
//! with `vpmaddubsw` (or AVX-512 VNNI's `vpdpbusd` where present), four weight rows at a time,
//! and are selected when the CPU has AVX2, FMA and F16C (detected at run time, so a portable
//! build still runs them). Rows are shared
//! among tcat's CPU worker pool (`pool.rs`: claimed chunks, spin-then-yield waits). candle 0.11's own kernels pick SIMD at compile time and fall
//! back to scalar code in a default build; these replace them for the three formats above.
//!
//! ```
//! use candle_core::{Device, Tensor, quantized::{GgmlDType, QTensor}};
//! use tcat_core::quantized::BlockMatrix;
//! let w = Tensor::randn(0f32, 1., (8, 64), &Device::Cpu).unwrap();
//! let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
//! let m = BlockMatrix::from_qtensor(&q).unwrap().expect("Q4_1 is supported");
//! let x = vec![0.5f32; 64];
//! let mut y = vec![0f32; 8];
//! m.matmul(&x, 1, &mut y).unwrap();
//! let dense = m.dequantize();
//! let want: f32 = dense[..64].iter().map(|w| 0.5 * w).sum();
//! assert!((y[0] - want).abs() < 0.05 * want.abs().max(1.0));
//! ```

mod avx2;
pub mod reference;

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use crate::shared::SharedSlice;

/// Values per block, for every supported format.
pub const BLOCK: usize = 32;

/// The supported block formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// `d (q − 8)`, 4-bit `q`: 18 bytes per block.
    Q4_0,
    /// `d q + m`, 4-bit `q`: 20 bytes per block.
    Q4_1,
    /// `d q`, signed 8-bit `q`: 34 bytes per block.
    Q8_0,
}

impl BlockFormat {
    /// The format of a GGUF dtype, if supported here.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_0 => Some(Self::Q4_0),
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q8_0 => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// Bytes per block of [`BLOCK`] values.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }
}

/// One block of a quantized input row: `xᵢ ≈ d qs[i]`, with `sum = Σ qs[i]`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct InputBlock {
    /// The scale, `max |xᵢ| / 127`.
    pub d: f32,
    /// The sum of the quantized values.
    pub sum: i32,
    /// `d · sum`, the factor of Q4_0's and Q4_1's offset terms, computed once per input block.
    pub d_sum: f32,
    /// The quantized values.
    pub qs: [i8; BLOCK],
}

impl InputBlock {
    /// The block of 32 zeros.
    pub const ZERO: Self = Self { d: 0.0, sum: 0, d_sum: 0.0, qs: [0; BLOCK] };
}

/// Quantizes `x` (a multiple of [`BLOCK`] long) to 8-bit blocks, round to nearest.
pub fn quantize_row(x: &[f32], out: &mut [InputBlock]) {
    for (chunk, block) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in block.qs.iter_mut().zip(chunk) {
            *q = (v * inv).round() as i8;
            sum += *q as i32;
        }
        block.d = d;
        block.sum = sum;
        block.d_sum = d * sum as f32;
    }
}

/// A `[rows, cols]` weight matrix held as GGUF blocks, row after row.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

/// Errors of [`BlockMatrix`]: the matrix or the operands do not fit together.
fn shape_error(message: String) -> candle_core::Error {
    candle_core::Error::Msg(format!("block-quantized matmul: {message}"))
}

impl BlockMatrix {
    /// Wraps raw blocks (as a GGUF file stores them) of a `[rows, cols]` matrix.
    pub fn new(format: BlockFormat, rows: usize, cols: usize, data: Vec<u8>) -> candle_core::Result<Self> {
        if !cols.is_multiple_of(BLOCK) {
            return Err(shape_error(format!("{cols} columns is not a multiple of the block size {BLOCK}")));
        }
        let expected = rows * cols / BLOCK * format.block_bytes();
        if data.len() != expected {
            return Err(shape_error(format!(
                "{format:?} [{rows}, {cols}] needs {expected} bytes, found {}",
                data.len()
            )));
        }
        Ok(Self { format, rows, cols, data })
    }

    /// The blocks of a two-dimensional `QTensor` in a supported format; `Ok(None)` for other
    /// formats, ranks and devices.
    pub fn from_qtensor(q: &QTensor) -> candle_core::Result<Option<Self>> {
        let (Some(format), Ok((rows, cols))) = (BlockFormat::from_ggml(q.dtype()), q.shape().dims2()) else {
            return Ok(None);
        };
        if !q.device().is_cpu() || !cols.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        Self::new(format, rows, cols, q.data()?.into_owned()).map(Some)
    }

    /// The rows of `parts` (one format and width) one after another.
    pub fn stack_rows(parts: &[&BlockMatrix]) -> candle_core::Result<Self> {
        let Some(first) = parts.first() else { return Err(shape_error("no matrices to stack".into())) };
        if let Some(p) = parts.iter().find(|p| p.format != first.format || p.cols != first.cols) {
            return Err(shape_error(format!(
                "cannot stack {:?} [.., {}] with {:?} [.., {}]",
                first.format, first.cols, p.format, p.cols
            )));
        }
        let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Self::new(first.format, parts.iter().map(|p| p.rows).sum(), first.cols, data)
    }

    /// The block format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// `(rows, cols)`: output and input features.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn row(&self, r: usize) -> &[u8] {
        let bytes = self.cols / BLOCK * self.format.block_bytes();
        &self.data[r * bytes..(r + 1) * bytes]
    }

    /// The matrix as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        let shared = SharedSlice::new(&mut out);
        let cols = self.cols;
        crate::pool::pool().execute_chunked(self.rows, |rows| {
            for r in rows {
                // SAFETY: each row index is handed to exactly one worker.
                let dst = unsafe { shared.range(r * cols, cols) };
                reference::dequantize_row(self.format, self.row(r), dst);
            }
        });
        out
    }

    /// `y = x Wᵀ` for `m` input rows: `x` is `[m, cols]`, `y` is `[m, rows]`, both row-major.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) -> candle_core::Result<()> {
        self.check_operands(x, m, y)?;
        let blocks = self.cols / BLOCK;
        let mut inputs = vec![InputBlock::ZERO; m * blocks];
        for (row, out) in x.chunks_exact(self.cols).zip(inputs.chunks_exact_mut(blocks)) {
            quantize_row(row, out);
        }
        let kernel = Kernel::detect();
        self.by_row_groups(&inputs, blocks, y, |first, count, input, dots| {
            kernel.dot_rows(self, first, count, input, dots)
        });
        Ok(())
    }

    /// Runs `dot(first, count, input, dots)` for every group of [`ROWS_PER_ITEM`] weight rows
    /// (one pool work item each, reading its rows once for all inputs) and every input row
    /// (`inputs` in chunks of `width`), writing the `count` dot products to input row `i`'s
    /// outputs `y[i · rows + first ..]`.
    fn by_row_groups<T: Sync>(
        &self,
        inputs: &[T],
        width: usize,
        y: &mut [f32],
        dot: impl Fn(usize, usize, &[T], &mut [f32; ROWS_PER_ITEM]) + Sync,
    ) {
        let rows = self.rows;
        let shared = SharedSlice::new(y);
        crate::pool::pool().execute_chunked(rows.div_ceil(ROWS_PER_ITEM), |items| {
            let mut dots = [0f32; ROWS_PER_ITEM];
            for item in items {
                let first = item * ROWS_PER_ITEM;
                let count = ROWS_PER_ITEM.min(rows - first);
                for (i, input) in inputs.chunks_exact(width).enumerate() {
                    dot(first, count, input, &mut dots);
                    // SAFETY: output row `i`, columns `first..first + count` belong to this item.
                    let dst = unsafe { shared.range(i * rows + first, count) };
                    dst.copy_from_slice(&dots[..count]);
                }
            }
        });
    }
}

impl BlockMatrix {
    /// `y = x Wᵀ` for `m` input rows with the inputs kept in f32 (not quantized to 8 bits as
    /// [`matmul`](Self::matmul) does): each weight block is widened and multiplied with the f32
    /// values. For a tied LM head, whose logits decide greedy answers: SmolLM2's Q8_0 token
    /// table gives the dense table's answers this way, and different ones with 8-bit inputs.
    /// SIMD for Q8_0 (AVX2, or AVX-512F where present); the reference loops for other formats.
    pub fn matmul_f32(&self, x: &[f32], m: usize, y: &mut [f32]) -> candle_core::Result<()> {
        self.check_operands(x, m, y)?;
        let kernel = Kernel::detect();
        self.by_row_groups(x, self.cols, y, |first, count, input, dots| {
            kernel.dot_rows_f32(self, first, count, input, dots)
        });
        Ok(())
    }

    /// Rows `ids` of the matrix as f32, one after another into `out` (`ids.len() × cols`
    /// values): an embedding lookup that dequantizes only the rows it reads. An id past the
    /// last row is an error.
    pub fn dequantize_rows(&self, ids: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
        if out.len() != ids.len() * self.cols {
            return Err(shape_error(format!(
                "{} rows of {} values do not fill an output of {}",
                ids.len(),
                self.cols,
                out.len()
            )));
        }
        if let Some(id) = ids.iter().find(|&&id| id as usize >= self.rows) {
            return Err(shape_error(format!("row {id} is outside the table ({} rows)", self.rows)));
        }
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            reference::dequantize_row(self.format, self.row(id as usize), dst);
        }
        Ok(())
    }

    /// Rows `first..first + count` as f32, row-major.
    pub fn dequantize_range(&self, first: usize, count: usize) -> candle_core::Result<Vec<f32>> {
        if first.checked_add(count).is_none_or(|end| end > self.rows) {
            return Err(shape_error(format!("rows {first}..{first}+{count} of a matrix of {} rows", self.rows)));
        }
        let mut out = vec![0f32; count * self.cols];
        let shared = SharedSlice::new(&mut out);
        let cols = self.cols;
        crate::pool::pool().execute_chunked(count, |rows| {
            for r in rows {
                // SAFETY: each row index is handed to exactly one worker.
                let dst = unsafe { shared.range(r * cols, cols) };
                reference::dequantize_row(self.format, self.row(first + r), dst);
            }
        });
        Ok(out)
    }

    fn check_operands(&self, x: &[f32], m: usize, y: &[f32]) -> candle_core::Result<()> {
        crate::shared::check_operands("block-quantized matmul", x, m, y, self.rows, self.cols)
    }
}

/// Weight rows per work item (the AVX2 kernel's unrolling).
const ROWS_PER_ITEM: usize = 4;

/// Which implementation computes the dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The plain loops of [`reference`].
    Reference,
    /// AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The AVX2 kernel with AVX-512 VNNI's `vpdpbusd` (on 256-bit registers) for the integer
    /// dot products, and 512-bit registers for the f32-input kernel.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            return if avx2::vnni_available() { Self::Avx512Vnni } else { Self::Avx2 };
        }
        Self::Reference
    }

    /// Dot products of the f32 row `input` with weight rows `first..first + count`
    /// (`count` ≤ 4) into `out[..count]`, the input unquantized (see
    /// [`BlockMatrix::matmul_f32`]).
    pub fn dot_rows_f32(self, w: &BlockMatrix, first: usize, count: usize, input: &[f32], out: &mut [f32; 4]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 | Self::Avx512Vnni if w.format == BlockFormat::Q8_0 => {
                // Rows past the end repeat the last row; their results are not used.
                let rows = std::array::from_fn(|r| w.row(first + r.min(count - 1)));
                // SAFETY: `detect` found the kernel's features (AVX-512F is part of
                // `Avx512Vnni`'s); every row holds `input.len() / 32` blocks.
                *out = unsafe { avx2::dot4_q8_0_f32(rows, input, self == Self::Avx512Vnni) };
            }
            _ => {
                for (r, o) in out.iter_mut().enumerate().take(count) {
                    *o = reference::dot_f32(w.format, w.row(first + r), input);
                }
            }
        }
    }

    /// Dot products of `input` with weight rows `first..first + count` (`count` ≤ 4) into
    /// `out[..count]`.
    pub fn dot_rows(self, w: &BlockMatrix, first: usize, count: usize, input: &[InputBlock], out: &mut [f32; 4]) {
        match self {
            Self::Reference => {
                for (r, o) in out.iter_mut().enumerate().take(count) {
                    *o = reference::dot(w.format, w.row(first + r), input);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 | Self::Avx512Vnni => {
                // Rows past the end repeat the last row; their results are not used.
                let rows = std::array::from_fn(|r| w.row(first + r.min(count - 1)));
                // SAFETY: `detect` found the kernel's features; every row holds `input.len()` blocks.
                *out = unsafe { avx2::dot4(w.format, rows, input, self == Self::Avx512Vnni) };
            }
        }
    }
}

/// Reads the little-endian f16 at `bytes[at..at + 2]` as f32.
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

#[cfg(test)]
mod tests;
