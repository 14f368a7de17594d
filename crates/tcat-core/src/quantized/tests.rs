use super::*;
use crate::shared::uniform;
use candle_core::{Device, Module, Tensor, quantized::QMatMul};

const FORMATS: [GgmlDType; 3] = [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0];

/// A random `[rows, cols]` matrix quantized by candle (weights off zero-mean, so that Q4_1's
/// offset matters), and its blocks.
fn random(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> (QTensor, BlockMatrix) {
    let values: Vec<f32> = uniform(rows * cols, seed).iter().map(|v| 2.0 * v + 0.3).collect();
    let w = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&w, dtype).unwrap();
    let m = BlockMatrix::from_qtensor(&q).unwrap().expect("supported format");
    (q, m)
}

fn inputs(m: usize, cols: usize, seed: u64) -> Vec<f32> {
    uniform(m * cols, seed ^ 0x5eed).iter().map(|v| 3.0 * v).collect()
}

#[test]
fn dequantize_equals_candles() {
    for dtype in FORMATS {
        let (q, m) = random(dtype, 5, 96, 1);
        let want: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(m.dequantize(), want, "{dtype:?}");
    }
}

#[test]
fn quantized_inputs_round_to_the_nearest_step() {
    let x = inputs(1, 64, 2);
    let mut blocks = vec![InputBlock::ZERO; 2];
    quantize_row(&x, &mut blocks);
    for (chunk, b) in x.chunks(BLOCK).zip(&blocks) {
        assert_eq!(b.sum, b.qs.iter().map(|&q| q as i32).sum::<i32>());
        assert_eq!(b.d_sum, b.d * b.sum as f32);
        assert!(b.qs.iter().any(|&q| q.unsigned_abs() == 127), "the largest value maps to ±127");
        for (v, q) in chunk.iter().zip(b.qs) {
            assert!((v - b.d * q as f32).abs() <= 0.5 * b.d * 1.0001, "{v} vs {}", b.d * q as f32);
        }
    }
    quantize_row(&[0f32; BLOCK], &mut blocks[..1]);
    assert_eq!(blocks[0], InputBlock::ZERO);
}

/// The reference dot product is the f64 dot product of the dequantized weights and the
/// dequantized inputs: the block formulas are right.
#[test]
fn reference_dot_is_the_dot_of_the_dequantized_operands() {
    for dtype in FORMATS {
        let (_, m) = random(dtype, 3, 128, 3);
        let x = inputs(1, 128, 4);
        let mut blocks = vec![InputBlock::ZERO; 4];
        quantize_row(&x, &mut blocks);
        let xs: Vec<f64> = blocks.iter().flat_map(|b| b.qs.map(|q| b.d as f64 * q as f64)).collect();
        let w = m.dequantize();
        for r in 0..3 {
            let want: f64 = w[r * 128..(r + 1) * 128].iter().zip(&xs).map(|(w, x)| *w as f64 * x).sum();
            let got = reference::dot(m.format(), m.row(r), &blocks) as f64;
            assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{dtype:?} row {r}: {got} vs {want}");
        }
    }
}

/// Every kernel this CPU runs against the reference, on row counts around the four-row
/// unrolling and several lengths.
#[test]
fn kernels_equal_the_reference() {
    let mut kernels = vec![Kernel::Reference];
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            kernels.push(Kernel::Avx2);
        }
        if avx2::available() && avx2::vnni_available() {
            kernels.push(Kernel::Avx512Vnni);
        }
    }
    eprintln!("kernels: {kernels:?}");
    for kernel in kernels {
        for dtype in FORMATS {
            for (rows, cols) in [(1, 32), (3, 64), (4, 96), (7, 576), (9, 1536)] {
                let (_, m) = random(dtype, rows, cols, rows as u64);
                let x = inputs(1, cols, cols as u64);
                let mut blocks = vec![InputBlock::ZERO; cols / BLOCK];
                quantize_row(&x, &mut blocks);
                for first in (0..rows).step_by(4) {
                    let count = 4.min(rows - first);
                    let mut got = [0f32; 4];
                    kernel.dot_rows(&m, first, count, &blocks, &mut got);
                    for (r, got) in got.iter().enumerate().take(count) {
                        let row = m.row(first + r);
                        let want = reference::dot(m.format(), row, &blocks);
                        // Both sum the same integers; only the order of the f32 additions differs.
                        let blocks = row.chunks(m.format().block_bytes()).zip(&blocks);
                        let scale: f32 = blocks.map(|(b, x)| reference::block_dot(m.format(), b, x).abs()).sum();
                        let err = (got - want).abs();
                        let at = format!("{kernel:?} {dtype:?} [{rows}, {cols}] row {}", first + r);
                        assert!(err <= 1e-5 * scale.max(1.0), "{at}: {got} vs {want}");
                    }
                }
            }
        }
    }
}

/// Several input rows at once equal each row alone, and the product is close to the dense one
/// and to candle's quantized matmul (which also quantizes its inputs to 8 bits).
#[test]
fn matmul_matches_dense_and_candle() {
    let dev = Device::Cpu;
    for dtype in FORMATS {
        let (rows, cols, m) = (37, 256, 5);
        let (q, w) = random(dtype, rows, cols, 11);
        let x = inputs(m, cols, 12);
        let mut y = vec![0f32; m * rows];
        w.matmul(&x, m, &mut y).unwrap();
        for i in 0..m {
            let mut one = vec![0f32; rows];
            w.matmul(&x[i * cols..(i + 1) * cols], 1, &mut one).unwrap();
            assert_eq!(one, y[i * rows..(i + 1) * rows], "{dtype:?} row {i}");
        }
        let xt = Tensor::from_vec(x.clone(), (m, cols), &dev).unwrap();
        let dense = xt.matmul(&q.dequantize(&dev).unwrap().t().unwrap()).unwrap().flatten_all().unwrap();
        let dense: Vec<f32> = dense.to_vec1().unwrap();
        let candle: Vec<f32> =
            QMatMul::from_qtensor(q).unwrap().forward(&xt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let scale = dense.iter().fold(0f32, |a, v| a.max(v.abs()));
        for ((got, want), peer) in y.iter().zip(&dense).zip(&candle) {
            // 8-bit inputs: errors of about 1% of the output scale (a wrong layout is ~100%).
            assert!((got - want).abs() < 0.02 * scale, "{dtype:?}: {got} vs dense {want}");
            assert!((got - peer).abs() < 0.02 * scale, "{dtype:?}: {got} vs candle {peer}");
        }
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let (_, w) = random(GgmlDType::Q4_1, 4, 64, 5);
    let mut y = vec![0f32; 4];
    let err = w.matmul(&[0f32; 63], 1, &mut y).unwrap_err().to_string();
    assert!(err.contains("63") && err.contains("[4, 64]"), "{err}");
    let err = BlockMatrix::new(BlockFormat::Q8_0, 2, 32, vec![0; 67]).unwrap_err().to_string();
    assert!(err.contains("68 bytes") && err.contains("67"), "{err}");
    assert!(BlockMatrix::new(BlockFormat::Q4_0, 1, 48, vec![]).is_err());
    let k = QTensor::quantize(&Tensor::zeros((2, 256), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::Q4K)
        .unwrap();
    assert!(BlockMatrix::from_qtensor(&k).unwrap().is_none(), "k-quants are left to candle");
}

/// Every kernel with f32 inputs against the f32 reference, on row counts around the four-row
/// unrolling and several lengths.
#[test]
fn f32_input_kernels_equal_the_reference() {
    let mut kernels = vec![Kernel::Reference];
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            kernels.push(Kernel::Avx2);
        }
        if avx2::available() && avx2::vnni_available() {
            kernels.push(Kernel::Avx512Vnni);
        }
    }
    for kernel in kernels {
        for dtype in FORMATS {
            for (rows, cols) in [(1, 32), (3, 64), (4, 96), (7, 576), (9, 1536)] {
                let (_, m) = random(dtype, rows, cols, 100 + rows as u64);
                let x = inputs(1, cols, 7 * cols as u64);
                for first in (0..rows).step_by(4) {
                    let count = 4.min(rows - first);
                    let mut got = [0f32; 4];
                    kernel.dot_rows_f32(&m, first, count, &x, &mut got);
                    for (r, got) in got.iter().enumerate().take(count) {
                        let row = m.row(first + r);
                        let want = reference::dot_f32(m.format(), row, &x);
                        let w = m.dequantize();
                        let scale: f32 =
                            w[(first + r) * cols..][..cols].iter().zip(&x).map(|(w, x)| (w * x).abs()).sum();
                        let at = format!("{kernel:?} {dtype:?} [{rows}, {cols}] row {}", first + r);
                        assert!((got - want).abs() <= 1e-5 * scale.max(1.0), "{at}: {got} vs {want}");
                    }
                }
            }
        }
    }
}

/// The f32 reference is the f64 dot product of the dequantized weights and the inputs.
#[test]
fn f32_reference_dot_is_the_dot_of_the_dequantized_weights() {
    for dtype in FORMATS {
        let (_, m) = random(dtype, 3, 128, 21);
        let x = inputs(1, 128, 22);
        let w = m.dequantize();
        for r in 0..3 {
            let want: f64 = w[r * 128..(r + 1) * 128].iter().zip(&x).map(|(w, x)| *w as f64 * *x as f64).sum();
            let got = reference::dot_f32(m.format(), m.row(r), &x) as f64;
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{dtype:?} row {r}: {got} vs {want}");
        }
    }
}

/// With f32 inputs the product equals the dense one up to f32 rounding (no 8-bit input
/// error), and several input rows equal each row alone.
#[test]
fn f32_input_matmul_matches_the_dense_product() {
    for dtype in FORMATS {
        let (rows, cols, m) = (37, 256, 5);
        let (_, w) = random(dtype, rows, cols, 31);
        let x = inputs(m, cols, 32);
        let mut y = vec![0f32; m * rows];
        w.matmul_f32(&x, m, &mut y).unwrap();
        let dense = w.dequantize();
        for i in 0..m {
            let mut one = vec![0f32; rows];
            w.matmul_f32(&x[i * cols..(i + 1) * cols], 1, &mut one).unwrap();
            assert_eq!(one, y[i * rows..(i + 1) * rows], "{dtype:?} row {i}");
            for r in 0..rows {
                let terms = dense[r * cols..(r + 1) * cols].iter().zip(&x[i * cols..]);
                let (want, scale) = terms.fold((0f64, 0f64), |(s, a), (w, x)| {
                    (s + *w as f64 * *x as f64, a + (*w as f64 * *x as f64).abs())
                });
                let got = y[i * rows + r] as f64;
                assert!((got - want).abs() < 1e-5 * scale.max(1.0), "{dtype:?} [{i}, {r}]: {got} vs {want}");
            }
        }
    }
    let (_, w) = random(GgmlDType::Q8_0, 4, 64, 5);
    assert!(w.matmul_f32(&[0f32; 63], 1, &mut [0f32; 4]).unwrap_err().to_string().contains("63"));
}

/// Looked-up rows equal the same rows of the whole dequantized matrix; ids past the end are
/// errors, not panics.
#[test]
fn dequantized_rows_equal_the_dequantized_matrix() {
    for dtype in FORMATS {
        let (rows, cols) = (11, 96);
        let (_, w) = random(dtype, rows, cols, 41);
        let dense = w.dequantize();
        let ids = [3u32, 0, 10, 3];
        let mut out = vec![0f32; ids.len() * cols];
        w.dequantize_rows(&ids, &mut out).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let id = *id as usize;
            assert_eq!(out[i * cols..(i + 1) * cols], dense[id * cols..(id + 1) * cols], "{dtype:?} id {id}");
        }
        assert_eq!(w.dequantize_range(2, 5).unwrap(), dense[2 * cols..7 * cols]);
        assert!(w.dequantize_range(8, 4).is_err());
        let err = w.dequantize_rows(&[11], &mut vec![0f32; cols]).unwrap_err().to_string();
        assert!(err.contains("11") && err.contains("11 rows"), "{err}");
        assert!(w.dequantize_rows(&[1], &mut vec![0f32; cols - 1]).is_err());
    }
}
