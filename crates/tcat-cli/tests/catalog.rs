//! `tcat catalog` and presets, run as a user runs them: every catalog row is listed with a
//! computed status, `show` gives the papers' parameter counts, every preset row whose blocks
//! exist runs `forward`, `docs/catalog.md` is what `list --markdown` prints, and the reward
//! head writes one scalar per row.

use candle_core::Device;
use serde_json::Value;

mod common;
use common::{ok, tcat};

fn list() -> Vec<Value> {
    ok(&["catalog", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

/// The catalog's rows (../shared/CATALOG.md), by the names the issue gives them.
const ROWS: &[&str] = &[
    "bert",
    "roberta",
    "xlm",
    "xlm-roberta",
    "ernie-thu",
    "albert",
    "distilbert",
    "labse",
    "electra",
    "deberta",
    "minilm",
    "transformer",
    "gpt",
    "gpt-2",
    "transformer-xl",
    "xlnet",
    "t5",
    "bart",
    "ctrl",
    "sparse-transformer",
    "gpt-3",
    "mt5",
    "gpt-neo",
    "gpt-j",
    "switch-transformer",
    "glam",
    "lamda",
    "gpt-neox",
    "bloom",
    "palm",
    "opt",
    "gopher",
    "chinchilla",
    "santacoder",
    "llama",
    "mixtral",
    "instructgpt",
    "flan-t5",
    "sparrow",
    "gpt-4",
    "vit",
    "clip",
    "dall-e",
    "glide",
    "coca",
    "palm-e",
];

#[test]
fn catalog_lists_every_row_with_a_computed_status() {
    let entries = list();
    let resolves = |name: &str| {
        entries
            .iter()
            .any(|e| e["name"] == name || e["aliases"].as_array().is_some_and(|a| a.iter().any(|x| x == name)))
    };
    for row in ROWS {
        assert!(resolves(row), "catalog row `{row}` is not listed");
    }
    for e in &entries {
        for field in ["name", "level", "kind", "model_types", "status"] {
            assert!(!e[field].is_null(), "{e}: no `{field}`");
        }
        let (level, status) = (e["level"].as_str().unwrap(), e["status"].as_str().unwrap());
        match level {
            "ckpt" | "preset" => assert!(
                status == "runs" || status == "partial" || status.starts_with("planned"),
                "{}: status `{status}`",
                e["name"]
            ),
            "doc" => assert!(status == "doc" || status.starts_with("runs as "), "{}: status `{status}`", e["name"]),
            other => panic!("{}: level `{other}`", e["name"]),
        }
    }
    // Computed, not typed: the families tcat loads run, and so does a preset it can build.
    let status = |name: &str| entries.iter().find(|e| e["name"] == name).unwrap()["status"].clone();
    assert_eq!(status("llama"), "runs");
    assert_eq!(status("gpt-3"), "runs");
}

#[test]
fn catalog_show_gives_the_papers_parameter_counts() {
    // (entry, published total, tolerance): GPT-3 (Brown et al. 2020, Table 2.1), PaLM
    // (Chowdhery et al. 2022, Table 1), Gopher (Rae et al. 2021, Table 1), Chinchilla
    // (Hoffmann et al. 2022, Table 4), LaMDA (Thoppilan et al. 2022, §3), GLaM (Du et al.
    // 2021, Table 1: 1.2T total, 96.6B activated).
    let papers = [
        ("gpt-3", 175e9, 0.03),
        ("palm", 540e9, 0.03),
        ("gopher", 280e9, 0.03),
        ("chinchilla", 70e9, 0.03),
        ("lamda", 137e9, 0.03),
        ("glam", 1.2e12, 0.05),
    ];
    for (name, published, tolerance) in papers {
        let entry: Value = serde_json::from_str(&ok(&["catalog", "show", name, "--json"])).unwrap();
        let params = entry["params"].as_f64().unwrap();
        let error = (params - published).abs() / published;
        eprintln!("{name}: {params:.4e} parameters against the paper's {published:.3e} ({:.2}%)", 100.0 * error);
        assert!(error <= tolerance, "{name}: {params} parameters, the paper says {published}");
        assert!(!entry["spec"].is_null(), "{name}: no spec");
    }
    let glam: Value = serde_json::from_str(&ok(&["catalog", "show", "glam", "--json"])).unwrap();
    let active = glam["active_params"].as_f64().unwrap();
    assert!((active - 96.6e9).abs() / 96.6e9 <= 0.05, "GLaM activates {active} parameters per token, the paper 96.6B");
}

#[test]
fn unknown_catalog_entries_are_named() {
    let out = tcat(&["catalog", "show", "gpt-5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no entry `gpt-5`"), "{err}");
    let out = tcat(&["forward", "--model", "preset:nope", "--ids", "1,2", "--out", "/dev/null"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("preset:nope") && !err.contains("panicked"), "{err}");
}

/// The nine presets whose blocks exist run `tcat forward` at the tiny scale.
#[test]
fn presets_run_forward() {
    let dir = std::env::temp_dir().join(format!("tcat-presets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "ernie-thu",
        "transformer-xl",
        "sparse-transformer",
        "gpt-3",
        "lamda",
        "palm",
        "gopher",
        "chinchilla",
        "dall-e",
    ] {
        let out = dir.join(format!("{name}.safetensors"));
        let model = format!("preset:{name}");
        ok(&["forward", "--model", &model, "--ids", "1,2,3,4,5", "--ids", "6,7,8", "--out", out.to_str().unwrap()]);
        let tensors = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        let output = tensors.get("logits").or_else(|| tensors.get("hidden_states")).expect("an output tensor");
        assert_eq!(&output.dims()[..2], &[2, 5], "{name}");
        let values: Vec<f32> = output.flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}: non-finite outputs");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn reward_head_writes_one_scalar_per_row() {
    let out = std::env::temp_dir().join(format!("tcat-reward-{}.safetensors", std::process::id()));
    let path = out.to_str().unwrap();
    ok(&["forward", "--model", "preset:gpt-3", "--head", "reward", "--ids", "1,2,3", "--ids", "4,5", "--out", path]);
    let tensors = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert_eq!(tensors["rewards"].dims(), &[2]);
    // Row 1 is padded: its reward comes from its own last token, as if run alone.
    ok(&["forward", "--model", "preset:gpt-3", "--head", "reward", "--ids", "4,5", "--out", path]);
    let alone = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let (batched, single): (Vec<f32>, Vec<f32>) =
        (tensors["rewards"].to_vec1().unwrap(), alone["rewards"].to_vec1().unwrap());
    assert!((batched[1] - single[0]).abs() < 1e-5, "padded row reward {} vs alone {}", batched[1], single[0]);
    std::fs::remove_file(out).ok();
}

#[test]
fn docs_catalog_md_is_what_list_markdown_prints() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/catalog.md");
    let committed = std::fs::read_to_string(&docs).unwrap_or_default();
    let generated = ok(&["catalog", "list", "--markdown"]);
    assert!(
        committed == generated,
        "docs/catalog.md is stale: regenerate it with `cargo run -p tcat-cli -- catalog list --markdown > docs/catalog.md`"
    );
}
