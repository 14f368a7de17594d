//! Times the fused (tiled, online-softmax) attention against the materialised
//! `scaled_dot_product_attention`, and candle-nn's CPU flash attention where it applies
//! (batch 1, causal, no padding or bias), and reports the peak resident memory.
//!
//! ```text
//! CARGO_TARGET_DIR=target-rel cargo run --profile bench -p tcat-attention --example fused_timing -- [which]
//! ```
//! `which` is `window` (sliding window 256 and one-query decoding at seq 2048/8192), or `all` (default: fused vs sdpa vs candle for seq 512/2048/8192, 8 heads, d 64,
//! causal), `fused16k` or `sdpa16k` (one run at seq 16384, 1 head, d 64, causal; run each in
//! its own process so that VmHWM is the peak of that variant alone).

use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use candle_nn::attention::{AttnMask, flash_attn};
use tcat_attention::{AttentionMask, fused_attention, scaled_dot_product_attention};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.)
}

/// Best of `reps` wall-clock runs, in milliseconds.
fn best_ms(reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let out = f()?;
        std::hint::black_box(out);
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

fn inputs(heads: usize, seq: usize, d: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let dev = Device::Cpu;
    Ok((
        Tensor::randn(0f32, 1., (1, heads, seq, d), &dev)?,
        Tensor::randn(0f32, 1., (1, heads, seq, d), &dev)?,
        Tensor::randn(0f32, 1., (1, heads, seq, d), &dev)?,
    ))
}

fn main() -> Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let (d, mask) = (64, AttentionMask::causal());
    let scale = 1. / (d as f64).sqrt();
    match which.as_str() {
        "fused16k" | "sdpa16k" => {
            let (q, k, v) = inputs(1, 16384, d)?;
            let before = peak_rss_mib();
            let ms = best_ms(1, || {
                if which == "fused16k" {
                    fused_attention(&q, &k, &v, &mask, scale)
                } else {
                    scaled_dot_product_attention(&q, &k, &v, &mask, scale)
                }
            })?;
            println!(
                "{which}: seq 16384, 1 head, d 64, causal: {ms:.0} ms, VmHWM {:.0} MiB (inputs ready: {before:.0} MiB)",
                peak_rss_mib()
            );
        }
        "window" => {
            // Sliding window of 256 keys and single-query decoding, 8 heads, d 64.
            for seq in [2048, 8192] {
                let (q, k, v) = inputs(8, seq, d)?;
                let w = AttentionMask::causal().with_sliding_window(256);
                let fused = best_ms(3, || fused_attention(&q, &k, &v, &w, scale))?;
                let sdpa = best_ms(2, || scaled_dot_product_attention(&q, &k, &v, &w, scale))?;
                println!("window 256, seq {seq:5}: fused {fused:7.1} ms | sdpa {sdpa:7.1} ms");
                let q1 = q.narrow(2, seq - 1, 1)?;
                let fused = best_ms(20, || fused_attention(&q1, &k, &v, &mask, scale))?;
                let sdpa = best_ms(20, || scaled_dot_product_attention(&q1, &k, &v, &mask, scale))?;
                println!("decode 1 query, kv {seq:5}: fused {fused:7.2} ms | sdpa {sdpa:7.2} ms");
            }
        }
        _ => {
            println!(
                "seq   heads d  causal: fused ms | sdpa ms | candle flash_attn ms (incl. transposes) | max|fused-sdpa|"
            );
            for seq in [512, 2048, 8192] {
                let heads = 8;
                let (q, k, v) = inputs(heads, seq, d)?;
                let reps = if seq >= 8192 { 2 } else { 5 };
                let fused = best_ms(reps, || fused_attention(&q, &k, &v, &mask, scale))?;
                let sdpa = best_ms(reps, || scaled_dot_product_attention(&q, &k, &v, &mask, scale))?;
                let candle = best_ms(reps, || {
                    // candle-nn wants [batch, seq, heads, d]; returns [batch, heads, seq, d].
                    let t = |x: &Tensor| x.transpose(1, 2)?.contiguous();
                    flash_attn::<f32>(&t(&q)?, &t(&k)?, &t(&v)?, scale as f32, AttnMask::causal(), None, None)
                })?;
                let a = fused_attention(&q, &k, &v, &mask, scale)?;
                let b = scaled_dot_product_attention(&q, &k, &v, &mask, scale)?;
                let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                println!("{seq:5} {heads:5} {d:2}         {fused:8.1} | {sdpa:7.1} | {candle:8.1} | {diff:.1e}");
            }
            println!("VmHWM {:.0} MiB", peak_rss_mib());
        }
    }
    Ok(())
}
