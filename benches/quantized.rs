//! tcat's block-quantized matrix-vector kernels beside candle's quantized matmul, in the same
//! process, on the projection shapes of SmolLM2-135M (hidden 576, FFN 1536, vocabulary 49152):
//! one input row (decoding) and four (small batches), for Q4_0, Q4_1 and Q8_0.
//!
//! ```text
//! cargo bench --bench quantized
//! ```

use std::time::Duration;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group};
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
                group
                    .throughput(Throughput::Bytes((out * inp / 32 * dtype.type_size()) as u64))
                    .sample_size(20)
                    .sampling_mode(SamplingMode::Flat)
                    .warm_up_time(Duration::from_millis(500))
                    .measurement_time(Duration::from_secs(2));
                group.bench_function("tcat", |b| b.iter(|| ours.matmul(&xs, rows, &mut y).unwrap()));
                group.bench_function("candle", |b| b.iter(|| theirs.forward(&x).unwrap()));
                group.finish();
            }
        }
    }
}

criterion_group!(benches, bench_quantized);
fn main() {
    // SAFETY: first thing in `main`, before any thread exists. Both sides of every comparison
    // run with it.
    unsafe { tcat::core::pin_cpu_thread_count() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
