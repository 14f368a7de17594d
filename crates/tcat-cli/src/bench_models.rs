//! `tcat bench models`: whole models timed on fixed workloads, the numbers the README's
//! benchmark table compares with PyTorch (`benches/pytorch_peer.py`) and llama.cpp
//! (`benches/llama_cpp_peer.sh`).
//!
//! Tools outside the repository read this command's output, so its contract is fixed:
//! `tcat bench models [--workloads LIST] [--smollm2 GGUF] [--threads N] [--repeats R] [--json]`
//! runs each workload once to warm up and then `R` times (default 5), and reports the median.
//! With `--json` it prints exactly one JSON object per line and workload:
//! `{"workload": NAME, "median_s": F64, "tokens_per_s": F64, "threads": N, "peak_rss_mib": F64}`,
//! `tokens_per_s` only where it applies (decoding: the timed generated tokens over the time of
//! the generation part; prefill: the prompt tokens over the time of the prompt's forward).
//!
//! The workloads (random weights are seeded, normal with standard deviation 0.02):
//! - `bert-base`: BERT-base (the catalog's spec), forward of 8 × 128 random token ids, last
//!   hidden states and pooler, as transformers' `BertModel` computes them;
//! - `gpt2-decode`: GPT-2 124M; the forward of a 16-token prompt picks the first token, then
//!   64 greedy tokens, one single-token step each with the KV cache, are the generation part;
//! - `smollm2-q4_1-decode`: tg64 as llama-bench counts it: 64 greedy single-token steps from an
//!   empty context (a start token at position 0), the GGUF's projections kept quantized;
//! - `smollm2-q4_1-prefill`: pp128, the forward of a 128-token random prompt (logits of the last
//!   position, as llama-bench asks for);
//! - `smollm2-f32-decode`, `smollm2-f16-decode`, `smollm2-bf16-decode`: tg64 on the same GGUF
//!   dequantized to f32, f16 or bf16 (weights and activations in that dtype);
//! - `t5-base-generate`: T5-base (v1.0) shapes; the 16-token prompt is encoded, then 64 greedy
//!   decoder steps from the decoder start token are the generation part;
//! - `moe-decode`: a Mixtral-shaped decoder (hidden 1024, 4 layers, 16 query heads sharing 4
//!   key/value heads, 8 SwiGLU experts of 3584 with top-2 routing, vocabulary 32000), decoded as
//!   `gpt2-decode`;
//! - `moe-dense-decode`: the same decoder with a dense SwiGLU feed-forward of 2 × 3584, the same
//!   active parameters per token, so the difference is the MoE's routing and dispatch cost;
//! - `vit-base`: ViT-B/16 (the catalog's spec with the pooler of transformers' `ViTModel` in
//!   place of the classifier), forward of 8 random 224 × 224 RGB images: last hidden states
//!   `[8, 197, 768]` and the pooler;
//! - `qwen3-decode`: Qwen3-0.6B's shapes (28 layers, 1024 wide, 16 query heads of 128 sharing 8
//!   key/value heads, per-head query/key norms, SwiGLU of 3072, vocabulary 151936, tied head),
//!   decoded as `gpt2-decode`;
//! - `gemma3-decode`: Gemma 3 270M's shapes (18 layers, 640 wide, 4 query heads of 256 sharing
//!   one key/value head, five 512-token sliding-window layers per global one, GeGLU of 2048,
//!   vocabulary 262144, tied head), decoded as `gpt2-decode`;
//! - `deepseek-v2-decode`: DeepSeek-V2-Lite's layer shapes (2048 wide, 16 heads, multi-head
//!   latent attention with a 512-wide key/value latent, the first layer dense (10944), then
//!   routed SwiGLU experts of 1408, 6 per token, and 2 shared, vocabulary 102400) at 4 layers
//!   and 16 routed experts, decoded as `gpt2-decode` (the latent cache and the absorbed
//!   decoding path);
//! - `modernbert-base`: ModernBERT-base (the catalog's spec without its MLM head), forward of
//!   8 × 128 random token ids: last hidden states.
//!
//! The `smollm2-*` workloads need the GGUF (`--smollm2`, else `TCAT_SMOLLM2`, as
//! `scripts/fetch_smollm2.sh` provides); without it the default list skips them with a note on
//! stderr. `--threads N` fixes the worker threads of candle and of tcat's kernels (the rayon
//! pool, `RAYON_NUM_THREADS`; set by `main` before any thread starts); the default is every
//! core. `peak_rss_mib` is the process's peak resident memory (`VmHWM`) while the workload was
//! built and run: Linux lets a process reset that mark (`5` into `/proc/self/clear_refs`),
//! which is done before each workload; where the reset is refused the number is the running
//! peak of the whole process so far, and a note on stderr says so.
//!
//! Decoding reads every weight once per token, so its roof is the memory bandwidth: after the
//! workloads, the command measures a streaming read of 512 MiB with the same threads
//! ([`tcat_bench::roofline::read_bandwidth`]) and shows, for each decoding workload, the bytes
//! of weights one step reads (active parameters × bytes per parameter; a GGUF's tensor bytes as
//! stored) times its tokens/s, and that rate's share of the roof: as two columns of the table,
//! and with `--json` as notes on stderr (stdout keeps the contract's lines).
//!
//! For the command's own tests, `TCAT_BENCH_TINY=1` shrinks every random-weight workload to the
//! catalog's tiny size of the same architecture (`tcat_catalog::tiny`); the sequence lengths
//! stay.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Device, Tensor};
use clap::Args;
use tcat_attention::AttentionMask;
use tcat_models::spec::{ArchSpec, Stacks, TowerSpec};
use tcat_models::{Batch, DecoderModel, Model, ModelSource};

/// Every workload, in the order they run.
pub const WORKLOADS: [&str; 15] = [
    "bert-base",
    "gpt2-decode",
    "smollm2-q4_1-decode",
    "smollm2-q4_1-prefill",
    "smollm2-f32-decode",
    "smollm2-f16-decode",
    "smollm2-bf16-decode",
    "t5-base-generate",
    "moe-decode",
    "moe-dense-decode",
    "vit-base",
    "qwen3-decode",
    "gemma3-decode",
    "deepseek-v2-decode",
    "modernbert-base",
];

/// Tokens of the decoding workloads' prompts.
const PROMPT_TOKENS: usize = 16;
/// Tokens generated in the timed generation part of every decoding workload.
const NEW_TOKENS: usize = 64;
/// Tokens of the prefill workload's prompt (llama-bench's pp128).
const PREFILL_TOKENS: usize = 128;
/// BERT batch: rows × tokens.
const BERT_ROWS: usize = 8;
const BERT_TOKENS: usize = 128;
/// ViT batch: images of `VIT_IMAGE` pixels square (ViT-B/16's).
const VIT_IMAGES: usize = 8;
/// Most threads `--threads` accepts.
pub const MAX_THREADS: usize = 1024;

#[derive(Args)]
pub struct ModelsArgs {
    /// Comma-separated workloads: bert-base, gpt2-decode, smollm2-q4_1-decode,
    /// smollm2-q4_1-prefill, smollm2-f32-decode, smollm2-f16-decode, smollm2-bf16-decode,
    /// t5-base-generate, moe-decode, moe-dense-decode,
    /// vit-base, qwen3-decode, gemma3-decode, deepseek-v2-decode, modernbert-base [default: all
    /// whose inputs exist].
    #[arg(long)]
    pub workloads: Option<String>,
    /// The SmolLM2-135M Q4_1 GGUF file for the smollm2-* workloads [default: $TCAT_SMOLLM2].
    #[arg(long)]
    pub smollm2: Option<PathBuf>,
    /// Worker threads (candle's matmuls and tcat's kernels) [default: every core].
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Timed runs per workload, after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    pub repeats: usize,
    /// Print one JSON object per workload and line instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The thread count `tcat bench models` runs with: `--threads`, else `RAYON_NUM_THREADS` when
/// set to a positive number, else every core. Errors name the flag.
pub fn thread_count(threads: Option<usize>) -> Result<usize> {
    match threads {
        Some(0) => bail!("--threads must be at least 1, found 0"),
        Some(n) if n > MAX_THREADS => bail!("--threads {n}: at most {MAX_THREADS} threads are supported"),
        Some(n) => Ok(n),
        None => Ok(std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))),
    }
}

/// Sets `RAYON_NUM_THREADS` to the bench's thread count, which candle reads for its matmuls
/// and rayon for its global pool.
///
/// # Safety
/// As [`std::env::set_var`]: no other thread may exist yet.
pub unsafe fn pin_threads(threads: Option<usize>) {
    if let Ok(n) = thread_count(threads) {
        // SAFETY: the caller guarantees the process is still single-threaded.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}

/// One workload's result.
struct Measurement {
    workload: &'static str,
    median_s: f64,
    tokens_per_s: Option<f64>,
    threads: usize,
    peak_rss_mib: Option<f64>,
    params: u64,
    /// Bytes of weights one decoding step reads, where the workload decodes.
    bytes_per_token: Option<u64>,
}

/// A workload ready to run: its model's parameter count, the bytes of weights one decoding
/// step reads (decoding workloads), and a closure doing one run.
struct Prepared {
    params: u64,
    bytes_per_token: Option<u64>,
    runner: Runner<'static>,
}

impl Prepared {
    /// A workload that does not decode.
    fn other(params: u64, runner: Runner<'static>) -> Self {
        Self { params, bytes_per_token: None, runner }
    }
}

/// What one timed run measured: the whole run, and for token workloads the tokens counted and
/// the time of the part they are counted over.
struct Run {
    total: Duration,
    counted: Option<(usize, Duration)>,
}

pub fn run(args: ModelsArgs, device: &Device) -> Result<()> {
    let threads = thread_count(args.threads)?;
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1, found 0");
    let gguf = args.smollm2.clone().or_else(|| std::env::var_os("TCAT_SMOLLM2").map(PathBuf::from));
    let workloads: Vec<&'static str> = match &args.workloads {
        Some(list) => {
            let mut chosen = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some(&known) = WORKLOADS.iter().find(|w| **w == name) else {
                    bail!("--workloads: unknown workload `{name}`; expected one of {}", WORKLOADS.join(", "));
                };
                if !chosen.contains(&known) {
                    chosen.push(known);
                }
            }
            if chosen.is_empty() {
                bail!("--workloads: no workload in `{list}`; expected one of {}", WORKLOADS.join(", "));
            }
            if chosen.iter().any(|w| w.starts_with("smollm2")) {
                match &gguf {
                    None => bail!(
                        "--workloads: the smollm2-* workloads need the SmolLM2 GGUF: give --smollm2 FILE or set \
                         TCAT_SMOLLM2 (scripts/fetch_smollm2.sh prints its path)"
                    ),
                    Some(path) if !path.is_file() => {
                        bail!("--smollm2 {}: no such file", path.display())
                    }
                    Some(_) => {}
                }
            }
            chosen
        }
        None => match &gguf {
            Some(path) if !path.is_file() => bail!("--smollm2 {}: no such file", path.display()),
            Some(_) => WORKLOADS.to_vec(),
            None => {
                eprintln!(
                    "note: skipping the smollm2-* workloads: no GGUF (give --smollm2 FILE or set TCAT_SMOLLM2; \
                     scripts/fetch_smollm2.sh fetches it)"
                );
                WORKLOADS.iter().copied().filter(|w| !w.starts_with("smollm2")).collect()
            }
        },
    };
    // The pool `main` sized through RAYON_NUM_THREADS; built now so the count is known.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    let threads = rayon::current_num_threads();
    let tiny = std::env::var("TCAT_BENCH_TINY").is_ok_and(|v| !v.is_empty() && v != "0");

    let mut out = std::io::stdout().lock();
    let mut rows = Vec::new();
    let mut running_peak_noted = false;
    for workload in workloads {
        release_freed_memory();
        let reset = reset_peak_rss();
        if !reset && !running_peak_noted {
            eprintln!("note: the peak memory mark cannot be reset here: peak_rss_mib is the process's running peak");
            running_peak_noted = true;
        }
        if !args.json {
            eprintln!("running {workload} ...");
        }
        let Prepared { params, bytes_per_token, mut runner } =
            prepare(workload, gguf.as_deref(), tiny, device).with_context(|| format!("workload {workload}"))?;
        let mut runs = Vec::with_capacity(args.repeats);
        for i in 0..=args.repeats {
            let run = runner().with_context(|| format!("workload {workload}"))?;
            if i > 0 {
                runs.push(run);
            }
        }
        drop(runner);
        let median_s = median(runs.iter().map(|r| r.total.as_secs_f64()).collect());
        let tokens_per_s = runs.first().and_then(|r| r.counted).map(|(tokens, _)| {
            let seconds = median(runs.iter().filter_map(|r| r.counted).map(|(_, d)| d.as_secs_f64()).collect());
            tokens as f64 / seconds
        });
        let row = Measurement {
            workload,
            median_s,
            tokens_per_s,
            threads,
            peak_rss_mib: peak_rss_mib(),
            params,
            bytes_per_token,
        };
        if args.json {
            // One line per workload as soon as it is measured.
            writeln!(out, "{}", json_line(&row))?;
            out.flush()?;
        }
        rows.push(row);
    }
    // The decoding roof, measured after the workloads so that its buffer is in no peak.
    let roof = match rows.iter().any(|m| m.bytes_per_token.is_some()) && device.is_cpu() {
        true => {
            release_freed_memory();
            if !args.json {
                eprintln!("measuring the memory read roof ...");
            }
            // The tiny workloads of the command's tests read a smaller buffer.
            let bytes = if tiny { 32 << 20 } else { tcat_bench::roofline::READ_BYTES };
            Some(tcat_bench::roofline::read_bandwidth(bytes, args.repeats))
        }
        false => None,
    };
    if args.json {
        if let Some(roof) = roof {
            eprintln!("note: memory read roof {roof:.1} GB/s ({threads} threads, a streaming read of 512 MiB)");
            for m in &rows {
                if let Some(rate) = streamed_gb_per_s(m) {
                    eprintln!(
                        "note: {} reads {:.3} MB of weights per token: {rate:.3} GB/s, {:.2} of the roof",
                        m.workload,
                        m.bytes_per_token.unwrap_or(0) as f64 / 1e6,
                        rate / roof
                    );
                }
            }
        }
    } else {
        write!(out, "{}", table(&rows, args.repeats, device, roof))?;
    }
    Ok(())
}

/// GB/s of weights a decoding workload streams: bytes per token × tokens/s.
fn streamed_gb_per_s(m: &Measurement) -> Option<f64> {
    Some(m.bytes_per_token? as f64 * m.tokens_per_s? / 1e9)
}

/// The contract's line: the keys in the documented order, `", "` and `": "` between them.
fn json_line(m: &Measurement) -> String {
    let number = |x: f64| serde_json::Value::from(x).to_string();
    let mut line =
        format!("{{\"workload\": {}, \"median_s\": {}", serde_json::Value::from(m.workload), number(m.median_s));
    if let Some(rate) = m.tokens_per_s {
        line.push_str(&format!(", \"tokens_per_s\": {}", number(rate)));
    }
    line.push_str(&format!(", \"threads\": {}", m.threads));
    let peak = m.peak_rss_mib.map_or("null".to_string(), number);
    line.push_str(&format!(", \"peak_rss_mib\": {peak}}}"));
    line
}

fn table(rows: &[Measurement], repeats: usize, device: &Device, roof: Option<f64>) -> String {
    let device = if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    };
    let threads = rows.first().map_or(0, |r| r.threads);
    let mut s = format!("models, {device}, {threads} threads; median of {repeats} runs after a warm-up\n");
    const COLUMNS: usize = 7;
    let header: [&str; COLUMNS] = ["workload", "params", "median", "tokens/s", "weights GB/s", "× roof", "peak RSS"];
    let cells: Vec<[String; COLUMNS]> = rows
        .iter()
        .map(|m| {
            let rate = streamed_gb_per_s(m);
            [
                m.workload.to_string(),
                human_count(m.params),
                format!("{:.3} s", m.median_s),
                m.tokens_per_s.map_or("-".into(), |r| format!("{r:.1}")),
                rate.map_or("-".into(), |r| format!("{r:.1}")),
                rate.zip(roof).map_or("-".into(), |(r, roof)| format!("{:.2}", r / roof)),
                m.peak_rss_mib.map_or("-".into(), |p| format!("{p:.0} MiB")),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..COLUMNS)
        .map(|i| cells.iter().map(|c| c[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cols: [&str; COLUMNS]| {
        let mut l = format!("{:<w$}", cols[0], w = widths[0]);
        for i in 1..COLUMNS {
            l.push_str(&format!("  {:>w$}", cols[i], w = widths[i]));
        }
        l.push('\n');
        l
    };
    s.push_str(&line(header));
    for c in &cells {
        s.push_str(&line(std::array::from_fn(|i| c[i].as_str())));
    }
    s.push_str(
        "tokens/s: decoding = timed generated tokens / time of the generation part; prefill = prompt tokens / time\n",
    );
    if let Some(roof) = roof {
        s.push_str(&format!(
            "weights GB/s: bytes of weights one decoding step reads × tokens/s; × roof: its share of a streaming \
             read of 512 MiB on the same threads ({roof:.1} GB/s)\n"
        ));
    }
    s
}

fn human_count(n: u64) -> String {
    match n {
        0 => "-".into(),
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Gives the memory freed so far back to the system (mimalloc keeps freed pages for reuse), so
/// that the next workload's resident peak starts from what is really live.
fn release_freed_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; no allocation is in flight here.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Resets the kernel's peak-RSS mark of this process; false where that is not allowed.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `VmHWM` of this process in MiB, where `/proc` has it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// Deterministic token ids in `1..vocab` (an LCG: the workloads' inputs are the same on every
/// run and machine).
fn token_ids(count: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let span = vocab.saturating_sub(1).max(1) as u64;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (1 + (state >> 33) % span) as u32
        })
        .collect()
}

type Runner<'a> = Box<dyn FnMut() -> Result<Run> + 'a>;

/// Builds `workload`'s model: its parameter count, the bytes one decoding step reads, and a
/// closure doing one run.
fn prepare(workload: &str, gguf: Option<&std::path::Path>, tiny: bool, device: &Device) -> Result<Prepared> {
    let sized = |spec: ArchSpec| if tiny { tcat_catalog::tiny(&spec) } else { spec };
    match workload {
        "bert-base" => encoder_workload(sized(catalog_spec("bert")?), Pooling::Pooler, workload, device),
        "modernbert-base" => {
            let mut spec = catalog_spec("modernbert")?;
            // ModernBertModel: the base model, without the MLM head.
            spec.heads.clear();
            encoder_workload(sized(spec), Pooling::None, workload, device)
        }
        "qwen3-decode" => decoder_workload(sized(qwen3_0_6b()?), workload, device),
        "gemma3-decode" => decoder_workload(sized(gemma3_270m()?), workload, device),
        "deepseek-v2-decode" => decoder_workload(sized(deepseek_v2_small()?), workload, device),
        "vit-base" => {
            let mut spec = catalog_spec("vit")?;
            // ViTModel: the pooler, not ViTForImageClassification's classifier.
            spec.heads = vec![tcat_models::spec::HeadSpec::Pooler];
            let spec = sized(spec);
            let model = build(&spec, workload, device)?;
            let Model::Vision(vit) = model else { bail!("the ViT spec built no image encoder") };
            let side = vit.image_size().context("the ViT spec's position table is for no square image")?;
            let count = VIT_IMAGES * vit.channels() * side * side;
            // Deterministic pixel values in [-1, 1), as a preprocessed image holds.
            let values: Vec<f32> = token_ids(count, 2001, 5).into_iter().map(|v| v as f32 / 1000.0 - 1.0).collect();
            let pixels = Tensor::from_vec(values, (VIT_IMAGES, vit.channels(), side, side), device)?;
            let device = device.clone();
            let runner = move || -> Result<Run> {
                let start = Instant::now();
                let hidden = vit.hidden_states(&pixels)?;
                let pooled = vit.pooled(&hidden)?;
                device.synchronize()?;
                drop((hidden, pooled));
                Ok(Run { total: start.elapsed(), counted: None })
            };
            Ok(Prepared::other(spec.param_count().total, Box::new(runner)))
        }
        "gpt2-decode" => decoder_workload(sized(catalog_spec("gpt-2")?), workload, device),
        "moe-decode" => decoder_workload(sized(moe_spec()?), workload, device),
        "moe-dense-decode" => decoder_workload(dense_twin(&sized(moe_spec()?))?, workload, device),
        "t5-base-generate" => {
            let spec = sized(catalog_spec("t5")?);
            let model = build(&spec, workload, device)?;
            let Model::Seq2seq(model) = model else { bail!("the T5 spec built no encoder-decoder") };
            let prompt = token_ids(PROMPT_TOKENS, model.encoder_vocab_size(), 7);
            let runner = move || -> Result<Run> {
                let start = Instant::now();
                let mut decoding = tcat_models::generation::Seq2seqDecoding::new(
                    &model,
                    std::slice::from_ref(&prompt),
                    NEW_TOKENS,
                    1,
                )?;
                let mut input = decoding.start_ids()?;
                let _ = input.to_vec2::<u32>()?;
                let generation = Instant::now();
                for _ in 0..NEW_TOKENS {
                    let logits = decoding.step(&input)?;
                    let next = logits.argmax_keepdim(D::Minus1)?;
                    // The one host copy per step, as generation has: the chosen id.
                    let _ = next.to_vec2::<u32>()?;
                    input = next;
                }
                Ok(Run { total: start.elapsed(), counted: Some((NEW_TOKENS, generation.elapsed())) })
            };
            // Not a decoding roof: the steps also read the encoder's memory, which the
            // parameter count does not show.
            Ok(Prepared::other(spec.param_count().total, Box::new(runner)))
        }
        "smollm2-q4_1-decode"
        | "smollm2-q4_1-prefill"
        | "smollm2-f32-decode"
        | "smollm2-f16-decode"
        | "smollm2-bf16-decode" => {
            let path = gguf.context("the smollm2-* workloads need --smollm2 FILE or TCAT_SMOLLM2")?;
            let source = ModelSource::resolve(&path.display().to_string())
                .with_context(|| format!("--smollm2 {}", path.display()))?;
            let dtype = match workload {
                "smollm2-f32-decode" => Some(DType::F32),
                "smollm2-f16-decode" => Some(DType::F16),
                "smollm2-bf16-decode" => Some(DType::BF16),
                _ => None,
            };
            // The parameter count from the file's own spec (its metadata) and the bytes its
            // tensors hold, read before the model so that this second parse of the metadata is
            // not counted in its peak.
            let file = tcat_models::gguf::GgufFile::open_without_vocabulary(path)?;
            let params = file.spec().map_or(0, |spec| spec.param_count().total);
            let bytes_per_token = match dtype {
                Some(dtype) => params * dtype.size_in_bytes() as u64,
                None => file.tensor_bytes(),
            };
            drop(file);
            let model = Model::load_gguf(&source, device, dtype)
                .with_context(|| format!("loading {}", path.display()))?
                .into_decoder()
                .context("the GGUF file holds no decoder")?;
            if workload.ends_with("prefill") {
                let prompt = token_ids(PREFILL_TOKENS, model.vocab_size(), 11);
                let runner = move || -> Result<Run> {
                    let start = Instant::now();
                    let mut caches = model.new_caches(PREFILL_TOKENS);
                    let logits = step(&model, &prompt, 0, &mut caches)?;
                    let _ = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
                    let total = start.elapsed();
                    Ok(Run { total, counted: Some((PREFILL_TOKENS, total)) })
                };
                Ok(Prepared::other(params, Box::new(runner)))
            } else {
                let runner = move || -> Result<Run> { decode(&model, &[], NEW_TOKENS) };
                Ok(Prepared { params, bytes_per_token: Some(bytes_per_token), runner: Box::new(runner) })
            }
        }
        other => bail!("unknown workload `{other}`"),
    }
}

fn catalog_spec(name: &str) -> Result<ArchSpec> {
    tcat_catalog::find(name)
        .and_then(|entry| entry.arch())
        .with_context(|| format!("the catalog has no architecture for `{name}`"))
}

fn build(spec: &ArchSpec, workload: &str, device: &Device) -> Result<Model> {
    spec.validate().map_err(|e| anyhow::anyhow!("{workload}: invalid spec: {e}"))?;
    Ok(Model::preset(spec, workload, 0, device, DType::F32)?)
}

fn single_tower_mut(spec: &mut ArchSpec) -> Result<&mut TowerSpec> {
    match &mut spec.stacks {
        Stacks::Decoder { tower } => Ok(tower),
        _ => bail!("expected a decoder spec"),
    }
}

/// Mixtral's architecture (the catalog's 8x7B spec) at a size a CPU decodes in seconds:
/// hidden 1024, 4 layers, 16 query heads of 64 sharing 4 key/value heads, 8 SwiGLU experts of
/// 3584 (Mixtral's 3.5 × hidden) with top-2 routing, vocabulary 32000.
fn moe_spec() -> Result<ArchSpec> {
    let mut spec = catalog_spec("mixtral")?;
    let tower = single_tower_mut(&mut spec)?;
    tower.hidden_size = 1024;
    tower.num_layers = 4;
    tower.vocab_size = 32000;
    tower.attention.num_heads = 16;
    tower.attention.num_kv_heads = 4;
    tower.attention.head_dim = 64;
    tower.feed_forward.inner = 3584;
    let experts = tower.feed_forward.experts.as_mut().context("the catalog's Mixtral spec has no experts")?;
    experts.expert_inner = 3584;
    Ok(spec)
}

/// `spec` with every MoE feed-forward replaced by one dense network of the same kind whose inner
/// width is the experts' active width (top-k × expert inner): the same parameters per token.
fn dense_twin(spec: &ArchSpec) -> Result<ArchSpec> {
    let mut dense = spec.clone();
    let tower = single_tower_mut(&mut dense)?;
    let experts = tower.feed_forward.experts.take().context("the MoE spec has no experts")?;
    tower.feed_forward.kind = experts.expert_kind;
    tower.feed_forward.inner = experts.active_experts() * experts.expert_inner;
    Ok(dense)
}

/// Qwen3-0.6B's shapes (`Qwen/Qwen3-0.6B` config) from the catalog's Qwen3 spec: 28 layers,
/// 1024 wide, 16 query heads of 128 sharing 8 key/value heads, SwiGLU of 3072, tied head.
fn qwen3_0_6b() -> Result<ArchSpec> {
    let mut spec = catalog_spec("qwen3")?;
    let tower = single_tower_mut(&mut spec)?;
    tower.hidden_size = 1024;
    tower.num_layers = 28;
    tower.attention.num_heads = 16;
    tower.attention.num_kv_heads = 8;
    tower.feed_forward.inner = 3072;
    spec.heads = vec![tcat_models::spec::HeadSpec::Lm { tied: true, bias: false }];
    Ok(spec)
}

/// Gemma 3 270M's shapes (`google/gemma-3-270m` config) from the catalog's Gemma 3 spec: 18
/// layers, 640 wide, 4 query heads of 256 sharing one key/value head, GeGLU of 2048; the 1B's
/// vocabulary, window, bases and one global layer in six.
fn gemma3_270m() -> Result<ArchSpec> {
    let mut spec = catalog_spec("gemma-3")?;
    let tower = single_tower_mut(&mut spec)?;
    tower.hidden_size = 640;
    tower.num_layers = 18;
    tower.feed_forward.inner = 2048;
    Ok(spec)
}

/// DeepSeek-V2-Lite's layers (the catalog's spec) at 4 layers, the first dense, and 16 routed
/// experts instead of 64: its latent attention and expert widths at a size a CPU decodes in
/// seconds.
fn deepseek_v2_small() -> Result<ArchSpec> {
    let mut spec = catalog_spec("deepseek-v2")?;
    let tower = single_tower_mut(&mut spec)?;
    tower.num_layers = 4;
    let experts = tower.feed_forward.experts.as_mut().context("the catalog's DeepSeek-V2 spec has no experts")?;
    experts.num_experts = 16;
    Ok(spec)
}

/// What an encoder workload computes after the last hidden states.
#[derive(Clone, Copy)]
enum Pooling {
    /// Nothing more (ModernBertModel).
    None,
    /// The tanh pooler on the first token (BertModel).
    Pooler,
}

/// A random-weight encoder: the forward of 8 × 128 random token ids (no padding).
fn encoder_workload(spec: ArchSpec, pooling: Pooling, workload: &str, device: &Device) -> Result<Prepared> {
    let model = build(&spec, workload, device)?;
    let Model::Encoder(encoder) = model else { bail!("{workload}: the spec built no encoder") };
    let rows: Vec<Vec<u32>> = (0..BERT_ROWS).map(|r| token_ids(BERT_TOKENS, encoder.vocab_size(), r as u64)).collect();
    let batch = Batch::right_padded(&rows, None, encoder.pad_token_id(), device)?;
    let device = device.clone();
    let runner = move || -> Result<Run> {
        let start = Instant::now();
        let hidden = encoder.hidden_states(&batch)?;
        let pooled = match pooling {
            Pooling::Pooler => Some(encoder.pooled(&hidden)?),
            Pooling::None => None,
        };
        device.synchronize()?;
        drop((hidden, pooled));
        Ok(Run { total: start.elapsed(), counted: None })
    };
    Ok(Prepared::other(spec.param_count().total, Box::new(runner)))
}

/// A random-weight decoder: a 16-token prompt, then 64 timed greedy tokens. One step reads the
/// active parameters in f32 (a tied table once, as the head; an untied input table is counted
/// whole though a step looks up one row).
fn decoder_workload(spec: ArchSpec, workload: &str, device: &Device) -> Result<Prepared> {
    let model = build(&spec, workload, device)?.into_decoder().context("the spec built no decoder")?;
    let prompt = token_ids(PROMPT_TOKENS, model.vocab_size(), 3);
    let runner = move || -> Result<Run> { decode(&model, &prompt, NEW_TOKENS) };
    let params = spec.param_count();
    let bytes_per_token = Some(params.active * DType::F32.size_in_bytes() as u64);
    Ok(Prepared { params: params.total, bytes_per_token, runner: Box::new(runner) })
}

/// Logits `[1, vocab]` of the last of `ids`, fed at positions `offset..` with the caches.
fn step(model: &DecoderModel, ids: &[u32], offset: usize, caches: &mut [tcat_attention::KvCache]) -> Result<Tensor> {
    let device = model.device();
    let input = Tensor::new(ids, device)?.unsqueeze(0)?;
    let positions = Tensor::arange(offset as u32, (offset + ids.len()) as u32, device)?.unsqueeze(0)?;
    Ok(model.forward_last(&input, &positions, &AttentionMask::causal(), Some(caches))?)
}

/// Greedy decoding with the KV cache. With a prompt, its forward picks the first token and is
/// not counted; then `new_tokens` single-token steps are the generation part. Without one
/// (llama-bench's tg), the steps start from token 1 at position 0.
fn decode(model: &DecoderModel, prompt: &[u32], new_tokens: usize) -> Result<Run> {
    let start = Instant::now();
    let capacity = prompt.len() + new_tokens;
    model.check_length(capacity)?;
    let mut caches = model.new_caches(capacity);
    let mut next = match prompt.is_empty() {
        true => 1.min(model.vocab_size().saturating_sub(1) as u32),
        false => argmax(&step(model, prompt, 0, &mut caches)?)?,
    };
    let generation = Instant::now();
    for i in 0..new_tokens {
        next = argmax(&step(model, &[next], prompt.len() + i, &mut caches)?)?;
    }
    Ok(Run { total: start.elapsed(), counted: Some((new_tokens, generation.elapsed())) })
}

/// The chosen id of `[1, vocab]` logits (the step's one host copy).
fn argmax(logits: &Tensor) -> Result<u32> {
    let ids = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    ids.first().copied().context("empty logits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ids() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let ids = token_ids(1000, 50, 1);
        assert!(ids.iter().all(|&i| (1..50).contains(&i)));
        assert_eq!(ids, token_ids(1000, 50, 1));
        assert_ne!(ids, token_ids(1000, 50, 2));
    }

    #[test]
    fn the_dense_twin_has_the_active_parameters() {
        let moe = moe_spec().unwrap();
        let dense = dense_twin(&moe).unwrap();
        let (m, d) = (moe.param_count(), dense.param_count());
        assert!(m.total > d.total, "{m:?} vs {d:?}");
        // Only the router differs per token: 8 experts × 1024 per layer.
        assert_eq!(m.active - d.active, 4 * 8 * 1024, "{m:?} vs {d:?}");
        let tiny = dense_twin(&tcat_catalog::tiny(&moe)).unwrap();
        tiny.validate().unwrap();
    }

    #[test]
    fn thread_counts() {
        assert!(thread_count(Some(0)).is_err());
        assert!(thread_count(Some(MAX_THREADS + 1)).is_err());
        assert_eq!(thread_count(Some(3)).unwrap(), 3);
        assert!(thread_count(None).unwrap() >= 1);
    }
}
