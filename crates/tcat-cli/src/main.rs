//! `tcat`: run the Transformer catalog's models from the command line.
//!
//! Commands: `forward` (hidden states or logits to a safetensors file), `embed` (sentence
//! embeddings), `fill-mask` (masked-LM predictions) and `generate` (text continuation with the
//! KV cache), `bench attention` (attention variants timed against sequence length), `bench
//! models` (whole models on fixed workloads, beside PyTorch and llama.cpp) and `catalog` (every
//! catalogued model, its size and status). Every model command takes `--model` as a folder,
//! file, hub id or `preset:NAME`, and `--device` and `--dtype`.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

mod bench;
mod bench_models;
mod catalog;
mod commands;
mod output;

// mimalloc (built without its own huge-page advice), with transparent huge pages advised on
// large blocks only (`tcat_bench::huge_pages`), wrapped to count live and peak heap bytes for
// `tcat bench` (two relaxed atomic updates per allocation).
#[global_allocator]
static GLOBAL: tcat_bench::memory::CountingAllocator<tcat_bench::huge_pages::HugePages<mimalloc::MiMalloc>> =
    tcat_bench::memory::CountingAllocator::new(tcat_bench::huge_pages::HugePages::new(mimalloc::MiMalloc));

/// The Transformer catalog made executable.
#[derive(Parser)]
#[command(name = "tcat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    runtime: Runtime,
}

/// Where and in what precision models run.
#[derive(Args, Clone)]
pub struct Runtime {
    /// Device: cpu, cuda, cuda:N or metal.
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
    /// Weight and activation dtype: f32, f16 or bf16 [default: f32; GGUF files stay quantized
    /// unless a dtype is given].
    #[arg(long, global = true)]
    pub dtype: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a forward pass and write `hidden_states` or `logits` (f32) plus `attention_mask`.
    Forward(commands::ForwardArgs),
    /// Print sentence embeddings of the given texts.
    Embed(commands::EmbedArgs),
    /// Predict the masked token(s) of a text with a masked-LM head.
    FillMask(commands::FillMaskArgs),
    /// Continue a prompt with a causal language model.
    Generate(commands::GenerateArgs),
    /// Benchmark blocks: time and peak memory against sequence length.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The catalog: every model with its level, kind, parameter count and status.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `tcat bench` alone: the help, then the one error line.
            let _ = err.print();
            eprintln!("error: a subcommand is required (listed above)");
            return std::process::ExitCode::FAILURE;
        }
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("{}", usage_error_line(&err.render().to_string()));
            return std::process::ExitCode::FAILURE;
        }
    };
    // `tcat bench models --threads N` sizes candle's and rayon's pools; every command pins the
    // count candle reads. SAFETY: parsing the command line started no thread; nothing else has
    // run yet.
    if let Command::Bench(bench::BenchCommand::Models(args)) = &cli.command {
        unsafe { bench_models::pin_threads(args.threads) };
    }
    unsafe { tcat_core::pin_cpu_thread_count() };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain of context on one line, without a backtrace: errors here are
            // about the user's input, not tcat's internals.
            eprintln!("error: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The chain of context of `err` on one line, as `{err:#}` prints it, but with only the first
/// line of each part: candle's errors append a backtrace on the following lines when
/// `RUST_BACKTRACE` is set.
fn one_line(err: &anyhow::Error) -> String {
    let parts: Vec<String> = err
        .chain()
        .map(|cause| cause.to_string().lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string())
        .filter(|part| !part.is_empty())
        .collect();
    parts.join(": ")
}

/// clap's message for a bad command line on one line (`error: ...`, the argument names
/// included, the usage and help hints left out), like every other error of the command.
fn usage_error_line(rendered: &str) -> String {
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines.join(" ");
    if line.starts_with("error:") { line } else { format!("error: {line}") }
}

fn run(cli: Cli) -> Result<()> {
    let device = tcat_core::parse_device(&cli.runtime.device)?;
    let dtype = cli.runtime.dtype.as_deref().map(tcat_core::parse_dtype).transpose()?;
    match cli.command {
        Command::Forward(args) => commands::forward(args, &device, dtype),
        Command::Embed(args) => commands::embed(args, &device, dtype),
        Command::FillMask(args) => commands::fill_mask(args, &device, dtype),
        Command::Generate(args) => commands::generate(args, &device, dtype),
        Command::Bench(command) => bench::run(command, &device, dtype),
        Command::Catalog(command) => catalog::run(command),
    }
}

/// Parses `1,2,3` into token ids, naming the flag on error.
pub fn parse_ids(flag: &str, text: &str) -> Result<Vec<u32>> {
    let ids = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().with_context(|| format!("{flag}: `{s}` is not a token id (expected e.g. 1,2,3)")))
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        bail!("{flag}: no token ids in `{text}`");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line_without_backtraces() {
        let err = anyhow::anyhow!("index-select invalid index 9\n   0: candle_core::error::Error::bt\n   1: ...")
            .context("loading model `m`");
        assert_eq!(one_line(&err), "loading model `m`: index-select invalid index 9");
        let rendered = "error: the following required arguments were not provided:\n  --model <MODEL>\n\nUsage: tcat forward\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "error: the following required arguments were not provided: --model <MODEL>"
        );
    }
}
