//! `tcat catalog`: the executable catalog. Every entry of `tcat-catalog` with its spec, its
//! parameter count (from the spec, nothing allocated) and a status computed from what the code
//! can do: a checkpoint family runs when every one of its `model_type`s loads; a preset runs
//! when its tiny instance builds and runs a forward pass; a doc entry runs as the entry it
//! points at.

use std::io::Write;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use clap::Subcommand;
use serde_json::{Value, json};
use tcat_catalog::{Entry, Level};
use tcat_models::{Batch, Model, SUPPORTED_MODEL_TYPES};

/// What `tcat catalog` does.
#[derive(Subcommand)]
pub enum CatalogCommand {
    /// One line per entry (`--json`: one JSON object per line; `--markdown`: docs/catalog.md).
    List {
        /// One JSON object per line.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// The Markdown table of docs/catalog.md.
        #[arg(long)]
        markdown: bool,
    },
    /// One entry with its spec at the paper's size and its parameter counts.
    Show {
        /// Entry name or alias (`gpt-3`, `palm`, `llama`, ...).
        name: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: CatalogCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        CatalogCommand::List { json, markdown } => {
            if markdown {
                write!(out, "{}", markdown_table()?)?;
                return Ok(());
            }
            for entry in tcat_catalog::entries() {
                let row = summary(entry);
                if json {
                    writeln!(out, "{row}")?;
                } else {
                    writeln!(
                        out,
                        "{:<22} {:<7} {:<10} {:>10}  {}{}",
                        entry.name,
                        level(entry.level),
                        row["kind"].as_str().unwrap_or("-"),
                        row["params"].as_u64().map_or("-".into(), human),
                        row["status"].as_str().unwrap_or(""),
                        if entry.beyond_catalog { "  (beyond the catalog)" } else { "" }
                    )?;
                }
            }
        }
        CatalogCommand::Show { name, json } => {
            let Some(entry) = tcat_catalog::find(&name) else {
                let names: Vec<&str> = tcat_catalog::entries().iter().map(|e| e.name).collect();
                bail!("catalog: no entry `{name}`; entries: {}", names.join(", "));
            };
            let mut row = summary(entry);
            row["traits"] = json!(entry.traits);
            row["published"] = json!(entry.published);
            row["papers"] = json!(
                entry
                    .papers
                    .iter()
                    .map(|p| json!({"title": p.title, "authors": p.authors, "year": p.year, "arxiv": p.arxiv}))
                    .collect::<Vec<_>>()
            );
            row["spec"] = entry.spec.map_or(Value::Null, |spec| serde_json::to_value(spec()).unwrap_or(Value::Null));
            if json {
                writeln!(out, "{row}")?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&row)?)?;
            }
        }
    }
    Ok(())
}

fn level(level: Level) -> &'static str {
    match level {
        Level::Ckpt => "ckpt",
        Level::Preset => "preset",
        Level::Doc => "doc",
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000_000 => format!("{:.2}T", n as f64 / 1e12),
        n if n >= 999_500_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n => format!("{n}"),
    }
}

/// The entry's JSON line: identity, level, kind, parameter counts and computed status.
fn summary(entry: &Entry) -> Value {
    let spec = entry.spec.map(|spec| spec());
    let params = spec.as_ref().map(|s| s.param_count());
    json!({
        "name": entry.name,
        "aliases": entry.aliases,
        "year": entry.year,
        "org": entry.org,
        "level": level(entry.level),
        "kind": spec.as_ref().map_or(entry.kind.name(), |s| s.kind().name()),
        "model_types": entry.model_types,
        "runs_as": entry.runs_as,
        "params": params.map(|p| p.total),
        "active_params": params.map(|p| p.active),
        "status": status(entry),
        "beyond_catalog": entry.beyond_catalog,
    })
}

/// What the code can do for `entry`, computed now.
pub fn status(entry: &Entry) -> String {
    match entry.level {
        Level::Ckpt => {
            let supported = entry.model_types.iter().filter(|t| SUPPORTED_MODEL_TYPES.contains(t)).count();
            match (supported, entry.model_types.len()) {
                (0, _) => "planned".into(),
                (n, all) if n == all => "runs".into(),
                _ => "partial".into(),
            }
        }
        Level::Preset => match run_preset(entry) {
            Ok(()) => "runs".into(),
            // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
            Err(e) => format!("planned: {}", format!("{e:#}").lines().next().unwrap_or("")),
        },
        Level::Doc => match entry.runs_as.and_then(tcat_catalog::find) {
            Some(target) if target.name != entry.name => format!("runs as {}: {}", target.name, status(target)),
            _ => "doc".into(),
        },
    }
}

/// Builds the tiny preset of `entry` and runs five tokens through it.
fn run_preset(entry: &Entry) -> Result<()> {
    let model = preset(entry, &Device::Cpu, DType::F32)?;
    let batch = Batch::right_padded(&[vec![1, 2, 3, 4, 5]], None, model.pad_token_id(), &Device::Cpu)?;
    match &model {
        Model::Encoder(m) => m.hidden_states(&batch).map(drop)?,
        Model::Decoder(m) => m.logits(&batch).map(drop)?,
        Model::Seq2seq(m) => {
            let start = m.tokens().decoder_start;
            let decoder = Batch::right_padded(&[vec![start, 1, 2]], None, model.pad_token_id(), &Device::Cpu)?;
            m.logits(&batch, &decoder).map(drop)?
        }
        Model::Vision(m) => m.hidden_states(&preset_pixels(m)?).map(drop)?,
        Model::DualEncoder(m) => {
            m.text_embeds(&batch)?;
            m.image_embeds(&preset_pixels(m.vision())?).map(drop)?
        }
        Model::VisionLanguage(m) => m.logits(&preset_pixels(m.image())?, &batch).map(drop)?,
    }
    Ok(())
}

/// Zero pixel values of the size an image tower's position table is for.
fn preset_pixels(m: &tcat_models::VisionModel) -> Result<candle_core::Tensor> {
    let side = m.image_size().context("the image tower's position table is for no square image")?;
    Ok(candle_core::Tensor::zeros((1, m.channels(), side, side), DType::F32, m.device())?)
}

/// The tiny instance of a catalog entry with seeded random weights (`--model preset:NAME`).
pub fn preset(entry: &Entry, device: &Device, dtype: DType) -> Result<Model> {
    let Some(spec) = entry.spec else { bail!("catalog entry `{}` has no architecture to build", entry.name) };
    Ok(Model::preset(&tcat_catalog::tiny(&spec()), entry.name, 0, device, dtype)?)
}

/// `docs/catalog.md`: every entry as a table row.
pub fn markdown_table() -> Result<String> {
    let mut md = String::from(
        "# The catalog\n\nGenerated by `tcat catalog list --markdown`; a test fails when this file is stale. \
         `params` is computed from each entry's spec at the paper's (or reference checkpoint's) size; \
         `status` from what the code can do.\n\n\
         | name | year | org | level | kind | model types | params (active) | status |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let header = "| name | year | org | level | kind | model types | params (active) | status |\n\
                  |---|---|---|---|---|---|---|---|\n";
    let mut beyond = false;
    for entry in tcat_catalog::entries() {
        if entry.beyond_catalog && !beyond {
            beyond = true;
            md.push_str(
                "\n## Beyond the catalog\n\nCheckpoint families tcat loads that `CATALOG.md` does not list, \
                 each with its spec at a published size.\n\n",
            );
            md.push_str(header);
        }
        let row = summary(entry);
        let params = match (row["params"].as_u64(), row["active_params"].as_u64()) {
            (Some(t), Some(a)) if a != t => format!("{} ({})", human(t), human(a)),
            (Some(t), _) => human(t),
            _ => "-".into(),
        };
        let types = if entry.model_types.is_empty() { "-".into() } else { entry.model_types.join(", ") };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            entry.name,
            entry.year,
            entry.org,
            level(entry.level),
            row["kind"].as_str().unwrap_or("-"),
            types,
            params,
            row["status"].as_str().unwrap_or("").replace('|', "\\|")
        ));
    }
    Ok(md)
}
