//! tcat's block-quantized matrix-vector kernels beside candle's quantized matmul, in the same
//! process, on the projection shapes of SmolLM2-135M (hidden 576, FFN 1536, vocabulary 49152):
//! one input row (decoding) and four (small batches), for Q4_0, Q4_1 and Q8_0.
//!
//! The same shapes with dense f32, f16 and bf16 weights: tcat's GEMV kernels (`tcat::core::gemv`,
//! what `Linear` runs for up to eight input rows) beside candle's matmul on the same weights, for
//! 1, 2, 4, 8 and 16 input rows, and, for the f32 LM head (113 MB, far beyond the caches), a plain
//! parallel read of the same bytes: the memory-bandwidth roof the kernels are measured against.
//!
//! ```text
//! cargo bench --bench quantized
//! cargo bench --bench quantized -- dense_
//! ```

use std::time::Duration;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, measurement::WallTime};
use tcat::core::gemv::{Matrix, Weights};
use tcat::core::quantized::BlockMatrix;

#[global_allocator]
static GLOBAL: tcat_bench::huge_pages::HugePages<mimalloc::MiMalloc> =
    tcat_bench::huge_pages::HugePages::new(mimalloc::MiMalloc);

/// `[out, in]` shapes: the FFN's up projection, its down projection, the tied LM head.
const SHAPES: [(usize, usize); 3] = [(1536, 576), (576, 1536), (49152, 576)];

fn bench_quantized(c: &mut Criterion) {
    let device = Device::Cpu;
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q4_0, GgmlDType::Q8_0] {
        for (out, inp) in SHAPES {
            let w = Tensor::randn(0f32, 1., (out, inp), &device).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let ours = BlockMatrix::from_qtensor(&q).unwrap().expect("supported format");
            let theirs = QMatMul::from_qtensor(q).unwrap();
            for rows in [1usize, 4] {
                let x = Tensor::randn(0f32, 1., (rows, inp), &device).unwrap();
                let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
                let mut y = vec![0f32; rows * out];
                let mut group = c.benchmark_group(format!("{dtype:?}_{out}x{inp}_rows{rows}"));
                configure(&mut group, out * inp / 32 * dtype.type_size());
                group.bench_function("tcat", |b| b.iter(|| ours.matmul(&xs, rows, &mut y).unwrap()));
                group.bench_function("candle", |b| b.iter(|| theirs.forward(&x).unwrap()));
                group.finish();
            }
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, bytes: usize) {
    group
        .throughput(Throughput::Bytes(bytes as u64))
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

/// Dense weights: tcat's GEMV kernels against candle's matmul (`x Wᵀ`, as candle-nn's `Linear`
/// computes it) on the same values.
fn bench_dense(c: &mut Criterion) {
    let device = Device::Cpu;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for (out, inp) in SHAPES {
            let w = Tensor::randn(0f32, 1., (out, inp), &device).unwrap().to_dtype(dtype).unwrap();
            let (f32s, f16s, bf16s) = match dtype {
                DType::F32 => (w.flatten_all().unwrap().to_vec1().unwrap(), vec![], vec![]),
                DType::F16 => (vec![], w.flatten_all().unwrap().to_vec1().unwrap(), vec![]),
                _ => (vec![], vec![], w.flatten_all().unwrap().to_vec1().unwrap()),
            };
            let weights = match dtype {
                DType::F32 => Weights::F32(&f32s),
                DType::F16 => Weights::F16(&f16s),
                _ => Weights::BF16(&bf16s),
            };
            let ours = Matrix::new(weights, out, inp).unwrap();
            let wt = w.t().unwrap();
            for rows in [1usize, 2, 4, 8, 16] {
                let x = Tensor::randn(0f32, 1., (rows, inp), &device).unwrap();
                let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
                let x = x.to_dtype(dtype).unwrap();
                let mut y = vec![0f32; rows * out];
                let mut group = c.benchmark_group(format!("dense_{dtype:?}_{out}x{inp}_rows{rows}"));
                configure(&mut group, out * inp * dtype.size_in_bytes());
                group.bench_function("tcat_gemv", |b| b.iter(|| ours.gemv(&xs, rows, &mut y).unwrap()));
                group.bench_function("candle_matmul", |b| b.iter(|| x.matmul(&wt).unwrap()));
                if dtype == DType::F32 && out * inp > 16 << 20 && rows == 1 {
                    group.bench_function("read_roof", |b| b.iter(|| parallel_sum(&f32s)));
                }
                group.finish();
            }
        }
    }
}

/// The sum of `values`, split among candle's thread count: a plain read of every byte once,
/// the memory-bandwidth roof of a matrix-vector product with one input row.
fn parallel_sum(values: &[f32]) -> f32 {
    let threads = candle_core::utils::get_num_threads().max(1);
    let part = values.len().div_ceil(threads);
    std::thread::scope(|s| {
        let sums: Vec<_> = values
            .chunks(part)
            .map(|chunk| {
                s.spawn(move || {
                    // Sixteen independent lanes, which the compiler keeps in vector registers.
                    let mut lanes = [0f32; 16];
                    for block in chunk.chunks_exact(16) {
                        for (l, v) in lanes.iter_mut().zip(block) {
                            *l += v;
                        }
                    }
                    lanes.iter().sum::<f32>() + chunk.chunks_exact(16).remainder().iter().sum::<f32>()
                })
            })
            .collect();
        sums.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

criterion_group!(benches, bench_quantized, bench_dense);
fn main() {
    // SAFETY: first thing in `main`, before any thread exists. Both sides of every comparison
    // run with it.
    unsafe { tcat::core::pin_cpu_thread_count() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
