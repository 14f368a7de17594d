//! ModernBERT parity with Hugging Face `transformers` on tiny perturbed checkpoints it saved
//! (tests/fixtures/tcat_fixtures/encoders2.py, `modernbert` and `modernbert-biases`): last
//! hidden states and masked-LM logits within 1e-4 in f32, each padded batch equal to its rows
//! run alone, and the settings tcat does not build refused by name.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::*;
use tcat_models::{Batch, Model, ModelSource};

const TOL: f32 = 1e-4;

fn load_dir(dir: &std::path::Path) -> tcat_core::Result<Model> {
    let source = ModelSource::resolve(dir.to_str().unwrap())?;
    Model::load(&source, &device(), DType::F32)
}

/// Hidden states and MLM logits of the padded batch against transformers', and every row run
/// alone against its row of the batch; returns the two largest differences.
fn check(name: &str) -> (f32, f32) {
    let exp = expected(name);
    let model = load_dir(&fixture(name)).unwrap();
    let encoder = model.as_encoder().unwrap();
    let mask = &exp["attention_mask"];
    let ids = rows(&exp["input_ids"], mask);
    let batch = Batch::right_padded(&ids, None, encoder.pad_token_id(), &device()).unwrap();
    let hidden = encoder.hidden_states(&batch).unwrap();
    let d_hidden = masked_max_diff(&hidden, &exp["hidden_states"], mask);
    eprintln!("{name}: hidden_states max abs diff {d_hidden:.2e}");
    assert!(d_hidden <= TOL, "{name} hidden_states differ by {d_hidden}");
    let logits = encoder.mlm_logits(&hidden).unwrap();
    let d_logits = masked_max_diff(&logits, &exp["mlm_logits"], mask);
    eprintln!("{name}: mlm_logits max abs diff {d_logits:.2e}");
    assert!(d_logits <= TOL, "{name} mlm_logits differ by {d_logits}");
    for (i, row) in ids.iter().enumerate() {
        let alone = Batch::right_padded(std::slice::from_ref(row), None, encoder.pad_token_id(), &device()).unwrap();
        let alone = encoder.hidden_states(&alone).unwrap();
        let in_batch = hidden.narrow(0, i, 1).unwrap().narrow(1, 0, row.len()).unwrap();
        let d = max_diff(&alone, &in_batch);
        assert!(d <= TOL, "{name} row {i} alone differs from the padded batch by {d}");
    }
    (d_hidden, d_logits)
}

/// Four layers (global 0 and 3, local 1 and 2 with a ±2 window that binds on the 12-token row,
/// rotary bases 1000 and 30), bias-free LayerNorms and projections, GeGLU, no attention norm in
/// layer 0, the tied decoder with its bias.
#[test]
fn modernbert_matches_transformers() {
    check("modernbert");
}

/// Every bias on, a head activation (silu) other than the feed-forward's (gelu tanh), a ±3
/// window, global every second layer, an untied decoder.
#[test]
fn modernbert_with_biases_and_untied_decoder_matches_transformers() {
    check("modernbert-biases");
}

/// The window and the two bases matter: the same weights read with a dense schedule, or with
/// the global base everywhere, move the 12-token row away from transformers'.
#[test]
fn the_local_window_and_local_base_change_the_output() {
    let exp = expected("modernbert");
    let mask = &exp["attention_mask"];
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("modernbert").join("config.json")).unwrap()).unwrap();
    let mut dense = cfg.clone();
    dense["local_attention"] = serde_json::json!(1000);
    let mut one_base = cfg.clone();
    one_base["rope_parameters"]["sliding_attention"]["rope_theta"] = serde_json::json!(1000.0);
    for (tag, c) in [("dense", dense), ("one-base", one_base)] {
        let dir = copy_with_config("modernbert", tag, &c, |_| {});
        let model = load_dir(&dir).unwrap();
        let encoder = model.as_encoder().unwrap();
        let ids = rows(&exp["input_ids"], mask);
        let batch = Batch::right_padded(&ids, None, encoder.pad_token_id(), &device()).unwrap();
        let d = masked_max_diff(&encoder.hidden_states(&batch).unwrap(), &exp["hidden_states"], mask);
        assert!(d > 1e-2, "{tag}: changed nothing ({d})");
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A copy of a fixture with `config` as its config.json and its weights edited by `edit`.
fn copy_with_config(
    name: &str,
    tag: &str,
    config: &serde_json::Value,
    edit: impl Fn(&mut HashMap<String, Tensor>),
) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tcat-modernbert-{name}-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut weights = candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut weights);
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(config).unwrap()).unwrap();
    dir
}

/// What tcat does not build is refused by name: unknown layer types, a `head_dim` other than
/// hidden / heads, a decoder config, an unknown rope type; an untied config without its decoder
/// names the missing tensor.
#[test]
fn unsupported_settings_are_refused_by_name() {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("modernbert").join("config.json")).unwrap()).unwrap();
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "layer_types",
            serde_json::json!(["full_attention", "chunked_attention", "sliding_attention", "full_attention"]),
            "chunked_attention",
        ),
        ("head_dim", serde_json::json!(16), "`head_dim`"),
        ("is_decoder", serde_json::json!(true), "`is_decoder`"),
        ("rope_parameters", serde_json::json!({"full_attention": {"rope_type": "mrope"}}), "mrope"),
    ];
    for (field, value, named) in cases {
        let mut c = cfg.clone();
        c[field] = value;
        let dir = copy_with_config("modernbert", field, &c, |_| {});
        let err = load_dir(&dir).unwrap_err().to_string();
        assert!(err.contains(named), "{field}: {err}");
        std::fs::remove_dir_all(dir).ok();
    }
    let mut c = cfg.clone();
    c["tie_word_embeddings"] = serde_json::json!(false);
    let dir = copy_with_config("modernbert", "untied", &c, |_| {});
    let err = load_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("decoder.weight"), "untied without a decoder: {err}");
    std::fs::remove_dir_all(dir).ok();
}

/// The base model alone (the checkpoint without `head.*` and `decoder.*`) loads and gives the
/// same states; it has no masked-LM head.
#[test]
fn the_base_model_alone_loads_without_a_head() {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("modernbert").join("config.json")).unwrap()).unwrap();
    let dir = copy_with_config("modernbert", "base", &cfg, |w| w.retain(|k, _| k.starts_with("model.")));
    let model = load_dir(&dir).unwrap();
    let encoder = model.as_encoder().unwrap();
    let exp = expected("modernbert");
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, encoder.pad_token_id(), &device()).unwrap();
    let hidden = encoder.hidden_states(&batch).unwrap();
    assert!(masked_max_diff(&hidden, &exp["hidden_states"], mask) <= TOL);
    assert!(!encoder.has_mlm_head());
    std::fs::remove_dir_all(dir).ok();
}
