//! Bad input gives a clear error naming the problem, never a panic.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::*;
use tcat_models::{Batch, GenerationConfig, Model, ModelSource, Sampling, generate};

fn load_err(dir: &Path) -> String {
    let dev = device();
    match ModelSource::resolve(dir.to_str().unwrap()).and_then(|s| Model::load(&s, &dev, DType::F32)) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// A copy of a fixture with its weights transformed by `edit` and its config by `config`.
fn broken_copy(
    name: &str,
    tag: &str,
    edit: impl Fn(&mut HashMap<String, Tensor>),
    config: impl Fn(String) -> String,
) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tcat-broken-{name}-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Host tensors: they are only edited and written back to a file.
    let mut weights = candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut weights);
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), config(cfg)).unwrap();
    dir
}

#[test]
fn missing_tensor_is_named() {
    let dir = broken_copy(
        "bert",
        "missing",
        |w| {
            w.remove("bert.encoder.layer.1.attention.self.key.weight");
        },
        |c| c,
    );
    let err = load_err(&dir);
    assert!(err.contains("missing tensor `bert.encoder.layer.1.attention.self.key.weight`"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn wrong_shape_is_named() {
    let dir = broken_copy(
        "gpt2",
        "shape",
        |w| {
            w.insert(
                "transformer.h.0.mlp.c_fc.weight".into(),
                Tensor::zeros((32, 65), DType::F32, &Device::Cpu).unwrap(),
            );
        },
        |c| c,
    );
    let err = load_err(&dir);
    assert!(
        err.contains("transformer.h.0.mlp.c_fc.weight") && err.contains("[32, 65]") && err.contains("[32, 64]"),
        "{err}"
    );
}

#[test]
fn malformed_config_is_reported() {
    let dir = broken_copy("bert", "malformed", |_| {}, |c| c.replace("\"hidden_size\"", "\"hidden_size\" 32, \"x\""));
    let err = load_err(&dir);
    assert!(err.contains("config.json") && err.contains("malformed JSON"), "{err}");
    let dir = broken_copy("bert", "nofield", |_| {}, |c| c.replace("\"num_attention_heads\"", "\"heads\""));
    let err = load_err(&dir);
    assert!(err.contains("num_attention_heads"), "{err}");
    let dir =
        broken_copy("bert", "heads", |_| {}, |c| c.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"));
    let err = load_err(&dir);
    assert!(err.contains("not divisible by `num_attention_heads` (5)"), "{err}");
}

#[test]
fn unknown_model_type_lists_the_supported_ones() {
    let dir = broken_copy(
        "bert",
        "unknown",
        |_| {},
        |c| c.replace("\"model_type\": \"bert\"", "\"model_type\": \"perceiver\""),
    );
    let err = load_err(&dir);
    assert!(err.contains("unknown model_type `perceiver`") && err.contains("gpt2"), "{err}");
}

#[test]
fn missing_model_is_reported() {
    let err = ModelSource::resolve("/no/such/folder").unwrap_err().to_string();
    assert!(err.contains("/no/such/folder"), "{err}");
}

#[test]
fn too_long_and_out_of_vocab_inputs_are_rejected() {
    let dev = device();
    let source = ModelSource::resolve(fixture("bert").to_str().unwrap()).unwrap();
    let model = Model::load(&source, &dev, DType::F32).unwrap();
    let encoder = model.as_encoder().unwrap();
    let long = Batch::right_padded(&[vec![5; 65]], None, 0, &dev).unwrap();
    let err = encoder.hidden_states(&long).unwrap_err().to_string();
    assert!(err.contains("65 tokens") && err.contains("64"), "{err}");
    let oov = Batch::right_padded(&[vec![5, 128]], None, 0, &dev).unwrap();
    let err = encoder.hidden_states(&oov).unwrap_err().to_string();
    assert!(err.contains("token id 128") && err.contains("vocab_size 128"), "{err}");
    let types = Batch::right_padded(&[vec![5, 6]], Some(&[vec![0, 2]]), 0, &dev).unwrap();
    assert!(encoder.hidden_states(&types).unwrap_err().to_string().contains("type_vocab_size 2"));

    let source = ModelSource::resolve(fixture("gpt2").to_str().unwrap()).unwrap();
    let model = Model::load(&source, &dev, DType::F32).unwrap();
    let decoder = model.as_decoder().unwrap();
    let config = GenerationConfig {
        max_new_tokens: 60,
        sampling: Sampling::Greedy,
        seed: 0,
        stop_tokens: None,
        ..Default::default()
    };
    let err = generate(decoder, &[vec![1; 10]], &config, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("70 tokens") && err.contains("n_positions"), "{err}");
    assert!(err.contains("max_new_tokens 60") && err.contains("at most 54"), "{err}");
    // A length that overflows `usize` is an error naming both parts, not an arithmetic panic.
    let huge = GenerationConfig { max_new_tokens: usize::MAX, ..config.clone() };
    let err = generate(decoder, &[vec![1; 10]], &huge, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains(&format!("max_new_tokens {}", usize::MAX)) && err.contains("10-token prompt"), "{err}");
    assert!(err.contains("64 tokens"), "{err}");
    assert!(generate(decoder, &[vec![]], &config, |_, _| {}).is_err());
}

#[test]
fn unknown_rope_scaling_type_is_named_with_the_supported_ones() {
    let dir = broken_copy(
        "llama-llama3",
        "rope",
        |_| {},
        |c| c.replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"proportional\""),
    );
    let err = load_err(&dir);
    assert!(err.contains("`proportional`") && err.contains("llama3") && err.contains("longrope"), "{err}");
    let dir = broken_copy(
        "llama-llama3",
        "lowhigh",
        |_| {},
        |c| c.replace("\"high_freq_factor\": 4.0", "\"high_freq_factor\": 0.5"),
    );
    let err = load_err(&dir);
    assert!(err.contains("high_freq_factor") && err.contains("low_freq_factor"), "{err}");
    let dir = broken_copy("llama-llama3", "nolow", |_| {}, |c| c.replace("\"low_freq_factor\"", "\"low\""));
    let err = load_err(&dir);
    assert!(err.contains("needs a positive `low_freq_factor`"), "{err}");
}

/// Adds `"field": value` to a config's top-level object.
fn with_field(config: String, field: &str, value: &str) -> String {
    let end = config.rfind('}').expect("a JSON object");
    let body = config[..end].trim_end();
    format!("{body},\n  \"{field}\": {value}\n}}\n")
}

/// Config fields that change the computation and that tcat does not honour are refused by
/// name, never ignored.
#[test]
fn settings_that_would_be_ignored_are_refused() {
    let cases: [(&str, &str, &str, &str); 6] = [
        ("bert", "is_decoder", "true", "`is_decoder`"),
        ("bert", "add_cross_attention", "true", "`add_cross_attention`"),
        ("roberta", "add_cross_attention", "true", "`add_cross_attention`"),
        ("gpt2", "add_cross_attention", "true", "`add_cross_attention`"),
        ("opt", "layer_norm_elementwise_affine", "false", "`layer_norm_elementwise_affine`"),
        ("llama", "quantization_config", "{\"quant_method\": \"bitsandbytes\"}", "`quantization_config`"),
    ];
    for (fixture_name, field, value, named) in cases {
        let dir = broken_copy(fixture_name, field, |_| {}, |c| with_field(c, field, value));
        let err = load_err(&dir);
        assert!(err.contains(named), "{fixture_name} with {field} = {value}: {err}");
        std::fs::remove_dir_all(dir).ok();
    }
}

/// transformers' `LlamaConfig` has no sliding window: a `sliding_window` on a `llama` config
/// would be ignored by the reference, so tcat refuses it rather than guess; `mistral` uses it.
#[test]
fn sliding_window_on_a_family_without_one_is_refused() {
    let dir = broken_copy("llama", "window", |_| {}, |c| with_field(c, "sliding_window", "4"));
    let err = load_err(&dir);
    assert!(err.contains("`sliding_window`") && err.contains("mistral"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_untied_head_that_is_missing_is_named() {
    let dir = broken_copy(
        "llama-llama3",
        "nohead",
        |w| {
            w.remove("lm_head.weight");
        },
        |c| c,
    );
    let err = load_err(&dir);
    assert!(err.contains("lm_head.weight") && err.contains("does not tie"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unknown_sentence_transformers_modules_are_refused() {
    let dir = std::env::temp_dir().join(format!("tcat-broken-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_LSTM", "type": "sentence_transformers.models.LSTM"}]"#,
    )
    .unwrap();
    let err = tcat_models::SentenceConfig::read(&dir).unwrap_err().to_string();
    assert!(err.contains("sentence_transformers.models.LSTM") && err.contains("not supported"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// transformers rotates `2·⌈d/2⌉` features when a partial rotary factor gives an odd count
/// `d`, with frequency exponents over `d`: tcat builds that model instead of refusing it. (This
/// checks that it loads and runs; the frequencies are checked by `inverse_frequencies_over`'s
/// doctest. No transformers fixture with an odd count exists yet.)
#[test]
fn odd_partial_rotary_counts_load_and_run() {
    // gpt_neox fixture: head_dim 8; 0.375 of it is 3 features, so 4 rotate with exponents over 3.
    let dir = broken_copy(
        "gpt_neox",
        "oddrot",
        |_| {},
        |c| c.replace("\"partial_rotary_factor\": 0.25", "\"partial_rotary_factor\": 0.375"),
    );
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    let model = Model::load(&source, &device(), DType::F32).expect("an odd rotary count loads");
    let batch = Batch::right_padded(&[vec![1, 2, 3]], None, 0, &device()).unwrap();
    model.as_decoder().unwrap().logits(&batch).unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn decoding_that_cannot_fit_in_memory_is_refused_before_allocating() {
    // T5 positions are relative (no table bounds the length) and beams multiply the rows:
    // both are checked against the memory before the KV caches are allocated.
    let load = |name: &str| {
        let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
        Model::load(&source, &device(), DType::F32).unwrap()
    };
    let t5 = load("t5");
    let t5 = t5.as_seq2seq().unwrap();
    let long = GenerationConfig { max_new_tokens: 1 << 40, ..GenerationConfig::default() };
    let err = tcat_models::generate_seq2seq(t5, &[vec![5, 6]], &long, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("KV caches") && err.contains("--max-new-tokens"), "{err}");
    let short = GenerationConfig { max_new_tokens: 8, ..GenerationConfig::default() };
    let beams = tcat_models::generation::BeamSettings::new(1 << 40);
    let err =
        tcat_models::generation::generate_seq2seq_beam(t5, &[vec![5, 6]], &short, &beams).unwrap_err().to_string();
    assert!(err.contains("--num-beams"), "{err}");
    let gpt2 = load("gpt2");
    let limits = tcat_models::generation::SearchLimits::new(8, vec![0], 0);
    let err = tcat_models::generation::generate_beam(gpt2.as_decoder().unwrap(), &[vec![5, 6]], &beams, &limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--num-beams"), "{err}");
}

/// LongRoPE's factor lists (Phi-3) are checked: one positive factor per rotated pair.
#[test]
fn longrope_factor_lists_are_checked_by_name() {
    let dir = broken_copy("phi3", "longrope-len", |_| {}, |c| c.replace("3.7\n", "3.7, 4.0\n"));
    let err = load_err(&dir);
    assert!(err.contains("`short_factor` has 5 factors, expected one per rotated pair (4)"), "{err}");
    let dir = broken_copy("phi3", "longrope-sign", |_| {}, |c| c.replace("2.9,", "-2.9,"));
    let err = load_err(&dir);
    assert!(err.contains("`long_factor` must hold positive numbers"), "{err}");
    let dir = broken_copy("phi3", "longrope-missing", |_| {}, |c| c.replace("\"long_factor\"", "\"long_factors\""));
    let err = load_err(&dir);
    assert!(err.contains("needs `long_factor`"), "{err}");
}
