//! GGUF loading checked against `transformers`: the tiny LLaMA fixture is written as a GGUF
//! file the way llama.cpp's converter writes it (q/k rows permuted for its rotary layout,
//! llama.cpp tensor and metadata names), loaded back through tcat's GGUF path, and compared
//! with the reference logits. This proves the permutation is undone (by the interleaved rotary
//! layout) without needing the real model.

mod common;

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use common::*;
use tcat_models::gguf::GgufFile;
use tcat_models::{Batch, GenerationConfig, generate};
use tcat_spec::{PositionSpec, RopeScalingSpec};

/// llama.cpp's `permute`: within each head, rows `[0..d/2 | d/2..d]` become interleaved
/// `[0, d/2, 1, d/2 + 1, ...]`.
fn llama_cpp_permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    let d = rows / heads;
    w.reshape((heads, 2, d / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

fn write_llama_gguf(path: &std::path::Path, permute: bool) {
    let hf = candle_core::safetensors::load(fixture("llama").join("model.safetensors"), &Device::Cpu).unwrap();
    let (heads, kv_heads, layers) = (4usize, 2usize, 2usize);
    let mut tensors: Vec<(String, Tensor)> = vec![
        ("token_embd.weight".into(), hf["model.embed_tokens.weight"].clone()),
        ("output_norm.weight".into(), hf["model.norm.weight"].clone()),
        ("output.weight".into(), hf["lm_head.weight"].clone()),
    ];
    let names = [
        ("attn_norm", "input_layernorm"),
        ("ffn_norm", "post_attention_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    for i in 0..layers {
        for (gguf, hf_name) in names {
            let mut t = hf[&format!("model.layers.{i}.{hf_name}.weight")].clone();
            if permute && gguf == "attn_q" {
                t = llama_cpp_permute(&t, heads);
            }
            if permute && gguf == "attn_k" {
                t = llama_cpp_permute(&t, kv_heads);
            }
            tensors.push((format!("blk.{i}.{gguf}.weight"), t));
        }
    }
    let q: Vec<(String, QTensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap())).collect();
    use gguf_file::Value;
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.embedding_length", Value::U32(32)),
        ("llama.feed_forward_length", Value::U32(64)),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.context_length", Value::U32(64)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
    ];
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs).unwrap();
}

fn gguf_logits(permute: bool, tag: &str) -> (Tensor, HashMap<String, Tensor>) {
    let path = std::env::temp_dir().join(format!("tcat-llama-{tag}-{}.gguf", std::process::id()));
    write_llama_gguf(&path, permute);
    let model = GgufFile::open(&path).unwrap().load_llama(&device(), Some(DType::F32)).unwrap();
    let exp = expected("llama");
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let logits = model.logits(&batch).unwrap();
    std::fs::remove_file(path).ok();
    (logits, exp)
}

#[test]
fn gguf_with_llama_cpp_permutation_matches_transformers() {
    let (logits, exp) = gguf_logits(true, "permuted");
    let d = masked_max_diff(&logits, &exp["logits"], &exp["attention_mask"]);
    assert!(d <= 1e-4, "GGUF logits differ by {d}");
}

#[test]
fn gguf_without_the_permutation_does_not_match() {
    // The same weights in Hugging Face row order would need half-split rotary: reading them as
    // llama.cpp layout must visibly fail, or the test above proves nothing.
    let (logits, exp) = gguf_logits(false, "unpermuted");
    let d = masked_max_diff(&logits, &exp["logits"], &exp["attention_mask"]);
    assert!(d > 1e-2, "unpermuted weights unexpectedly match ({d})");
}

#[test]
fn gguf_quantized_path_generates_like_the_dense_one() {
    let path = std::env::temp_dir().join(format!("tcat-llama-q-{}.gguf", std::process::id()));
    write_llama_gguf(&path, true);
    let exp = expected("llama");
    let prompt: Vec<u32> = exp["prompt_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
    let want: Vec<u32> = exp["greedy_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
    let config =
        GenerationConfig { max_new_tokens: want.len() - prompt.len(), stop_tokens: Some(vec![]), ..Default::default() };
    // F32 "quantized" tensors go through QMatMul, which is exact for F32.
    let model = GgufFile::open(&path).unwrap().load_llama(&device(), None).unwrap();
    let got = generate(&model, &[prompt], &config, |_, _| {}).unwrap();
    assert_eq!(got[0], want);
    std::fs::remove_file(path).ok();
}

/// A Gemma fixture (`gemma2` or `gemma3`) written as llama.cpp's converter writes such a
/// checkpoint: its tensor names, norm gains with Gemma's `1 + w` added, rows as in the
/// checkpoint (no rotary permutation), the lm head tied (no `output.weight`). `scale` writes
/// `{arch}.attention.scale` (the fixtures' `query_pre_attn_scalar` 16 is not their key width
/// 12, and llama.cpp's converter does not store it).
fn write_gemma_gguf(fixture_name: &str, path: &std::path::Path, scale: bool) {
    let hf = candle_core::safetensors::load(fixture(fixture_name).join("model.safetensors"), &Device::Cpu).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(fixture_name).join("config.json")).unwrap()).unwrap();
    let gemma3 = config["model_type"] == "gemma3_text";
    let arch = if gemma3 { "gemma3" } else { "gemma2" };
    let layers = config["num_hidden_layers"].as_u64().unwrap() as usize;
    let plus_one = |t: &Tensor| (t + 1.0).unwrap();
    let mut tensors: Vec<(String, Tensor)> = vec![
        ("token_embd.weight".into(), hf["model.embed_tokens.weight"].clone()),
        ("output_norm.weight".into(), plus_one(&hf["model.norm.weight"])),
    ];
    let mut names = vec![
        ("attn_norm", "input_layernorm"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("ffn_norm", "pre_feedforward_layernorm"),
        ("post_ffw_norm", "post_feedforward_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    if gemma3 {
        names.extend([("attn_q_norm", "self_attn.q_norm"), ("attn_k_norm", "self_attn.k_norm")]);
    }
    for i in 0..layers {
        for (gguf, hf_name) in &names {
            let t = &hf[&format!("model.layers.{i}.{hf_name}.weight")];
            let t = if gguf.ends_with("norm") { plus_one(t) } else { t.clone() };
            tensors.push((format!("blk.{i}.{gguf}.weight"), t));
        }
    }
    let q: Vec<(String, QTensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap())).collect();
    use gguf_file::Value;
    let u = |k: &str| Value::U32(config[k].as_u64().unwrap() as u32);
    let f = |k: &str| Value::F32(config[k].as_f64().unwrap() as f32);
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (format!("{arch}.context_length"), u("max_position_embeddings")),
        (format!("{arch}.embedding_length"), u("hidden_size")),
        (format!("{arch}.block_count"), u("num_hidden_layers")),
        (format!("{arch}.feed_forward_length"), u("intermediate_size")),
        (format!("{arch}.attention.head_count"), u("num_attention_heads")),
        (format!("{arch}.attention.head_count_kv"), u("num_key_value_heads")),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), f("rms_norm_eps")),
        (format!("{arch}.attention.key_length"), u("head_dim")),
        (format!("{arch}.attention.value_length"), u("head_dim")),
        (format!("{arch}.attention.sliding_window"), u("sliding_window")),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ];
    if gemma3 {
        let rope = &config["rope_parameters"];
        let global = &rope["full_attention"];
        metadata.extend([
            (format!("{arch}.rope.freq_base"), Value::F32(global["rope_theta"].as_f64().unwrap() as f32)),
            (format!("{arch}.rope.scaling.type"), Value::String("linear".into())),
            (format!("{arch}.rope.scaling.factor"), Value::F32(global["factor"].as_f64().unwrap() as f32)),
            (
                format!("{arch}.rope.freq_base_swa"),
                Value::F32(rope["sliding_attention"]["rope_theta"].as_f64().unwrap() as f32),
            ),
            (format!("{arch}.attention.sliding_window_pattern"), u("sliding_window_pattern")),
        ]);
    } else {
        metadata.extend([
            (format!("{arch}.attn_logit_softcapping"), f("attn_logit_softcapping")),
            (format!("{arch}.final_logit_softcapping"), f("final_logit_softcapping")),
        ]);
    }
    if scale {
        let scalar = config["query_pre_attn_scalar"].as_f64().unwrap();
        metadata.push((format!("{arch}.attention.scale"), Value::F32(scalar.powf(-0.5) as f32)));
    }
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs).unwrap();
}

/// The GGUF twins of the Gemma 2 and Gemma 3 fixtures: the same spec as their `config.json`
/// (norms aside: the stored gains already hold the `1 + w`), the same logits within 1e-4 of
/// transformers', and the same greedy tokens, kept quantized (F32 blocks) or dequantized.
#[test]
fn gemma_gguf_twins_give_transformers_logits_and_next_tokens() {
    for name in ["gemma2", "gemma3"] {
        let path = std::env::temp_dir().join(format!("tcat-{name}-{}.gguf", std::process::id()));
        write_gemma_gguf(name, &path, true);
        let exp = expected(name);
        let mask = &exp["attention_mask"];
        let model = GgufFile::open(&path).unwrap().load(&device(), Some(DType::F32)).unwrap();
        let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
        let d = masked_max_diff(&model.logits(&batch).unwrap(), &exp["logits"], mask);
        eprintln!("{name} GGUF: logits max abs diff {d:.2e}");
        assert!(d <= 1e-4, "{name} GGUF logits differ by {d}");
        let prompt: Vec<u32> = exp["prompt_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
        let want: Vec<u32> = exp["greedy_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
        let config = GenerationConfig {
            max_new_tokens: want.len() - prompt.len(),
            stop_tokens: Some(vec![]),
            ..Default::default()
        };
        let quantized = GgufFile::open(&path).unwrap().load(&device(), None).unwrap();
        for m in [&model, &quantized] {
            assert_eq!(generate(m, std::slice::from_ref(&prompt), &config, |_, _| {}).unwrap()[0], want, "{name}");
        }
        // The family's spec, but for the stored (already offset) norm gains.
        let mut from_config = {
            let config = tcat_models::ConfigFile::read(&fixture(name).join("config.json")).unwrap();
            tcat_models::spec_of(&config).unwrap()
        };
        if let tcat_spec::Stacks::Decoder { tower } = &mut from_config.stacks {
            tower.norm = tcat_spec::NormSpec::RmsNorm { eps: 1e-6 };
        }
        let from_gguf = GgufFile::open(&path).unwrap().spec().unwrap();
        assert_eq!(from_gguf.stacks, from_config.stacks, "{name}");
        assert_eq!(from_gguf.heads, from_config.heads, "{name}");
        std::fs::remove_file(&path).ok();
    }
}

/// Without `{arch}.attention.scale`, llama.cpp's rule: `1/√key_length` (the released 2B and 9B
/// models' `query_pre_attn_scalar` is their head width, 256).
#[test]
fn gemma_gguf_without_a_scale_uses_the_key_width() {
    let path = std::env::temp_dir().join(format!("tcat-gemma2-noscale-{}.gguf", std::process::id()));
    write_gemma_gguf("gemma2", &path, false);
    let spec = GgufFile::open(&path).unwrap().spec().unwrap();
    std::fs::remove_file(&path).ok();
    let tower = spec.single_tower().unwrap();
    assert_eq!(tower.attention.scale, tcat_spec::ScaleRule::InverseSqrtHeadDim);
    assert_eq!(tower.attention.logit_softcap, Some(5.0));
}

/// A Qwen2, Qwen3 or Phi-3 fixture written as llama.cpp's converter writes such a checkpoint
/// (the names are those of the `gguf` package's tensor-name map for `qwen2` / `qwen3` /
/// `phi3`): rows as in the checkpoint (these architectures rotate half-split in llama.cpp),
/// Qwen2's q/k/v biases, Qwen3's per-head `attn_q_norm` / `attn_k_norm`, Phi-3's fused
/// `attn_qkv` and `[gate | up]` `ffn_up`, its LongRoPE factor lists as `rope_factors_short` /
/// `rope_factors_long` with `phi3.rope.scaling.original_context_length`, and its window.
fn write_llama_like_gguf(fixture_name: &str, path: &std::path::Path) {
    let hf = candle_core::safetensors::load(fixture(fixture_name).join("model.safetensors"), &Device::Cpu).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(fixture_name).join("config.json")).unwrap()).unwrap();
    let arch = config["model_type"].as_str().unwrap().to_string();
    let layers = config["num_hidden_layers"].as_u64().unwrap() as usize;
    let mut tensors: Vec<(String, Tensor)> = vec![
        ("token_embd.weight".into(), hf["model.embed_tokens.weight"].clone()),
        ("output_norm.weight".into(), hf["model.norm.weight"].clone()),
    ];
    if let Some(head) = hf.get("lm_head.weight") {
        tensors.push(("output.weight".into(), head.clone()));
    }
    let mut names: Vec<(&str, &str)> = vec![
        ("attn_norm.weight", "input_layernorm.weight"),
        ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ("attn_output.weight", "self_attn.o_proj.weight"),
        ("ffn_down.weight", "mlp.down_proj.weight"),
    ];
    match arch.as_str() {
        "phi3" => names
            .extend([("attn_qkv.weight", "self_attn.qkv_proj.weight"), ("ffn_up.weight", "mlp.gate_up_proj.weight")]),
        _ => names.extend([
            ("attn_q.weight", "self_attn.q_proj.weight"),
            ("attn_k.weight", "self_attn.k_proj.weight"),
            ("attn_v.weight", "self_attn.v_proj.weight"),
            ("ffn_gate.weight", "mlp.gate_proj.weight"),
            ("ffn_up.weight", "mlp.up_proj.weight"),
        ]),
    }
    if arch == "qwen2" {
        names.extend([
            ("attn_q.bias", "self_attn.q_proj.bias"),
            ("attn_k.bias", "self_attn.k_proj.bias"),
            ("attn_v.bias", "self_attn.v_proj.bias"),
        ]);
    }
    if arch == "qwen3" {
        names.extend([
            ("attn_q_norm.weight", "self_attn.q_norm.weight"),
            ("attn_k_norm.weight", "self_attn.k_norm.weight"),
        ]);
    }
    for i in 0..layers {
        for (gguf, hf_name) in &names {
            tensors.push((format!("blk.{i}.{gguf}"), hf[&format!("model.layers.{i}.{hf_name}")].clone()));
        }
    }
    let rope = &config["rope_parameters"];
    let factors = |name: &str| -> Tensor {
        let v: Vec<f32> = rope[name].as_array().unwrap().iter().map(|f| f.as_f64().unwrap() as f32).collect();
        let n = v.len();
        Tensor::from_vec(v, n, &Device::Cpu).unwrap()
    };
    if arch == "phi3" {
        tensors.push(("rope_factors_short.weight".into(), factors("short_factor")));
        tensors.push(("rope_factors_long.weight".into(), factors("long_factor")));
    }
    let q: Vec<(String, QTensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap())).collect();
    use gguf_file::Value;
    let u = |k: &str| Value::U32(config[k].as_u64().unwrap() as u32);
    let f = |k: &str| Value::F32(config[k].as_f64().unwrap() as f32);
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.clone())),
        (format!("{arch}.context_length"), u("max_position_embeddings")),
        (format!("{arch}.embedding_length"), u("hidden_size")),
        (format!("{arch}.block_count"), u("num_hidden_layers")),
        (format!("{arch}.feed_forward_length"), u("intermediate_size")),
        (format!("{arch}.attention.head_count"), u("num_attention_heads")),
        (format!("{arch}.attention.head_count_kv"), u("num_key_value_heads")),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), f("rms_norm_eps")),
        (format!("{arch}.rope.freq_base"), Value::F32(rope["rope_theta"].as_f64().unwrap() as f32)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ];
    if config["head_dim"].is_u64() {
        metadata.push((format!("{arch}.attention.key_length"), u("head_dim")));
        metadata.push((format!("{arch}.attention.value_length"), u("head_dim")));
    }
    if arch == "phi3" {
        metadata.push((format!("{arch}.rope.scaling.original_context_length"), u("original_max_position_embeddings")));
        metadata.push((format!("{arch}.attention.sliding_window"), u("sliding_window")));
    }
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs).unwrap();
}

/// The GGUF twins of the Qwen2, Qwen3 and Phi-3 fixtures: the family's spec from the file's
/// metadata, transformers' logits within 1e-4 and its greedy ids (Phi-3's across the LongRoPE
/// switch), dequantized and kept in GGUF blocks (F32 here).
#[test]
fn qwen_and_phi3_gguf_twins_give_transformers_logits_and_next_tokens() {
    for name in ["qwen2", "qwen3", "phi3"] {
        let path = std::env::temp_dir().join(format!("tcat-{name}-twin-{}.gguf", std::process::id()));
        write_llama_like_gguf(name, &path);
        let exp = expected(name);
        let mask = &exp["attention_mask"];
        let model = GgufFile::open(&path).unwrap().load(&device(), Some(DType::F32)).unwrap();
        let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
        let d = masked_max_diff(&model.logits(&batch).unwrap(), &exp["logits"], mask);
        eprintln!("{name} GGUF: logits max abs diff {d:.2e}");
        assert!(d <= 1e-4, "{name} GGUF logits differ by {d}");
        let prompt: Vec<u32> = exp["prompt_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
        let want: Vec<u32> = exp["greedy_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
        let config = GenerationConfig {
            max_new_tokens: want.len() - prompt.len(),
            stop_tokens: Some(vec![]),
            ..Default::default()
        };
        let quantized = GgufFile::open(&path).unwrap().load(&device(), None).unwrap();
        for m in [&model, &quantized] {
            assert_eq!(generate(m, std::slice::from_ref(&prompt), &config, |_, _| {}).unwrap()[0], want, "{name}");
        }
        let config_spec = {
            let config = tcat_models::ConfigFile::read(&fixture(name).join("config.json")).unwrap();
            tcat_models::spec_of(&config).unwrap()
        };
        let from_gguf = GgufFile::open(&path).unwrap().spec().unwrap();
        let (tcat_spec::Stacks::Decoder { tower: g }, tcat_spec::Stacks::Decoder { tower: c }) =
            (&from_gguf.stacks, &config_spec.stacks)
        else {
            panic!("{name}: decoders expected")
        };
        // The same pattern per layer ([] and [Dense, Dense] say the same), else equal.
        for layer in 0..c.num_layers {
            assert_eq!(g.attention.pattern(layer), c.attention.pattern(layer), "{name}: layer {layer}");
        }
        let unscheduled = |a: &tcat_spec::AttentionSpec| tcat_spec::AttentionSpec { schedule: vec![], ..a.clone() };
        assert_eq!(unscheduled(&g.attention), unscheduled(&c.attention), "{name}: attention");
        assert_eq!(g.positions, c.positions, "{name}: positions");
        assert_eq!(g.feed_forward, c.feed_forward, "{name}: feed-forward");
        assert_eq!(g.norm, c.norm, "{name}: norm");
        std::fs::remove_file(&path).ok();
    }
}

/// The DeepSeek GGUF twins (`tests/fixtures/deepseek_*-gguf`, written by `tcat_fixtures`'
/// `gguf_files` as llama.cpp's converter writes a DeepseekV2/V3ForCausalLM checkpoint:
/// architecture `deepseek2`, `attn_k_b` / `attn_v_b` halves, stacked experts, `exp_probs_b`)
/// and the fixtures they come from.
const DEEPSEEK_TWINS: [(&str, &str); 3] = [
    ("deepseek_v2-lite-gguf", "deepseek_v2-lite"),
    ("deepseek_v2-gguf", "deepseek_v2"),
    ("deepseek_v3-gguf", "deepseek_v3"),
];

/// Transformers' logits within 1e-4 (real positions) and its greedy ids, single and for a
/// left-padded batch, from a GGUF file, dequantized and kept in GGUF blocks; the logits' max
/// difference.
fn check_against_transformers(path: &std::path::Path, source: &str, label: &str) -> f32 {
    let exp = expected(source);
    let mask = &exp["attention_mask"];
    let model = GgufFile::open(path).unwrap().load(&device(), Some(DType::F32)).unwrap();
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let d = masked_max_diff(&model.logits(&batch).unwrap(), &exp["logits"], mask);
    eprintln!("{label}: logits max abs diff {d:.2e}");
    assert!(d <= 1e-4, "{label}: logits differ by {d}");
    let prompt: Vec<u32> = exp["prompt_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
    let want: Vec<u32> = exp["greedy_ids"].to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
    let config =
        GenerationConfig { max_new_tokens: want.len() - prompt.len(), stop_tokens: Some(vec![]), ..Default::default() };
    let quantized = GgufFile::open(path).unwrap().load(&device(), None).unwrap();
    // Left-padded prompts decoded in one batch.
    let prompts = rows(&exp["batch_prompt_ids"], &exp["batch_prompt_mask"]);
    let batch_want: Vec<Vec<i64>> = exp["batch_greedy_ids"].to_vec2().unwrap();
    let prompt_len = exp["batch_prompt_ids"].dim(1).unwrap();
    let batch_config = GenerationConfig { max_new_tokens: batch_want[0].len() - prompt_len, ..config.clone() };
    for m in [&model, &quantized] {
        assert_eq!(generate(m, std::slice::from_ref(&prompt), &config, |_, _| {}).unwrap()[0], want, "{label}");
        let got = generate(m, &prompts, &batch_config, |_, _| {}).unwrap();
        for (row, (g, w)) in got.iter().zip(&batch_want).enumerate() {
            let w: Vec<u32> = w[prompt_len - prompts[row].len()..].iter().map(|&i| i as u32).collect();
            assert_eq!(g, &w, "{label}: batched greedy row {row}");
        }
    }
    d
}

/// The DeepSeek-V2-Lite, V2 and V3 GGUF twins: the `deepseek_v2` / `deepseek_v3` family's spec
/// from the file's metadata, transformers' logits within 1e-4 and its greedy ids, dequantized
/// and in GGUF blocks (F32 here).
#[test]
fn deepseek_gguf_twins_give_transformers_logits_and_next_tokens() {
    for (twin, source) in DEEPSEEK_TWINS {
        let path = fixture(twin).join("model.gguf");
        check_against_transformers(&path, source, twin);
        let from_config = {
            let config = tcat_models::ConfigFile::read(&fixture(source).join("config.json")).unwrap();
            tcat_models::spec_of(&config).unwrap()
        };
        let from_gguf = GgufFile::open(&path).unwrap().spec().unwrap();
        assert_eq!(from_gguf.stacks, from_config.stacks, "{twin}");
        assert_eq!(from_gguf.heads, from_config.heads, "{twin}");
    }
}

/// A copy of a DeepSeek twin with its metadata edited by `edit` and, when `legacy`, the
/// key/value up-projection stored whole as older llama.cpp converters wrote it (`attn_kv_b`
/// `[heads · (nope + value), rank]`, the per-head widths in `key_length` / `value_length`, no
/// MLA keys, `head_count_kv` the head count).
fn rewrite_deepseek_twin(
    twin: &str,
    path: &std::path::Path,
    legacy: bool,
    edit: impl FnOnce(&mut Vec<(String, gguf_file::Value)>),
) {
    use gguf_file::Value;
    let dev = Device::Cpu;
    let mut file = std::fs::File::open(fixture(twin).join("model.gguf")).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata: Vec<(String, Value)> = content.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut halves: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
    for name in names {
        let t = content.tensor(&mut file, name, &dev).unwrap().dequantize(&dev).unwrap();
        match (legacy, name.strip_suffix(".attn_k_b.weight"), name.strip_suffix(".attn_v_b.weight")) {
            (true, Some(layer), _) => halves.entry(layer.to_string()).or_default().0 = Some(t),
            (true, _, Some(layer)) => halves.entry(layer.to_string()).or_default().1 = Some(t),
            _ => tensors.push((name.clone(), t)),
        }
    }
    if legacy {
        let u = |k: &str| content.metadata[k].to_u32().unwrap();
        let (qk, value) = (u("deepseek2.attention.key_length_mla"), u("deepseek2.attention.value_length_mla"));
        let heads = u("deepseek2.attention.head_count");
        for (layer, (k, v)) in halves {
            let (k, v) = (k.unwrap(), v.unwrap()); // [heads, rank, nope], [heads, value, rank]
            let rank = k.dim(1).unwrap();
            let kv = Tensor::cat(&[&k.transpose(1, 2).unwrap(), &v], 1).unwrap();
            let rows = kv.dim(0).unwrap() * kv.dim(1).unwrap();
            tensors
                .push((format!("{layer}.attn_kv_b.weight"), kv.reshape((rows, rank)).unwrap().contiguous().unwrap()));
        }
        metadata.retain(|(k, _)| !k.ends_with("_mla"));
        for (k, v) in [("key_length", qk), ("value_length", value), ("head_count_kv", heads)] {
            let key = format!("deepseek2.attention.{k}");
            metadata.retain(|(name, _)| *name != key);
            metadata.push((key, Value::U32(v)));
        }
    }
    edit(&mut metadata);
    let q: Vec<(String, QTensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap())).collect();
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &metadata_refs, &tensor_refs).unwrap();
}

/// Older deepseek2 files (whole `attn_kv_b`, widths in `key_length` / `value_length`) load to
/// the same outputs.
#[test]
fn deepseek_gguf_with_the_whole_kv_b_projection_gives_the_same_outputs() {
    for (twin, source) in [DEEPSEEK_TWINS[0], DEEPSEEK_TWINS[2]] {
        let path = std::env::temp_dir().join(format!("tcat-{twin}-legacy-{}.gguf", std::process::id()));
        rewrite_deepseek_twin(twin, &path, true, |_| {});
        check_against_transformers(&path, source, &format!("{twin} with attn_kv_b"));
        std::fs::remove_file(&path).ok();
    }
}

/// Metadata the deepseek2 mapping cannot honour is refused by its key, and hostile sizes are
/// refused without a panic.
#[test]
fn deepseek_gguf_refuses_what_it_cannot_honour_by_key() {
    use gguf_file::Value;
    let set = |key: &'static str, value: Value| {
        move |m: &mut Vec<(String, Value)>| {
            m.retain(|(k, _)| k != key);
            m.push((key.to_string(), value));
        }
    };
    type Edit = Box<dyn FnOnce(&mut Vec<(String, Value)>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "deepseek_v3-gguf",
            Box::new(set("deepseek2.expert_gating_func", Value::U32(3))),
            "deepseek2.expert_gating_func",
        ),
        (
            "deepseek_v2-gguf",
            Box::new(set("deepseek2.expert_weights_norm", Value::Bool(true))),
            "deepseek2.expert_weights_norm",
        ),
        (
            "deepseek_v2-gguf",
            Box::new(set("deepseek2.rope.scaling.type", Value::String("linear".into()))),
            "deepseek2.rope.scaling.type",
        ),
        (
            "deepseek_v2-gguf",
            Box::new(set("deepseek2.expert_group_used_count", Value::U32(5))),
            "deepseek2.expert_group_used_count",
        ),
        // Hostile sizes: named, or refused by the size check before anything is allocated.
        (
            "deepseek_v2-gguf",
            Box::new(set("deepseek2.attention.key_length_mla", Value::U32(4))),
            "deepseek2.attention.key_length_mla",
        ),
        (
            "deepseek_v2-gguf",
            Box::new(set("deepseek2.attention.kv_lora_rank", Value::U32(u32::MAX))),
            "implies at least",
        ),
        ("deepseek_v2-gguf", Box::new(set("deepseek2.attention.head_count", Value::U32(u32::MAX))), "implies at least"),
    ];
    for (i, (twin, edit, key)) in cases.into_iter().enumerate() {
        let path = std::env::temp_dir().join(format!("tcat-{twin}-refused-{i}-{}.gguf", std::process::id()));
        rewrite_deepseek_twin(twin, &path, false, edit);
        let err = GgufFile::open(&path).unwrap().load(&device(), Some(DType::F32)).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(err.to_string().contains(key), "case {i}: `{err}` does not name `{key}`");
    }
}

/// YaRN in a deepseek2 file as the converter writes it (`rope.scaling.type` yarn, factor,
/// original context, betas, `yarn_log_multiplier` = 0.1 · `mscale_all_dim`) gives the outputs of
/// the `deepseek_v3` family on the same weights with the equivalent `config.json` (`mscale` =
/// `mscale_all_dim`, as llama.cpp assumes and the published configs have; the family's YaRN is
/// checked against transformers by the `deepseek_v3-yarn` fixture).
#[test]
fn deepseek_gguf_yarn_matches_the_family_on_the_same_weights() {
    use gguf_file::Value;
    let dir = std::env::temp_dir().join(format!("tcat-deepseek-yarn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(fixture("deepseek_v3").join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("deepseek_v3").join("config.json")).unwrap()).unwrap();
    config["rope_parameters"] = serde_json::json!({
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.8, "mscale_all_dim": 0.8
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string(&config).unwrap()).unwrap();
    let path = dir.join("model.gguf");
    rewrite_deepseek_twin("deepseek_v3-gguf", &path, false, |m| {
        m.extend([
            ("deepseek2.rope.scaling.type".to_string(), Value::String("yarn".into())),
            ("deepseek2.rope.scaling.factor".to_string(), Value::F32(4.0)),
            ("deepseek2.rope.scaling.original_context_length".to_string(), Value::U32(16)),
            ("deepseek2.rope.scaling.yarn_beta_fast".to_string(), Value::F32(32.0)),
            ("deepseek2.rope.scaling.yarn_beta_slow".to_string(), Value::F32(1.0)),
            // 0.1 · mscale_all_dim, computed in f64 by the converter and stored as an f32.
            ("deepseek2.rope.scaling.yarn_log_multiplier".to_string(), Value::F32(0.08)),
        ])
    });
    let exp = expected("deepseek_v3");
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let gguf = GgufFile::open(&path).unwrap().load(&device(), Some(DType::F32)).unwrap();
    let source =
        tcat_models::ModelSource::resolve(dir.join("config.json").parent().unwrap().to_str().unwrap()).unwrap();
    let family = tcat_models::Model::load(&source, &device(), DType::F32).unwrap();
    let from_gguf = gguf.logits(&batch).unwrap();
    let from_family = family.as_decoder().unwrap().logits(&batch).unwrap();
    let d = masked_max_diff(&from_gguf, &from_family, mask);
    // Against the unscaled model: YaRN changed the outputs, so the comparison means something.
    let unscaled = masked_max_diff(&from_gguf, &exp["logits"], mask);
    let gguf_spec = GgufFile::open(&path).unwrap().spec().unwrap();
    let family_spec = tcat_models::spec_of(&tcat_models::ConfigFile::read(&dir.join("config.json")).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("deepseek2 YaRN: GGUF vs family logits max abs diff {d:.2e} (vs the unscaled model {unscaled:.2e})");
    assert!(d <= 1e-5, "GGUF YaRN differs from the family's by {d}");
    assert!(unscaled > 1e-3, "YaRN left the logits unchanged ({unscaled})");
    let (g, f) = (gguf_spec.single_tower().unwrap(), family_spec.single_tower().unwrap());
    let (gs, fs) = (g.attention.scale_for_layer(0), f.attention.scale_for_layer(0));
    assert!((gs - fs).abs() < 1e-12, "score scale {gs} vs {fs}");
    let (PositionSpec::Rotary(g), PositionSpec::Rotary(f)) = (&g.positions, &f.positions) else { panic!("rotary") };
    assert_eq!((g.layout, g.base, g.fraction), (f.layout, f.base, f.fraction));
    let (
        RopeScalingSpec::Yarn { factor, original_max_positions, beta_fast, beta_slow, attention_factor, truncate },
        RopeScalingSpec::Yarn {
            factor: f2,
            original_max_positions: o2,
            beta_fast: bf2,
            beta_slow: bs2,
            attention_factor: a2,
            truncate: t2,
        },
    ) = (g.scaling, f.scaling)
    else {
        panic!("YaRN on both paths: {:?} / {:?}", g.scaling, f.scaling)
    };
    assert_eq!((factor, original_max_positions, beta_fast, beta_slow, truncate), (f2, o2, bf2, bs2, t2));
    assert!((attention_factor - a2).abs() < 1e-12, "{attention_factor} vs {a2}");
}

#[test]
fn tensor_bytes_count_blocks_as_stored() {
    // Q4_1 stores 32 values in 20 bytes, Q8_0 in 34; f32 takes 4 bytes a value. Metadata and
    // alignment padding are not tensor bytes.
    let path = std::env::temp_dir().join(format!("tcat-tensor-bytes-{}.gguf", std::process::id()));
    let w = Tensor::randn(0f32, 1., (64, 64), &Device::Cpu).unwrap();
    let tensors = [
        ("a.weight", QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()),
        (
            "b.weight",
            QTensor::quantize(&Tensor::randn(0f32, 1., (3, 64), &Device::Cpu).unwrap(), GgmlDType::Q8_0).unwrap(),
        ),
        ("c.weight", QTensor::quantize(&Tensor::ones(7, DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap()),
    ];
    let metadata = [("general.architecture", gguf_file::Value::String("llama".into()))];
    let metadata_refs: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &metadata_refs, &tensor_refs).unwrap();
    let bytes = GgufFile::open(&path).unwrap().tensor_bytes();
    std::fs::remove_file(&path).ok();
    assert_eq!(bytes, 64 * 64 / 32 * 20 + 3 * 64 / 32 * 34 + 7 * 4);
}
