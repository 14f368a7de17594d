//! `tcat bench`: time and peak memory of blocks against sequence length.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::{Args, Subcommand};
use tcat_bench::{
    DecodeLayer, Inputs, Shape, Variant, decode_table, latent_dims, measure, measure_decoding, memory, parse_lengths,
    report, roofline, svg,
};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time attention variants on random q, k, v: a table of median time, peak memory and ratio
    /// to dense per sequence length, and optionally an SVG plot.
    Attention(AttentionArgs),
    /// Time whole models on fixed workloads (BERT-base, GPT-2 and SmolLM2 decoding, T5, MoE):
    /// median time, tokens/s and peak memory, the numbers compared with PyTorch and llama.cpp.
    Models(crate::bench_models::ModelsArgs),
}

#[derive(Args)]
pub struct AttentionArgs {
    /// Comma-separated variants: dense, dense-bidirectional, sliding:W, fused, fused-sliding:W,
    /// gqa:G, strided:L, fixed:L, bigbird, dalle-row, dalle-column, dalle-conv, linear,
    /// candle-flash.
    #[arg(long, default_value = "dense,sliding:256")]
    variants: String,
    /// Comma-separated sequence lengths (queries and keys).
    #[arg(long, default_value = "512,2048", allow_negative_numbers = true)]
    seq: String,
    /// Batch rows.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    batch: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true)]
    heads: usize,
    /// Width of one head.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    head_dim: usize,
    /// Timed runs per variant and length, after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    repeats: usize,
    /// Write a plot of median time against sequence length (log-log) to this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Print one JSON object per measurement instead of the table.
    #[arg(long)]
    json: bool,
    /// Instead of the variants, decode single tokens after contexts of the --seq lengths with
    /// multi-head latent attention (DeepSeek-V2) beside standard attention of the same width
    /// (--heads × --head-dim), printing the cache bytes per token and tokens/s of each.
    #[arg(long)]
    decode: bool,
    /// Timed single-token steps per layer and context with --decode.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    steps: usize,
}

pub fn run(command: BenchCommand, device: &Device, dtype: Option<DType>) -> Result<()> {
    match command {
        BenchCommand::Attention(args) => attention(args, device, dtype.unwrap_or(DType::F32)),
        BenchCommand::Models(args) => {
            if let Some(dtype) = dtype {
                anyhow::bail!(
                    "--dtype {}: bench models fixes each workload's dtype (f32, or the GGUF's quantization); drop --dtype",
                    dtype.as_str()
                );
            }
            crate::bench_models::run(args, device)
        }
    }
}

fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

/// Refuses a shape whose q, k and v cannot be counted in `usize` or would not fit in the
/// memory available (CPU; judged before anything is allocated).
fn check_inputs(shape: Shape, dtype: DType, device: &Device) -> Result<()> {
    let Shape { batch, heads, seq, head_dim } = shape;
    let product = format!("--batch {batch} × --heads {heads} × --seq {seq} × --head-dim {head_dim}");
    // q, k and v in `dtype`, plus the f32 draw each is converted from.
    let bytes = shape.input_elements().and_then(|n| n.checked_mul(3 * dtype.size_in_bytes() + 4));
    let Some(bytes) = bytes else {
        anyhow::bail!("{product}: the inputs q, k and v would exceed the address space; expected smaller sizes");
    };
    if device.is_cpu()
        && let Some(available) = memory::available_bytes()
        && bytes > available
    {
        anyhow::bail!(
            "{product}: the inputs q, k and v alone would need about {} and {} is available; expected smaller sizes",
            report::format_bytes(bytes),
            report::format_bytes(available)
        );
    }
    Ok(())
}

/// `--decode`: MLA beside MHA, decoding after each context length.
fn decoding(args: &AttentionArgs, device: &Device, dtype: DType) -> Result<()> {
    let contexts = parse_lengths(&args.seq).context("--seq")?;
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1, found 0");
    let mut rows = Vec::new();
    for &context in &contexts {
        let shape =
            Shape { batch: args.batch, heads: args.heads, seq: context + args.steps + 1, head_dim: args.head_dim };
        check_inputs(shape, dtype, device)?;
        for layer in [DecodeLayer::Standard, DecodeLayer::Latent] {
            if !args.json {
                eprintln!("decoding with {} after {context} tokens ...", layer.name());
            }
            rows.push(
                measure_decoding(layer, args.batch, args.heads, args.head_dim, context, args.steps, dtype, device)
                    .with_context(|| format!("{} decoding after {context} tokens", layer.name()))?,
            );
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        for r in &rows {
            let row = serde_json::json!({
                "layer": r.layer.name(),
                "context": r.context,
                "cache_bytes_per_token": r.cache_bytes_per_token,
                "step_seconds": r.step.as_secs_f64(),
                "tokens_per_second": r.tokens_per_second,
                "device": device_name(device),
            });
            writeln!(out, "{row}")?;
        }
    } else {
        let d = latent_dims(args.heads, args.head_dim);
        writeln!(
            out,
            "decoding one layer, batch {}, {} heads × {} ({}), {}, {}; mla: latent {} + rotary key {}, median of {} steps",
            args.batch,
            args.heads,
            args.head_dim,
            args.heads * args.head_dim,
            dtype.as_str(),
            device_name(device),
            d.rank,
            d.rope_dim,
            args.steps
        )?;
        write!(out, "{}", decode_table(&rows))?;
    }
    Ok(())
}

fn attention(args: AttentionArgs, device: &Device, dtype: DType) -> Result<()> {
    for (flag, value) in [("--batch", args.batch), ("--heads", args.heads), ("--head-dim", args.head_dim)] {
        anyhow::ensure!(value > 0, "{flag} must be at least 1, found 0");
    }
    if args.decode {
        return decoding(&args, device, dtype);
    }
    let variants = Variant::parse_list(&args.variants).context("--variants")?;
    for variant in &variants {
        // gqa:G needs G to divide the heads: refused before anything runs.
        variant.kv_heads(args.heads).context("--variants")?;
    }
    let seqs = parse_lengths(&args.seq).context("--seq")?;
    for (flag, value) in [("--batch", args.batch), ("--heads", args.heads), ("--head-dim", args.head_dim)] {
        anyhow::ensure!(value > 0, "{flag} must be at least 1, found 0");
    }
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1, found 0");
    let setup = format!(
        "batch {}, heads {}, head_dim {}, {}, {}",
        args.batch,
        args.heads,
        args.head_dim,
        dtype.as_str(),
        device_name(device)
    );

    if let Some(path) = &args.svg {
        crate::output::check_writable("--svg", path)?;
    }

    // Every size is checked and every run that would not fit is found before anything is
    // allocated; nothing to run at all is an error.
    let mut plan = Vec::new();
    let mut skipped = Vec::new();
    for &seq in &seqs {
        let shape = Shape { batch: args.batch, heads: args.heads, seq, head_dim: args.head_dim };
        check_inputs(shape, dtype, device)?;
        let mut runnable = Vec::new();
        for &variant in &variants {
            match memory::skip_reason(variant, shape, device) {
                Some(why) => skipped.push(why),
                None => runnable.push(variant),
            }
        }
        if !runnable.is_empty() {
            plan.push((shape, runnable));
        }
    }
    if plan.is_empty() {
        anyhow::bail!("nothing can run: {}", skipped.join("; "));
    }
    for why in &skipped {
        eprintln!("{why}");
    }

    let mut rows = Vec::new();
    for (shape, runnable) in plan {
        let seq = shape.seq;
        let inputs = Inputs::random(shape, dtype, device).with_context(|| format!("random inputs of {shape:?}"))?;
        for variant in runnable {
            if !args.json {
                eprintln!("running {variant} at seq {seq} ...");
            }
            rows.push(measure(variant, &inputs, args.repeats).with_context(|| format!("{variant} at seq {seq}"))?);
        }
    }

    // The yardstick of the GFLOP/s column: the same device's f32 matrix product.
    if !args.json {
        eprintln!("running an f32 matmul of {side} × {side} ...", side = roofline::MATMUL_SIDE);
    }
    let matmul = roofline::matmul_gflops(device, DType::F32, roofline::MATMUL_SIDE, args.repeats)
        .context("timing the f32 matmul the GFLOP/s are compared with")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for mut row in report::json_rows(&rows) {
            row["device"] = device_name(device).into();
            row["matmul_gflops"] = matmul.into();
            writeln!(out, "{row}")?;
        }
    } else {
        writeln!(out, "attention, {setup}; median of {} runs after a warm-up", args.repeats)?;
        writeln!(
            out,
            "f32 matmul {side} × {side} × {side} on the same device: {matmul:.1} GFLOP/s (× matmul: a row's share of it)",
            side = roofline::MATMUL_SIDE
        )?;
        write!(out, "{}", report::table(&rows, Some(matmul)))?;
        if rows.iter().any(|m| m.peak_bytes.is_some()) {
            writeln!(out, "peak memory: heap bytes allocated above the inputs during one run, output included")?;
        }
        if rows.iter().any(|m| report::gflops(m).is_some()) {
            writeln!(
                out,
                "GFLOP/s: 4 × head_dim flops per visible query-key pair and head (q·k and p·v) over the median"
            )?;
        }
    }
    if let Some(path) = &args.svg {
        let plot = svg::plot(&rows, &format!("attention: median time vs sequence length ({setup})"));
        crate::output::write_bytes("--svg", path, plot.as_bytes())?;
        if !args.json {
            writeln!(out, "plot written to {}", path.display())?;
        }
    }
    Ok(())
}
