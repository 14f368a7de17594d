//! Hostile and damaged inputs on the loading path (issue 15): sizes that would abort the
//! process, GGUF headers that would panic inside candle, integer weights that would be
//! converted silently, and errors that must name the file and the field, key or tensor.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use common::*;
use tcat_models::gguf::GgufFile;
use tcat_models::{Model, ModelSource};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcat-hostile-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match ModelSource::resolve(dir.to_str().unwrap()).and_then(|s| Model::load(&s, &device(), DType::F32)) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// A copy of fixture `name` with its config's JSON edited by `config` and its weights by `edit`.
fn copy_with(
    name: &str,
    tag: &str,
    config: impl Fn(&mut serde_json::Value),
    edit: impl Fn(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let dir = temp_dir(&format!("{name}-{tag}"));
    let mut weights = candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut weights);
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap()).unwrap();
    config(&mut cfg);
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    dir
}

fn llama_with(tag: &str, field: &str, value: serde_json::Value) -> String {
    let dir = copy_with("llama", tag, |c| c[field] = value.clone(), |_| {});
    load_err(&dir)
}

#[test]
fn hostile_config_sizes_are_refused_before_allocating() {
    let huge = serde_json::json!(1u64 << 40);
    for field in ["head_dim", "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"] {
        let err = llama_with(&format!("huge-{field}"), field, huge.clone());
        eprintln!("{field}: {err}");
        assert!(err.contains("model.safetensors") || err.contains("config.json"), "{field}: {err}");
        assert!(err.contains("parameters") || err.contains("overflows") || err.contains(field), "{field}: {err}");
    }
    // Products that overflow u64 are named, not wrapped.
    let dir = copy_with(
        "llama",
        "overflow",
        |c| {
            c["head_dim"] = serde_json::json!(u64::MAX / 2);
            c["num_attention_heads"] = serde_json::json!(4);
        },
        |_| {},
    );
    let err = load_err(&dir);
    assert!(err.contains("overflows") && err.contains("head_dim"), "{err}");
}

#[test]
fn gpt_neo_attention_types_expansion_is_checked() {
    let dir = copy_with(
        "gpt_neo",
        "types",
        |c| c["attention_types"] = serde_json::json!([[["global", "local"], 1u64 << 60]]),
        |_| {},
    );
    let err = load_err(&dir);
    assert!(err.contains("attention_types") && err.contains("num_layers"), "{err}");
}

#[test]
fn integer_weights_are_refused_by_name() {
    let dir = copy_with(
        "llama",
        "i32-embed",
        |_| {},
        |w| {
            let t = w["model.embed_tokens.weight"].to_dtype(DType::I64).unwrap();
            w.insert("model.embed_tokens.weight".into(), t);
        },
    );
    let err = load_err(&dir);
    assert!(err.contains("model.embed_tokens.weight") && err.contains("I64") && err.contains("F32"), "{err}");
    let dir = copy_with(
        "llama",
        "u8-norm",
        |_| {},
        |w| {
            let t = w["model.layers.0.input_layernorm.weight"].to_dtype(DType::U8).unwrap();
            w.insert("model.layers.0.input_layernorm.weight".into(), t);
        },
    );
    let err = load_err(&dir);
    assert!(err.contains("model.layers.0.input_layernorm.weight") && err.contains("U8"), "{err}");
    let dir = copy_with(
        "bert",
        "u32-proj",
        |_| {},
        |w| {
            let name = "bert.encoder.layer.0.attention.self.query.weight";
            let t = w[name].to_dtype(DType::U32).unwrap();
            w.insert(name.into(), t);
        },
    );
    let err = load_err(&dir);
    assert!(err.contains("bert.encoder.layer.0.attention.self.query.weight") && err.contains("U32"), "{err}");
}

#[test]
fn mistyped_config_fields_name_their_path() {
    let err = llama_with("seq-heads", "num_attention_heads", serde_json::json!([4]));
    assert!(err.contains("config.json") && err.contains("`num_attention_heads`") && err.contains("sequence"), "{err}");
    let err = llama_with("str-act", "hidden_act", serde_json::json!(["silu"]));
    assert!(err.contains("`hidden_act`"), "{err}");
    let dir = copy_with(
        "llama",
        "rope-factor",
        |c| c["rope_scaling"] = serde_json::json!({"type": "linear", "factor": "2.0"}),
        |_| {},
    );
    let err = load_err(&dir);
    assert!(err.contains("`rope_scaling.factor`") && err.contains("string"), "{err}");
    let err = llama_with("str-theta", "rope_theta", serde_json::json!("1e4"));
    assert!(err.contains("`rope_theta`") && err.contains("expected a number"), "{err}");
}

#[test]
fn empty_shard_index_is_named() {
    let dir = temp_dir("empty-index");
    std::fs::copy(fixture("llama").join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"metadata": {}, "weight_map": {}}"#).unwrap();
    let err = ModelSource::resolve(dir.to_str().unwrap()).expect_err("an empty index must fail").to_string();
    assert!(err.contains("model.safetensors.index.json") && err.contains("lists no shards"), "{err}");
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map": {"a": ""}}"#).unwrap();
    let err = ModelSource::resolve(dir.to_str().unwrap()).expect_err("an empty shard name must fail").to_string();
    assert!(err.contains("model.safetensors.index.json") && err.contains("shard ``"), "{err}");
}

#[test]
fn damaged_safetensors_header_is_named() {
    let dir = copy_with("llama", "st-header", |_| {}, |_| {});
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let err = load_err(&dir);
    assert!(err.contains("model.safetensors") && err.contains("header length"), "{err}");
}

// GGUF --------------------------------------------------------------------------------------

/// The llama31 GGUF fixture rewritten with candle's writer after `edit` changes its metadata.
fn gguf_with(tag: &str, edit: impl Fn(&mut HashMap<String, gguf_file::Value>)) -> PathBuf {
    gguf_from("llama31-gguf", tag, edit)
}

/// Fixture `name`'s GGUF file rewritten after `edit` changes its metadata.
fn gguf_from(name: &str, tag: &str, edit: impl Fn(&mut HashMap<String, gguf_file::Value>)) -> PathBuf {
    let src = fixture(name).join("model.gguf");
    let mut file = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata = content.metadata.clone();
    edit(&mut metadata);
    let tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| (name.clone(), content.tensor(&mut file, name, &Device::Cpu).unwrap()))
        .collect();
    let path = temp_dir(&format!("gguf-{tag}")).join("model.gguf");
    let mut out = std::fs::File::create(&path).unwrap();
    let meta: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &meta, &tensors).unwrap();
    path
}

fn gguf_err(path: &Path) -> String {
    match GgufFile::open(path).and_then(|f| f.load_llama(&device(), None)) {
        Ok(_) => panic!("loading {} should fail", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gguf_hostile_sizes_are_refused() {
    use gguf_file::Value;
    for (key, value, expect) in [
        ("llama.block_count", Value::U32(u32::MAX), "parameters"),
        ("llama.rope.dimension_count", Value::U32(u32::MAX), "llama.rope.dimension_count"),
        ("llama.attention.key_length", Value::U32(u32::MAX), "parameters"),
        ("llama.embedding_length", Value::U32(1 << 30), "token_embd.weight"),
        ("llama.attention.head_count", Value::U32(u32::MAX), "head"),
        ("llama.attention.head_count_kv", Value::U32(u32::MAX), "head"),
        ("llama.feed_forward_length", Value::U32(u32::MAX), "parameters"),
        ("llama.expert_count", Value::U32(u32::MAX), "llama.expert_used_count"),
    ] {
        let path = gguf_with(&key.replace('.', "-"), |m| {
            m.insert(key.into(), value.clone());
        });
        let err = gguf_err(&path);
        eprintln!("{key}: {err}");
        assert!(err.contains("model.gguf") && err.contains(expect), "{key}: {err}");
    }
}

#[test]
fn gguf_hostile_expert_counts_are_refused() {
    use gguf_file::Value;
    for (key, value) in
        [("llama.expert_count", Value::U32(u32::MAX)), ("llama.expert_used_count", Value::U32(u32::MAX))]
    {
        let path = gguf_from("mixtral-gguf", &key.replace('.', "-"), |m| {
            m.insert(key.into(), value.clone());
        });
        let err = gguf_err(&path);
        eprintln!("{key}: {err}");
        assert!(err.contains("model.gguf") && err.contains(&value.to_u32().unwrap().to_string()), "{key}: {err}");
    }
}

#[test]
fn gguf_key_of_the_wrong_type_is_named() {
    use gguf_file::Value;
    for key in ["llama.block_count", "general.architecture", "llama.rope.freq_base"] {
        let path = gguf_with(&format!("type-{}", key.replace('.', "-")), |m| {
            let v = if key == "general.architecture" { Value::U32(1) } else { Value::String("x".into()) };
            m.insert(key.into(), v);
        });
        let err = gguf_err(&path);
        assert!(err.contains(key), "{key}: {err}");
    }
}

/// A tensor info as written: name, dims innermost first, type id, data offset.
type RawTensor = (&'static str, Vec<u64>, u32, u64);

/// A GGUF file written byte by byte (version 3): `kvs` as (key, type id, raw value bytes),
/// `tensors` as (name, dims innermost first, type id, offset), then `data` after the
/// 32-aligned header.
fn raw_gguf(tag: &str, kvs: &[(&str, u32, Vec<u8>)], tensors: &[RawTensor], data: usize) -> PathBuf {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    for (k, ty, v) in kvs {
        string(&mut b, k);
        b.extend(ty.to_le_bytes());
        b.extend(v);
    }
    for (name, dims, ty, offset) in tensors {
        string(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend(vec![0u8; data]);
    let path = temp_dir(&format!("raw-{tag}")).join("model.gguf");
    std::fs::write(&path, b).unwrap();
    path
}

fn open_err(path: &Path) -> String {
    match GgufFile::open(path) {
        Ok(_) => panic!("opening {} should fail", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gguf_headers_are_checked_before_candle_reads_them() {
    let arch = ("general.architecture", 8u32, {
        let mut v = 5u64.to_le_bytes().to_vec();
        v.extend(b"llama");
        v
    });
    let ok_tensor = || vec![("t.weight", vec![4u64, 2], 0u32, 0u64)];
    // A sane file opens.
    let path = raw_gguf("sane", std::slice::from_ref(&arch), &ok_tensor(), 32);
    GgufFile::open(&path).unwrap();
    // Alignment 0 (a division by zero inside candle) and not a power of two.
    for (tag, a) in [("align0", 0u32), ("align3", 3)] {
        let path = raw_gguf(tag, &[arch.clone(), ("general.alignment", 4, a.to_le_bytes().to_vec())], &ok_tensor(), 32);
        let err = open_err(&path);
        assert!(
            err.contains("model.gguf") && err.contains("general.alignment") && err.contains("power of two"),
            "{err}"
        );
    }
    // Alignment of the wrong type.
    let path = raw_gguf("align-type", &[arch.clone(), ("general.alignment", 6, 1.0f32.to_le_bytes().to_vec())], &[], 0);
    let err = open_err(&path);
    assert!(err.contains("general.alignment") && err.contains("f32") && err.contains("u32"), "{err}");
    // Dimensions: zero, overflowing, too many; unknown type; data past the end; misaligned.
    let cases: Vec<(&str, Vec<RawTensor>, &str)> = vec![
        ("zero", vec![("t.weight", vec![4, 0], 0, 0)], "include a zero"),
        ("overflow", vec![("t.weight", vec![u64::MAX / 2, 4], 0, 0)], "overflow"),
        // Fits as an element count, overflows as f32 bytes (found by the gguf fuzz target).
        ("overflow-bytes", vec![("t.weight", vec![(1u64 << 62) + 1], 0, 0)], "overflow in bytes"),
        ("ndims", vec![("t.weight", vec![1, 1, 1, 1, 1], 0, 0)], "5 dimensions"),
        ("type", vec![("t.weight", vec![4, 2], 99, 0)], "unknown type 99"),
        ("past-end", vec![("t.weight", vec![64, 64], 0, 0)], "runs past the end"),
        ("offset", vec![("t.weight", vec![4, 2], 0, u64::MAX - 31)], "runs past the end"),
        ("misaligned", vec![("t.weight", vec![4, 2], 0, 4)], "not a multiple of the alignment"),
        ("block", vec![("t.weight", vec![4, 2], 2, 0)], "block"),
        ("twice", vec![("t.weight", vec![4], 0, 0), ("t.weight", vec![4], 0, 0)], "twice"),
    ];
    for (tag, tensors, expect) in cases {
        let path = raw_gguf(tag, std::slice::from_ref(&arch), &tensors, 32);
        let err = open_err(&path);
        assert!(err.contains("model.gguf") && err.contains("t.weight") && err.contains(expect), "{tag}: {err}");
    }
    // Counts no file of this size can hold.
    let mut path_bytes = std::fs::read(raw_gguf("count", std::slice::from_ref(&arch), &ok_tensor(), 32)).unwrap();
    path_bytes[8..16].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
    let path = temp_dir("raw-count2").join("model.gguf");
    std::fs::write(&path, &path_bytes).unwrap();
    let err = open_err(&path);
    assert!(err.contains("tensors cannot fit"), "{err}");
    // A string longer than the file.
    let path = raw_gguf("string", &[("general.architecture", 8, u64::MAX.to_le_bytes().to_vec())], &[], 0);
    let err = open_err(&path);
    assert!(err.contains("general.architecture") && err.contains("bytes"), "{err}");
    // An array longer than the file.
    let mut v = 4u32.to_le_bytes().to_vec();
    v.extend((u64::MAX / 8).to_le_bytes());
    let path = raw_gguf("array", &[("tokenizer.ggml.token_type", 9, v)], &[], 0);
    let err = open_err(&path);
    assert!(err.contains("tokenizer.ggml.token_type") && err.contains("cannot fit"), "{err}");
}

#[test]
fn gguf_swapped_dimensions_are_named() {
    // token_embd stored [hidden, vocab] instead of [vocab, hidden].
    let src = fixture("llama31-gguf").join("model.gguf");
    let mut file = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let q = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            let q = if name == "output.weight" || name == "blk.0.ffn_down.weight" {
                let t = q.dequantize(&Device::Cpu).unwrap().t().unwrap().contiguous().unwrap();
                QTensor::quantize(&t, candle_core::quantized::GgmlDType::F32).unwrap()
            } else {
                q
            };
            (name.clone(), q)
        })
        .collect();
    let path = temp_dir("gguf-swapped").join("model.gguf");
    let mut out = std::fs::File::create(&path).unwrap();
    let meta: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &meta, &tensors).unwrap();
    let err = gguf_err(&path);
    assert!(err.contains("model.gguf") && (err.contains("output.weight") || err.contains("ffn_down")), "{err}");
    assert!(err.contains("expected"), "{err}");
}

#[test]
fn sequence_length_errors_name_the_family_field() {
    let dev = device();
    for (name, field) in [("llama", "max_position_embeddings"), ("gpt2", "n_positions")] {
        let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
        let model = Model::load(&source, &dev, DType::F32).unwrap();
        let decoder = model.as_decoder().unwrap();
        let long = vec![1u32; decoder.max_positions() + 1];
        let batch = tcat_models::Batch::right_padded(&[long], None, 0, &dev).unwrap();
        let err = decoder.logits(&batch).unwrap_err().to_string();
        assert!(err.contains(field), "{name}: {err}");
        if name == "llama" {
            assert!(!err.contains("n_positions"), "{err}");
        }
    }
}

#[test]
fn pytorch_weights_are_checked_against_the_config() {
    // The pickle's tensor table is read first: a config needing more than the file holds is
    // refused before any tensor is read.
    let dir = temp_dir("bin-vocab");
    std::fs::copy(fixture("distilbert-bin").join("pytorch_model.bin"), dir.join("pytorch_model.bin")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("distilbert-bin").join("config.json")).unwrap()).unwrap();
    cfg["vocab_size"] = serde_json::json!(1u64 << 40);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let err = load_err(&dir);
    assert!(err.contains("pytorch_model.bin") && err.contains("weight files hold only"), "{err}");
}

#[test]
fn every_family_refuses_hostile_sizes() {
    let huge = serde_json::json!(1u64 << 40);
    let cases: [(&str, &[&str]); 10] = [
        ("gpt2", &["n_positions", "n_embd", "n_layer", "vocab_size", "n_inner"]),
        ("ctrl", &["n_positions", "n_embd", "n_layer", "dff"]),
        ("bert", &["max_position_embeddings", "hidden_size", "intermediate_size", "type_vocab_size"]),
        ("bloom", &["hidden_size", "n_layer", "vocab_size"]),
        ("opt", &["max_position_embeddings", "hidden_size", "ffn_dim"]),
        ("gpt_neox", &["hidden_size", "intermediate_size"]),
        ("gptj", &["n_embd", "rotary_dim"]),
        ("gpt_bigcode", &["n_positions", "n_embd"]),
        ("openai-gpt", &["n_positions", "n_embd"]),
        ("distilbert", &["max_position_embeddings", "dim", "hidden_dim"]),
    ];
    for (name, fields) in cases {
        for field in fields {
            let dir = copy_with(name, &format!("huge-{field}"), |c| c[*field] = huge.clone(), |_| {});
            let err = load_err(&dir);
            eprintln!("{name} {field}: {err}");
            assert!(err.contains(&dir.display().to_string()), "{name} {field}: {err}");
        }
    }
}

/// A copy of the LaBSE-like sentence-transformers folder.
fn labse_copy(tag: &str) -> PathBuf {
    let src = fixture("labse-like");
    let dir = temp_dir(tag);
    for sub in ["", "1_Pooling", "2_Dense", "3_Normalize"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(src.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    dir
}

#[test]
fn sentence_module_fields_of_the_wrong_type_are_named() {
    let edit = |tag: &str, file: &str, key: &str, value: serde_json::Value| -> String {
        let dir = labse_copy(tag);
        let path = dir.join(file);
        let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if let Some(list) = json.as_array_mut() {
            list[2][key] = value;
        } else {
            json[key] = value;
        }
        std::fs::write(&path, json.to_string()).unwrap();
        match tcat_models::SentenceConfig::read(&dir) {
            Ok(_) => panic!("{tag} should fail"),
            Err(e) => e.to_string(),
        }
    };
    let err = edit("st-act", "2_Dense/config.json", "activation_function", serde_json::json!(["Tanh"]));
    assert!(err.contains("2_Dense") && err.contains("`activation_function`"), "{err}");
    let err = edit("st-in", "2_Dense/config.json", "in_features", serde_json::json!("32"));
    assert!(err.contains("`in_features`") && err.contains("invalid type"), "{err}");
    let err = edit("st-flag", "1_Pooling/config.json", "pooling_mode_cls_token", serde_json::json!("true"));
    assert!(err.contains("1_Pooling") && err.contains("`pooling_mode_cls_token`"), "{err}");
    let err = edit("st-type", "modules.json", "type", serde_json::json!(3));
    assert!(err.contains("modules.json") && err.contains("`[2].type`"), "{err}");
    let err = edit("st-path", "modules.json", "path", serde_json::json!("../../etc"));
    assert!(err.contains("modules.json") && err.contains("`[2].path`"), "{err}");
}

#[test]
fn integer_dense_module_weights_are_refused() {
    // A sentence-transformers Dense module whose weight is stored as I64.
    let dir = labse_copy("labse-int");
    let dense = dir.join("2_Dense").join("model.safetensors");
    let mut weights = candle_core::safetensors::load(&dense, &Device::Cpu).unwrap();
    let t = weights["linear.weight"].to_dtype(DType::I64).unwrap();
    weights.insert("linear.weight".into(), t);
    candle_core::safetensors::save(&weights, &dense).unwrap();
    let sentence = tcat_models::SentenceConfig::read(&dir).unwrap().expect("a sentence-transformers folder");
    let hidden = Tensor::zeros((1, 3, 32), DType::F32, &device()).unwrap();
    let mask = Tensor::ones((1, 3), DType::U32, &device()).unwrap();
    let err = sentence.embed(&hidden, &mask).unwrap_err().to_string();
    assert!(err.contains("2_Dense") && err.contains("linear.weight") && err.contains("I64"), "{err}");
}

#[test]
fn values_that_would_give_nan_are_refused() {
    let err = llama_with("neg-eps", "rms_norm_eps", serde_json::json!(-1.0));
    assert!(err.contains("epsilon") && err.contains("-1"), "{err}");
    let dir = copy_with("llama", "zero-theta", |c| c["rope_parameters"]["rope_theta"] = serde_json::json!(0.0), |_| {});
    let err = load_err(&dir);
    assert!(err.contains("rope_theta") && err.contains("> 0"), "{err}");
    use gguf_file::Value;
    for (key, tag) in [("llama.rope.freq_base", "nan-base"), ("llama.attention.layer_norm_rms_epsilon", "nan-eps")] {
        let path = gguf_with(tag, |m| {
            m.insert(key.into(), Value::F32(f32::NAN));
        });
        let err = gguf_err(&path);
        assert!(err.contains("model.gguf") && err.contains("NaN"), "{key}: {err}");
    }
}

#[test]
fn opt_affine_flag_of_the_wrong_type_is_named() {
    let dir = copy_with("opt", "affine", |c| c["layer_norm_elementwise_affine"] = serde_json::json!("false"), |_| {});
    let err = load_err(&dir);
    assert!(err.contains("config.json") && err.contains("`layer_norm_elementwise_affine`"), "{err}");
}

#[test]
fn gguf_tokenizer_keys_of_the_wrong_type_are_named() {
    use gguf_file::Value;
    let strings = |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
    let base = |m: &mut HashMap<String, Value>| {
        m.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
        m.insert("tokenizer.ggml.tokens".into(), strings(&["a", "b", "ab"]));
        m.insert("tokenizer.ggml.merges".into(), strings(&["a b"]));
        m.insert("tokenizer.ggml.pre".into(), Value::String("gpt2".into()));
        m.remove("tokenizer.ggml.token_type");
    };
    let path = gguf_with("tok-ok", base);
    tcat_models::gguf::tokenizer(&path).unwrap();
    let path = gguf_with("tok-pre", |m| {
        base(m);
        m.insert("tokenizer.ggml.pre".into(), Value::U32(7));
    });
    let err = tcat_models::gguf::tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("model.gguf") && err.contains("tokenizer.ggml.pre"), "{err}");
    let path = gguf_with("tok-types", |m| {
        base(m);
        m.insert("tokenizer.ggml.token_type".into(), strings(&["1", "1", "3"]));
    });
    let err = tcat_models::gguf::tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.token_type"), "{err}");
    let path = gguf_with("tok-model", |m| {
        base(m);
        m.insert("tokenizer.ggml.model".into(), Value::U32(1));
    });
    let err = tcat_models::gguf::tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.model"), "{err}");
}

#[test]
fn gguf_sentencepiece_tokenizers_outside_gemma_are_refused() {
    use gguf_file::Value;
    // A `llama` (SentencePiece) vocabulary is rebuilt for Gemma files only; in a LLaMA file it
    // is refused by name rather than rebuilt the way Gemma's is.
    let path = gguf_with("tok-spm", |m| {
        m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        m.insert("tokenizer.ggml.tokens".into(), Value::Array(vec![Value::String("<unk>".into())]));
    });
    let err = tcat_models::gguf::tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("model.gguf") && err.contains("Gemma files only") && err.contains("`llama`"), "{err}");
    // A Gemma file whose BOS id points past the vocabulary is named, not a panic.
    let path = gguf_with("tok-gemma-bos", |m| {
        m.insert("general.architecture".into(), Value::String("gemma3".into()));
        m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        m.insert("tokenizer.ggml.tokens".into(), Value::Array(vec![Value::String("<unk>".into())]));
        m.remove("tokenizer.ggml.token_type");
        m.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(7));
    });
    let err = tcat_models::gguf::tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.bos_token_id") && err.contains("past the 1 tokens"), "{err}");
}

#[test]
fn presets_too_large_for_memory_are_refused() {
    use tcat_models::spec::{ArchSpec, HeadSpec, TowerSpec};
    // 2^36 × 4096 parameters (about 10^15 bytes in f32): refused before a single one is drawn.
    let spec =
        ArchSpec::decoder(TowerSpec::decoder(1 << 36, 4096, 2, 32, 128), HeadSpec::Lm { tied: true, bias: false });
    let err = Model::preset(&spec, "huge", 0, &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(err.contains("preset:huge") && err.contains("memory available"), "{err}");
    // Sizes whose product overflows are named.
    let spec = ArchSpec::decoder(
        TowerSpec::decoder(usize::MAX / 2, 1 << 20, 2, 1 << 10, 128),
        HeadSpec::Lm { tied: true, bias: false },
    );
    let err = Model::preset(&spec, "overflow", 0, &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(err.contains("preset:overflow") && err.contains("overflows"), "{err}");
}

#[test]
fn model_type_of_the_wrong_type_is_named() {
    let err = llama_with("model-type", "model_type", serde_json::json!(["llama"]));
    assert!(err.contains("config.json") && err.contains("`model_type`: invalid type"), "{err}");
}

#[test]
fn opt_position_offset_overflow_is_named() {
    // OPT's learned positions start at offset 2: max_position_embeddings + 2 must not wrap.
    let dir = copy_with("opt", "offset", |c| c["max_position_embeddings"] = serde_json::json!(u64::MAX - 1), |_| {});
    let err = load_err(&dir);
    assert!(err.contains("offset") && err.contains("overflows"), "{err}");
}

/// A decoder whose context is longer than the rotary table cap: it loads at once (the table is
/// built for the cap) and refuses longer sequences naming the cap.
fn assert_capped(model: Model, context: usize) {
    let cap = tcat_models::build::ROTARY_TABLE_CAP;
    let decoder = model.as_decoder().unwrap();
    assert_eq!(decoder.max_positions(), cap);
    let err = decoder.check_length(cap + 1).unwrap_err().to_string();
    assert!(err.contains(&format!("cap of {cap} positions")) && err.contains(&context.to_string()), "{err}");
    decoder.check_length(cap).unwrap();
}

#[test]
fn huge_contexts_build_a_capped_rotary_table() {
    let started = std::time::Instant::now();
    let context = 1usize << 50;
    let dir =
        copy_with("llama", "huge-positions", |c| c["max_position_embeddings"] = serde_json::json!(context), |_| {});
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    assert_capped(Model::load(&source, &device(), DType::F32).unwrap(), context);
    let path = gguf_with("huge-context", |m| {
        m.insert("llama.context_length".into(), gguf_file::Value::U32(u32::MAX));
    });
    let source = ModelSource::resolve(path.to_str().unwrap()).unwrap();
    assert_capped(Model::load_gguf(&source, &device(), None).unwrap(), u32::MAX as usize);
    // Other rotary families.
    for (name, field) in [("gpt_neox", "max_position_embeddings"), ("gptj", "n_positions")] {
        let dir = copy_with(name, "huge-positions", |c| c[field] = serde_json::json!(context), |_| {});
        let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
        assert_capped(Model::load(&source, &device(), DType::F32).unwrap(), context);
    }
    // Contexts under the cap keep their own limit and field name.
    let dir = copy_with("llama", "long-positions", |c| c["max_position_embeddings"] = serde_json::json!(4096), |_| {});
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    let model = Model::load(&source, &device(), DType::F32).unwrap();
    let err = model.as_decoder().unwrap().check_length(4097).unwrap_err().to_string();
    assert!(err.contains("max_position_embeddings"), "{err}");
    assert!(started.elapsed().as_secs() < 60, "capped tables took {:?}", started.elapsed());
}
