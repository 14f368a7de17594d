//! Times greedy decoding of a GGUF model (by default the SmolLM2-135M-Instruct file that
//! scripts/fetch_smollm2.sh caches): the median of five runs of 64 tokens after a 16-token
//! prompt, without stopping at EOS, quantized and, with `f32`, dequantized.
//!
//! ```text
//! cargo run --release -p tcat-models --example decode_timing -- [FILE.gguf] [f32]
//! ```

use std::time::Instant;

use candle_core::{DType, Device};
use tcat_models::gguf::GgufFile;
use tcat_models::{GenerationConfig, Sampling, generate};

fn main() -> tcat_core::Result<()> {
    // SAFETY: first thing in `main`, before any thread exists.
    unsafe { tcat_core::pin_cpu_thread_count() };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default =
        format!("{}/.cache/tcat/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", std::env::var("HOME").unwrap_or_default());
    let path = args.iter().find(|a| a.ends_with(".gguf")).cloned().unwrap_or(default);
    let dtype = args.iter().any(|a| a == "f32").then_some(DType::F32);
    let model = GgufFile::open(path.as_ref())?.load_llama(&Device::Cpu, dtype)?;
    let prompt: Vec<u32> = (0..16).map(|i| 100 + 997 * i % model.vocab_size() as u32).collect();
    let config = GenerationConfig {
        max_new_tokens: 64,
        sampling: Sampling::Greedy,
        stop_tokens: Some(vec![]),
        ..Default::default()
    };
    generate(&model, std::slice::from_ref(&prompt), &config, |_, _| {})?; // warm-up
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            generate(&model, std::slice::from_ref(&prompt), &config, |_, _| {}).map(|_| start.elapsed().as_secs_f64())
        })
        .collect::<tcat_core::Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[2];
    println!(
        "{path} ({}): 64 tokens in {median:.3} s median of 5, {:.1} tokens/s",
        if dtype.is_some() { "f32" } else { "quantized" },
        64.0 / median
    );
    Ok(())
}
