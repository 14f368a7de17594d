//! The bad-input corpus: the `tcat` binary on hostile configs, broken safetensors and GGUF
//! files and bad command-line values. Every case must fail cleanly: exit status 1, exactly one
//! `error:` line that contains the case's needle (the flag, file, field or value at fault),
//! nothing on stdout, no panic, within a time limit, and (where `prlimit` exists) under a 4 GiB address-space
//! limit, so a case that tries to allocate what a header claims aborts instead of passing.
//!
//! The cases are generated at test time from the committed fixtures (tests/fixtures) into a
//! scratch folder: small copies of a fixture with one thing broken. tests/bad_inputs/README.md
//! describes the corpus. `TCAT_BAD_INPUTS_SHOW=1` prints every case's outcome (to see what a
//! new case does before choosing its needle).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcat_testkit::fixture;

/// Longest a case may run.
const TIME_LIMIT: Duration = Duration::from_secs(20);
/// Address space a case may map (`prlimit --as`).
const MEMORY_LIMIT: u64 = 4 << 30;

struct Case {
    name: String,
    args: Vec<String>,
    needle: String,
    /// Paths taken out of the error line before looking for the needle (a generated input's
    /// folder is named after its case, so the needle must come from tcat's own words).
    hide: Vec<String>,
}

/// Where the generated inputs live; removed when the corpus has run.
struct Scratch {
    root: PathBuf,
    count: usize,
}

impl Scratch {
    fn new() -> Self {
        let root = std::env::temp_dir().join(format!("tcat-bad-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Self { root, count: 0 }
    }

    fn dir(&mut self, tag: &str) -> PathBuf {
        self.count += 1;
        let dir = self.root.join(format!("{:03}-{tag}", self.count));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A copy of fixture `name` (its files and module folders, not the expected outputs).
    fn copy_fixture(&mut self, name: &str, tag: &str) -> PathBuf {
        let dir = self.dir(tag);
        copy_tree(&fixture(name), &dir);
        dir
    }

    /// A copy of fixture `name` whose config.json went through `edit`.
    fn config(&mut self, name: &str, tag: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> PathBuf {
        let dir = self.copy_fixture(name, tag);
        let path = dir.join("config.json");
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(config.as_object_mut().unwrap());
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        dir
    }

    /// A copy of fixture `name` whose config.json is `text`.
    fn raw_config(&mut self, name: &str, tag: &str, text: &str) -> PathBuf {
        let dir = self.copy_fixture(name, tag);
        std::fs::write(dir.join("config.json"), text).unwrap();
        dir
    }

    /// A copy of fixture `name` whose model.safetensors is `bytes`.
    fn weights(&mut self, name: &str, tag: &str, bytes: &[u8]) -> PathBuf {
        let dir = self.copy_fixture(name, tag);
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
        dir
    }

    /// A file `model.gguf` holding `bytes`.
    fn gguf(&mut self, tag: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir(tag).join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            std::fs::create_dir_all(to.join(&file)).unwrap();
            copy_tree(&entry.path(), &to.join(&file));
        } else if kind.is_file() && file != "expected.safetensors" {
            std::fs::copy(entry.path(), to.join(&file)).unwrap();
        }
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn case(name: impl Into<String>, args: &[&str], needle: impl Into<String>) -> Case {
    Case { name: name.into(), args: args.iter().map(|a| a.to_string()).collect(), needle: needle.into(), hide: vec![] }
}

/// `tcat forward` on a model, the common way to load one.
fn forward(name: impl Into<String>, model: &Path, out: &Path, needle: impl Into<String>) -> Case {
    let mut case = case(name, &["forward", "--model", &s(model), "--ids", "2,3", "--out", &s(out)], needle);
    let folder = if model.is_dir() { model } else { model.parent().unwrap() };
    case.hide = vec![s(folder)];
    case
}

// ---------------------------------------------------------------- safetensors, written by hand

/// One tensor of a safetensors file.
#[derive(Clone)]
struct Entry {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    data: Vec<u8>,
}

fn read_safetensors(path: &Path) -> Vec<Entry> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut entries: Vec<(u64, Entry)> = header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .map(|(name, v)| {
            let offsets: Vec<u64> = v["data_offsets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            let entry = Entry {
                name,
                dtype: v["dtype"].as_str().unwrap().to_string(),
                shape: v["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect(),
                data: data[offsets[0] as usize..offsets[1] as usize].to_vec(),
            };
            (offsets[0], entry)
        })
        .collect();
    entries.sort_by_key(|(o, _)| *o);
    entries.into_iter().map(|(_, e)| e).collect()
}

fn write_safetensors(entries: &[Entry]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for e in entries {
        let end = offset + e.data.len() as u64;
        header.insert(e.name.clone(), json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    raw_safetensors(
        &Value::Object(header).to_string(),
        &entries.iter().flat_map(|e| e.data.clone()).collect::<Vec<_>>(),
    )
}

fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.as_bytes().to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

/// f32 bytes reinterpreted as another dtype of the same element count.
fn as_dtype(e: &Entry, dtype: &str, size: usize) -> Entry {
    let count = e.data.len() / 4;
    Entry { dtype: dtype.into(), data: vec![0u8; count * size], ..e.clone() }
}

// ---------------------------------------------------------------- GGUF, patched by hand

/// The byte offset of the first tensor info of a GGUF file (after the metadata).
fn gguf_tensor_infos(b: &[u8]) -> usize {
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let size = |t: u32| match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => panic!("value type {t}"),
    };
    let kv = u64_at(16);
    let mut o = 24;
    for _ in 0..kv {
        o += 8 + u64_at(o);
        let t = u32_at(o);
        o += 4;
        match t {
            8 => o += 8 + u64_at(o),
            9 => {
                let (at, n) = (u32_at(o), u64_at(o + 4));
                o += 12;
                for _ in 0..n {
                    o += if at == 8 { 8 + u64_at(o) } else { size(at) };
                }
            }
            t => o += size(t),
        }
    }
    o
}

/// The offset of the value of metadata key `key` (after its type).
fn gguf_value(b: &[u8], key: &str) -> usize {
    let needle = [&(key.len() as u64).to_le_bytes()[..], key.as_bytes()].concat();
    let at = b.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("no key {key}"));
    at + needle.len() + 4
}

fn patched(b: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut out = b.to_vec();
    out[at..at + with.len()].copy_from_slice(with);
    out
}

fn gguf_string(text: &str) -> Vec<u8> {
    [&(text.len() as u64).to_le_bytes()[..], text.as_bytes()].concat()
}

/// `b` with one more metadata entry (`key`, type, value bytes) at the front.
fn gguf_with_kv(b: &[u8], key: &str, value_type: u32, value: &[u8]) -> Vec<u8> {
    let kv = u64::from_le_bytes(b[16..24].try_into().unwrap());
    let mut out = b[..16].to_vec();
    out.extend((kv + 1).to_le_bytes());
    out.extend(gguf_string(key));
    out.extend(value_type.to_le_bytes());
    out.extend(value);
    out.extend(&b[24..]);
    out
}

/// A GGUF header with `tensors` and `kvs` counts and `rest` after it.
fn gguf_header(version: u32, tensors: u64, kvs: u64, rest: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend(tensors.to_le_bytes());
    out.extend(kvs.to_le_bytes());
    out.extend(rest);
    out
}

// ---------------------------------------------------------------- the corpus

fn corpus(scratch: &mut Scratch) -> Vec<Case> {
    let mut cases = Vec::new();
    let out_dir = scratch.dir("out");
    let out = out_dir.join("out.safetensors");

    // ---- configs: wrong types, zero / huge sizes, unknown model types, missing fields
    type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Value>)>;
    let set = |key: &'static str, value: Value| -> Edit { Box::new(move |c| drop(c.insert(key.into(), value))) };
    let remove = |key: &'static str| -> Edit { Box::new(move |c| drop(c.remove(key))) };
    let config_cases: Vec<(&str, &str, Edit, &str)> = vec![
        ("bert", "model-type-unknown", set("model_type", json!("frobnicator")), "frobnicator"),
        ("bert", "model-type-number", set("model_type", json!(42)), "`model_type`"),
        ("bert", "model-type-missing", remove("model_type"), "model_type"),
        ("bert", "pad-token-outside-vocabulary", set("pad_token_id", json!(99999)), "`pad_token_id`"),
        ("bert", "hidden-size-zero", set("hidden_size", json!(0)), "hidden_size"),
        ("bert", "hidden-size-negative", set("hidden_size", json!(-32)), "hidden_size"),
        ("bert", "hidden-size-string", set("hidden_size", json!("32")), "hidden_size"),
        ("bert", "hidden-size-float", set("hidden_size", json!(32.5)), "hidden_size"),
        ("bert", "hidden-size-huge", set("hidden_size", json!(u64::MAX)), "hidden_size"),
        ("bert", "hidden-size-missing", remove("hidden_size"), "hidden_size"),
        ("bert", "hidden-size-null", set("hidden_size", Value::Null), "hidden_size"),
        ("bert", "heads-zero", set("num_attention_heads", json!(0)), "num_attention_heads"),
        ("bert", "heads-not-dividing", set("num_attention_heads", json!(3)), "num_attention_heads"),
        ("bert", "heads-huge", set("num_attention_heads", json!(u64::MAX)), "num_attention_heads"),
        ("bert", "layers-huge", set("num_hidden_layers", json!(1_000_000_000u64)), "1000000000 layers"),
        ("bert", "layers-negative", set("num_hidden_layers", json!(-1)), "num_hidden_layers"),
        ("bert", "vocab-zero", set("vocab_size", json!(0)), "vocab_size"),
        ("bert", "vocab-huge", set("vocab_size", json!(1u64 << 62)), "vocab_size (4611686018427387904)"),
        ("bert", "intermediate-zero", set("intermediate_size", json!(0)), "intermediate_size"),
        ("bert", "intermediate-huge", set("intermediate_size", json!(1u64 << 40)), "feed-forward 1099511627776"),
        ("bert", "positions-zero", set("max_position_embeddings", json!(0)), "max_position_embeddings"),
        (
            "bert",
            "positions-huge",
            set("max_position_embeddings", json!(1u64 << 50)),
            "position_embeddings.weight` has shape [64, 32], expected [1125899906842624, 32]",
        ),
        (
            "bert",
            "type-vocab-huge",
            set("type_vocab_size", json!(1u64 << 50)),
            "token_type_embeddings.weight` has shape [2, 32], expected [1125899906842624, 32]",
        ),
        ("bert", "eps-string", set("layer_norm_eps", json!("tiny")), "layer_norm_eps"),
        ("bert", "activation-unknown", set("hidden_act", json!("frobnicate")), "frobnicate"),
        ("bert", "is-decoder", set("is_decoder", json!(true)), "is_decoder"),
        ("gpt2", "gpt2-embd-zero", set("n_embd", json!(0)), "n_embd"),
        ("gpt2", "gpt2-heads-zero", set("n_head", json!(0)), "n_head"),
        ("gpt2", "gpt2-layers-huge", set("n_layer", json!(u64::MAX)), "num_layers (18446744073709551615)"),
        ("gpt2", "gpt2-positions-zero", set("n_positions", json!(0)), "n_positions"),
        ("gpt2", "gpt2-activation-unknown", set("activation_function", json!("frobnicate")), "frobnicate"),
        ("llama", "llama-kv-heads-zero", set("num_key_value_heads", json!(0)), "num_key_value_heads"),
        ("llama", "llama-kv-heads-not-dividing", set("num_key_value_heads", json!(3)), "num_key_value_heads"),
        ("llama", "llama-head-dim-zero", set("head_dim", json!(0)), "head_dim (found 4, 2, 0)"),
        ("llama", "llama-head-dim-huge", set("head_dim", json!(1u64 << 40)), "of 1099511627776 features"),
        (
            "llama",
            "llama-rope-type-unknown",
            set("rope_parameters", json!({"rope_type": "frobnicate", "rope_theta": 10000.0})),
            "frobnicate",
        ),
        (
            "llama",
            "llama-quantization-config",
            set("quantization_config", json!({"quant_method": "gptq"})),
            "quantization_config",
        ),
    ];
    for (fixture_name, tag, edit, needle) in config_cases {
        let dir = scratch.config(fixture_name, tag, edit);
        cases.push(forward(format!("config/{tag}"), &dir, &out, needle));
    }
    for (tag, text, needle) in [
        ("config-not-json", "{ this is not json", "config.json: malformed JSON"),
        ("config-empty", "", "config.json: malformed JSON"),
        ("config-array", "[1, 2, 3]", "config.json: expected a JSON object"),
        ("config-string", "\"bert\"", "config.json: expected a JSON object"),
    ] {
        let dir = scratch.raw_config("bert", tag, text);
        cases.push(forward(format!("config/{tag}"), &dir, &out, needle));
    }

    // ---- safetensors: truncated, wrong header, wrong shapes, integer dtypes
    let weights_path = fixture("bert").join("model.safetensors");
    let weights = std::fs::read(&weights_path).unwrap();
    let entries = read_safetensors(&weights_path);
    let word = entries.iter().position(|e| e.name.ends_with("word_embeddings.weight")).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let cut = |n: usize| weights[..n].to_vec();
    let safetensors_cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("st-empty", vec![], "the file has 0 bytes"),
        ("st-4-bytes", cut(4), "the file has 4 bytes"),
        ("st-length-only", cut(8), "exceeds the file (8 bytes)"),
        ("st-cut-in-header", cut(8 + header_len / 2), "exceeds the file"),
        ("st-cut-after-header", cut(8 + header_len), "data section of 0 bytes"),
        ("st-cut-in-data", cut(weights.len() / 2), "data ends at byte"),
        ("st-cut-last-byte", cut(weights.len() - 1), "data ends at byte"),
        (
            "st-header-length-max",
            [&u64::MAX.to_le_bytes()[..], &weights[8..]].concat(),
            "header length 18446744073709551615",
        ),
        (
            "st-header-length-huge",
            [&(1u64 << 40).to_le_bytes()[..], &weights[8..]].concat(),
            "header length 1099511627776",
        ),
        ("st-header-not-json", raw_safetensors("{ not json at all", &[0; 16]), "malformed JSON"),
        ("st-header-array", raw_safetensors("[1, 2, 3]", &[0; 16]), "not a JSON object"),
        ("st-header-binary", raw_safetensors("\u{1}\u{2}\u{3}\u{4}", &[0; 16]), "malformed JSON"),
        (
            "st-offsets-past-end",
            raw_safetensors(r#"{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1048576]}}"#, &[0; 16]),
            "tensor `x`: data ends at byte 1048576",
        ),
        (
            "st-offsets-reversed",
            raw_safetensors(r#"{"x": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}"#, &[0; 16]),
            "`data_offsets`",
        ),
        (
            "st-unknown-dtype",
            raw_safetensors(r#"{"x": {"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]}}"#, &[0; 16]),
            "`Q9`",
        ),
        (
            "st-shape-overflows",
            raw_safetensors(
                r#"{"x": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 16]}}"#,
                &[0; 16],
            ),
            "shape [4294967296, 4294967296, 16] overflows",
        ),
        (
            "st-shape-mismatches-data",
            raw_safetensors(r#"{"x": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}"#, &[0; 16]),
            "invalid shape",
        ),
    ];
    for (tag, bytes, needle) in safetensors_cases {
        let dir = scratch.weights("bert", tag, &bytes);
        cases.push(forward(format!("safetensors/{tag}"), &dir, &out, needle));
    }
    // Valid files whose tensors do not fit the config.
    let mut tensor_cases: Vec<(&str, Vec<Entry>, String)> = Vec::new();
    let word_name = entries[word].name.clone();
    {
        let mut e = entries.clone();
        let w = &mut e[word];
        w.shape = vec![w.shape[0], w.shape[1] + 1];
        w.data = vec![0u8; (w.shape[0] * w.shape[1] * 4) as usize];
        tensor_cases.push(("st-wrong-shape", e, format!("`{word_name}` has shape [128, 33], expected [128, 32]")));
    }
    {
        let mut e = entries.clone();
        let w = &mut e[word];
        w.shape = vec![w.shape[0] * w.shape[1]];
        tensor_cases.push(("st-wrong-rank", e, format!("`{word_name}` has shape [4096], expected [128, 32]")));
    }
    {
        let mut e = entries.clone();
        e.remove(word);
        tensor_cases.push(("st-missing-tensor", e, format!("missing tensor `{word_name}`")));
    }
    for (tag, dtype, size) in
        [("st-int64", "I64", 8), ("st-int32", "I32", 4), ("st-uint8", "U8", 1), ("st-bool", "BOOL", 1)]
    {
        let mut e = entries.clone();
        e[word] = as_dtype(&e[word], dtype, size);
        tensor_cases.push((tag, e, format!("`{word_name}` is stored as {dtype}, expected a float dtype")));
    }
    for (tag, e, needle) in tensor_cases {
        let dir = scratch.weights("bert", tag, &write_safetensors(&e));
        cases.push(forward(format!("safetensors/{tag}"), &dir, &out, needle));
    }

    // ---- GGUF: bad magic, alignment 0, huge counts, truncated, hostile metadata and tensors
    let gguf = std::fs::read(fixture("llama31-gguf").join("model.gguf")).unwrap();
    let infos = gguf_tensor_infos(&gguf);
    let first_name_len = u64::from_le_bytes(gguf[infos..infos + 8].try_into().unwrap()) as usize;
    let n_dims_at = infos + 8 + first_name_len;
    let dim0_at = n_dims_at + 4;
    let n_dims = u32::from_le_bytes(gguf[n_dims_at..n_dims_at + 4].try_into().unwrap()) as usize;
    let type_at = dim0_at + 8 * n_dims;
    let offset_at = type_at + 4;
    let gguf_cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("gguf-empty", vec![], "the magic number needs 4 bytes at offset 0, but the file has only 0 bytes"),
        ("gguf-bad-magic", patched(&gguf, 0, b"GGUX"), "expected \"GGUF\""),
        ("gguf-version-99", patched(&gguf, 4, &99u32.to_le_bytes()), "version 99"),
        ("gguf-v3-labelled-v1", patched(&gguf, 4, &1u32.to_le_bytes()), "read as GGUF version 1"),
        ("gguf-cut-in-magic", gguf[..3].to_vec(), "the file has only 3 bytes"),
        ("gguf-cut-in-counts", gguf[..20].to_vec(), "the metadata count needs 8 bytes"),
        ("gguf-cut-in-metadata", gguf[..200].to_vec(), "27 metadata entries cannot fit"),
        ("gguf-cut-in-tensor-infos", gguf[..infos + 10].to_vec(), "the name of tensor 0 needs"),
        ("gguf-cut-in-data", gguf[..gguf.len() / 2].to_vec(), "runs past the end of the data section"),
        ("gguf-cut-last-byte", gguf[..gguf.len() - 1].to_vec(), "runs past the end of the data section"),
        ("gguf-kv-count-max", gguf_header(3, 0, u64::MAX, &[]), "18446744073709551615 metadata entries"),
        ("gguf-tensor-count-max", gguf_header(3, u64::MAX, 0, &[]), "18446744073709551615 tensors"),
        ("gguf-kv-count-huge", patched(&gguf, 16, &(1u64 << 40).to_le_bytes()), "1099511627776 metadata entries"),
        ("gguf-tensor-count-huge", patched(&gguf, 8, &(1u64 << 40).to_le_bytes()), "1099511627776 tensors"),
        ("gguf-key-length-max", gguf_header(3, 0, 1, &u64::MAX.to_le_bytes()), "metadata entries cannot fit"),
        (
            "gguf-string-length-huge",
            gguf_header(
                3,
                0,
                1,
                &[gguf_string("general.name"), 8u32.to_le_bytes().to_vec(), (1u64 << 40).to_le_bytes().to_vec()]
                    .concat(),
            ),
            "string of 1099511627776 bytes",
        ),
        (
            "gguf-array-length-huge",
            gguf_header(
                3,
                0,
                1,
                &[
                    gguf_string("tokenizer.ggml.tokens"),
                    9u32.to_le_bytes().to_vec(),
                    10u32.to_le_bytes().to_vec(),
                    (1u64 << 60).to_le_bytes().to_vec(),
                ]
                .concat(),
            ),
            "an array of 1152921504606846976",
        ),
        (
            "gguf-value-type-unknown",
            gguf_header(3, 0, 1, &[gguf_string("general.name"), 99u32.to_le_bytes().to_vec()].concat()),
            "unknown value type 99",
        ),
        (
            "gguf-alignment-zero",
            gguf_with_kv(&gguf, "general.alignment", 4, &0u32.to_le_bytes()),
            "`general.alignment` is 0",
        ),
        (
            "gguf-alignment-odd",
            gguf_with_kv(&gguf, "general.alignment", 4, &3u32.to_le_bytes()),
            "`general.alignment` is 3",
        ),
        (
            "gguf-architecture-unknown",
            patched(&gguf, gguf_value(&gguf, "general.architecture") + 8, b"frobn"),
            "`frobn`",
        ),
        (
            "gguf-block-count-max",
            patched(&gguf, gguf_value(&gguf, "llama.block_count"), &u32::MAX.to_le_bytes()),
            "4294967295 layers",
        ),
        (
            "gguf-head-count-zero",
            patched(&gguf, gguf_value(&gguf, "llama.attention.head_count"), &0u32.to_le_bytes()),
            "`llama.attention.head_count` is 0",
        ),
        (
            "gguf-embedding-length-zero",
            patched(&gguf, gguf_value(&gguf, "llama.embedding_length"), &0u32.to_le_bytes()),
            "`llama.embedding_length` is 0",
        ),
        ("gguf-tensor-dims-max", patched(&gguf, n_dims_at, &100u32.to_le_bytes()), "100 dimensions"),
        ("gguf-tensor-dim-huge", patched(&gguf, dim0_at, &u64::MAX.to_le_bytes()), "[18446744073709551615]"),
        ("gguf-tensor-type-unknown", patched(&gguf, type_at, &200u32.to_le_bytes()), "unknown type 200"),
        (
            "gguf-tensor-offset-past-end",
            patched(&gguf, offset_at, &(1u64 << 40).to_le_bytes()),
            "data at offset 1099511627776",
        ),
    ];
    for (tag, bytes, needle) in gguf_cases {
        let path = scratch.gguf(tag, &bytes);
        cases.push(forward(format!("gguf/{tag}"), &path, &out, needle));
    }

    // ---- the files around the weights: tokenizer, sentence-transformers modules, shard index,
    // generation config, chat template
    let with_files = |scratch: &mut Scratch, name: &str, tag: &str, files: &[(&str, &str)], remove: &[&str]| {
        let dir = scratch.copy_fixture(name, tag);
        for file in remove {
            std::fs::remove_file(dir.join(file)).unwrap();
        }
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    };
    let labse_config = |max_seq_length: &str| {
        let text = std::fs::read_to_string(fixture("labse-like").join("sentence_bert_config.json")).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        config["max_seq_length"] = serde_json::from_str(max_seq_length).unwrap();
        config.to_string()
    };
    let index = "model.safetensors.index.json";
    // (fixture, tag, files written, files removed, command and its arguments, needle)
    type FileCase<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, Vec<&'a str>, Vec<&'a str>, &'a str);
    let file_cases: Vec<FileCase> = vec![
        (
            "bert",
            "tokenizer-not-json",
            vec![("tokenizer.json", "{ nope".into())],
            vec![],
            vec!["embed", "x"],
            "tokenizer.json: key must be a string",
        ),
        (
            "bert",
            "tokenizer-no-model",
            vec![("tokenizer.json", "{}".into())],
            vec![],
            vec!["embed", "x"],
            "tokenizer.json: Model missing",
        ),
        (
            "labse-like",
            "max-seq-length-one",
            vec![("sentence_bert_config.json", labse_config("1"))],
            vec![],
            vec!["embed", "the cat"],
            "a limit of 1 tokens cannot hold the tokenizer's 2 special tokens",
        ),
        (
            "labse-like",
            "max-seq-length-string",
            vec![("sentence_bert_config.json", labse_config("\"long\""))],
            vec![],
            vec!["embed", "x"],
            "max_seq_length is \"long\"; expected a positive integer",
        ),
        (
            "labse-like",
            "max-seq-length-zero",
            vec![("sentence_bert_config.json", labse_config("0"))],
            vec![],
            vec!["embed", "x"],
            "max_seq_length is 0; expected a positive integer",
        ),
        (
            "labse-like",
            "sentence-config-not-json",
            vec![("sentence_bert_config.json", "{ nope".into())],
            vec![],
            vec!["embed", "x"],
            "sentence_bert_config.json: not valid JSON",
        ),
        (
            "labse-like",
            "module-unknown",
            vec![("modules.json", r#"[{"type": "sentence_transformers.models.Frob", "path": "x", "idx": 0}]"#.into())],
            vec![],
            vec!["embed", "x"],
            "module `sentence_transformers.models.Frob` is not supported",
        ),
        (
            "bert",
            "index-escapes-folder",
            vec![(
                index,
                r#"{"weight_map": {"bert.embeddings.word_embeddings.weight": "../../../etc/passwd"}}"#.into(),
            )],
            vec!["model.safetensors"],
            vec!["forward", "--ids", "2"],
            "names the shard `../../../etc/passwd`, expected a file name inside the folder",
        ),
        (
            "bert",
            "index-missing-shard",
            vec![(index, r#"{"weight_map": {"x": "missing-00001.safetensors"}}"#.into())],
            vec!["model.safetensors"],
            vec!["forward", "--ids", "2"],
            "missing-00001.safetensors: weight file not found",
        ),
        (
            "bert",
            "index-not-an-object",
            vec![(index, "[1]".into())],
            vec!["model.safetensors"],
            vec!["forward", "--ids", "2"],
            "`weight_map`",
        ),
        (
            "gpt2",
            "chat-template-broken",
            vec![("tokenizer_config.json", r#"{"chat_template": "{% for m in messages %}{{ m.content "}"#.into())],
            vec![],
            vec!["generate", "--prompt", "hi", "--chat", "--max-new-tokens", "2"],
            "chat template: syntax error",
        ),
    ];
    for (fixture_name, tag, files, removed, command, needle) in file_cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        let dir = with_files(scratch, fixture_name, tag, &files, &removed);
        let mut args = vec![command[0].to_string(), "--model".into(), s(&dir)];
        args.extend(command[1..].iter().map(|a| a.to_string()));
        if command[0] == "forward" {
            args.extend(["--out".into(), s(&out)]);
        }
        cases.push(Case { name: format!("files/{tag}"), args, needle: needle.into(), hide: vec![s(&dir)] });
    }

    // ---- the command line: ids, dtype, device, out paths, numbers, bench sizes
    let bert = s(&fixture("bert"));
    let gpt2 = s(&fixture("gpt2"));
    let o = s(&out);
    let missing_dir = s(&out_dir.join("no/such/dir/out.safetensors"));
    let file_as_dir = s(&fixture("bert").join("config.json").join("out.safetensors"));
    let out_dir_s = s(&out_dir);
    // Links: one to itself, and one into a folder that does not exist.
    let looped = out_dir.join("loop.safetensors");
    let dangling = out_dir.join("dangling.safetensors");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("loop.safetensors", &looped).unwrap();
        std::os::unix::fs::symlink("no/such/dir/x.safetensors", &dangling).unwrap();
    }
    let (looped, dangling) = (s(&looped), s(&dangling));
    let max = u64::MAX.to_string();
    let fwd = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["forward", "--model", &bert];
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    };
    let gen_ = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["generate", "--model", &gpt2, "--prompt-ids", "1,2"];
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    };
    let bench = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["bench", "attention"];
        for (flag, value) in [("--seq", "8"), ("--repeats", "1")] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    };
    let cli: Vec<(&str, Vec<String>, &str)> = vec![
        ("ids-not-a-number", fwd(&["--ids", "2,x", "--out", &o]), "`x` is not a token id"),
        ("ids-negative", fwd(&["--ids", "-1", "--out", &o]), "`-1` is not a token id"),
        ("ids-past-u32", fwd(&["--ids", "4294967296", "--out", &o]), "`4294967296` is not a token id"),
        ("ids-empty", fwd(&["--ids", "", "--out", &o]), "--ids: no token ids"),
        ("ids-only-commas", fwd(&["--ids", ",,", "--out", &o]), "--ids: no token ids"),
        ("ids-past-vocab", fwd(&["--ids", "2,999", "--out", &o]), "token id 999"),
        ("ids-past-positions", fwd(&["--ids", &"1,".repeat(65), "--out", &o]), "65 tokens"),
        ("token-types-count", fwd(&["--ids", "2,3", "--token-type-ids", "0", "--out", &o]), "--token-type-ids"),
        ("token-types-past-vocab", fwd(&["--ids", "2,3", "--token-type-ids", "0,7", "--out", &o]), "token type"),
        (
            "token-types-twice",
            fwd(&["--ids", "2,3", "--token-type-ids", "0,0", "--token-type-ids", "0,0", "--out", &o]),
            "--token-type-ids: given 2 times",
        ),
        ("dtype-unknown", fwd(&["--ids", "2", "--dtype", "f8", "--out", &o]), "unknown dtype"),
        ("dtype-integer", fwd(&["--ids", "2", "--dtype", "u8", "--out", &o]), "u8"),
        ("device-unknown", fwd(&["--ids", "2", "--device", "tpu", "--out", &o]), "tpu"),
        ("device-bad-ordinal", fwd(&["--ids", "2", "--device", "cuda:x", "--out", &o]), "not a device number"),
        ("out-is-a-directory", fwd(&["--ids", "2", "--out", &out_dir_s]), "is a directory"),
        ("out-missing-directory", fwd(&["--ids", "2", "--out", &missing_dir]), "is not usable"),
        ("out-under-a-file", fwd(&["--ids", "2", "--out", &file_as_dir]), "is not a directory"),
        ("out-link-loop", fwd(&["--ids", "2", "--out", &looped]), "symbolic links (a loop?)"),
        ("out-link-into-missing-directory", fwd(&["--ids", "2", "--out", &dangling]), "no/such/dir is not usable"),
        ("out-missing-value", fwd(&["--ids", "2", "--out"]), "'--out <OUT>'"),
        (
            "model-missing",
            vec![
                "forward".into(),
                "--model".into(),
                "/no/such/model".into(),
                "--ids".into(),
                "2".into(),
                "--out".into(),
                o.clone(),
            ],
            "/no/such/model",
        ),
        (
            "model-preset-unknown",
            vec![
                "forward".into(),
                "--model".into(),
                "preset:nope".into(),
                "--ids".into(),
                "2".into(),
                "--out".into(),
                o.clone(),
            ],
            "preset:nope",
        ),
        ("head-reward-on-encoder", fwd(&["--ids", "2", "--head", "reward", "--out", &o]), "--head reward"),
        ("head-unknown", fwd(&["--ids", "2", "--head", "critic", "--out", &o]), "'--head <HEAD>'"),
        ("router-stats-on-encoder", fwd(&["--ids", "2", "--router-stats", "--out", &o]), "--router-stats"),
        ("decoder-ids-on-encoder", fwd(&["--ids", "2", "--decoder-ids", "2", "--out", &o]), "encoder-decoder"),
        ("unknown-flag", fwd(&["--ids", "2", "--frobnicate", "--out", &o]), "--frobnicate"),
        ("unknown-command", vec!["frobnicate".into()], "frobnicate"),
        ("max-new-tokens-negative", gen_(&["--max-new-tokens", "-1"]), "'--max-new-tokens <MAX_NEW_TOKENS>'"),
        ("max-new-tokens-past-positions", gen_(&["--max-new-tokens", "64"]), "tokens"),
        ("top-p-above-one", gen_(&["--max-new-tokens", "2", "--top-p", "2"]), "top-p"),
        ("top-p-negative", gen_(&["--max-new-tokens", "2", "--top-p", "-0.5"]), "top-p"),
        ("temperature-negative", gen_(&["--max-new-tokens", "2", "--temperature", "-1"]), "temperature"),
        (
            "temperature-not-a-number",
            gen_(&["--max-new-tokens", "2", "--temperature", "warm"]),
            "'--temperature <TEMPERATURE>'",
        ),
        ("seed-negative", gen_(&["--max-new-tokens", "2", "--seed", "-1"]), "'--seed <SEED>'"),
        (
            "prompt-ids-bad",
            vec![
                "generate".into(),
                "--model".into(),
                gpt2.clone(),
                "--prompt-ids".into(),
                "1,y".into(),
                "--max-new-tokens".into(),
                "1".into(),
            ],
            "`y` is not a token id",
        ),
        (
            "prompt-empty",
            vec![
                "generate".into(),
                "--model".into(),
                gpt2.clone(),
                "--prompt".into(),
                "".into(),
                "--max-new-tokens".into(),
                "1".into(),
            ],
            "no tokens",
        ),
        (
            "generate-on-encoder",
            vec![
                "generate".into(),
                "--model".into(),
                bert.clone(),
                "--prompt-ids".into(),
                "1".into(),
                "--max-new-tokens".into(),
                "1".into(),
            ],
            "causal language model",
        ),
        ("embed-on-decoder", vec!["embed".into(), "--model".into(), gpt2.clone(), "x".into()], "encoder"),
        (
            "embed-pooling-unknown",
            vec!["embed".into(), "--model".into(), bert.clone(), "--pooling".into(), "max".into(), "x".into()],
            "'--pooling <POOLING>'",
        ),
        (
            "fill-mask-top-k-zero",
            vec!["fill-mask".into(), "--model".into(), bert.clone(), "--top-k".into(), "0".into(), "a [MASK]".into()],
            "--top-k",
        ),
        (
            "fill-mask-without-mask",
            vec!["fill-mask".into(), "--model".into(), bert.clone(), "no mask here".into()],
            "[MASK]",
        ),
        ("catalog-unknown", vec!["catalog".into(), "show".into(), "frobnicator".into()], "frobnicator"),
        ("bench-heads-max", bench(&["--heads", &max]), "--heads 18446744073709551615"),
        ("bench-head-dim-max", bench(&["--head-dim", &max]), "--head-dim 18446744073709551615"),
        ("bench-batch-max", bench(&["--batch", &max]), "--batch 18446744073709551615"),
        ("bench-seq-max", bench(&["--seq", &max]), "--seq 18446744073709551615"),
        (
            "bench-product-wraps-to-zero",
            bench(&["--batch", "4294967296", "--heads", "4294967296"]),
            "exceed the address space",
        ),
        ("bench-heads-zero", bench(&["--heads", "0"]), "--heads must be at least 1"),
        ("bench-batch-negative", bench(&["--batch", "-1"]), "'--batch <BATCH>'"),
        ("bench-seq-zero", bench(&["--seq", "0"]), "--seq"),
        ("bench-seq-not-a-number", bench(&["--seq", "8,abc"]), "--seq"),
        ("bench-repeats-zero", bench(&["--repeats", "0"]), "--repeats must be at least 1"),
        ("bench-variant-unknown", bench(&["--variants", "warp"]), "unknown attention variant `warp`"),
        ("bench-window-zero", bench(&["--variants", "sliding:0"]), "sliding"),
        ("bench-gqa-not-dividing", bench(&["--variants", "gqa:3"]), "`gqa:3`: 3 does not divide the 8 query heads"),
        ("bench-svg-missing-directory", bench(&["--svg", &missing_dir]), "--svg"),
    ];
    for (tag, args, needle) in cli {
        cases.push(Case { name: format!("cli/{tag}"), args, needle: needle.into(), hide: vec![s(&out_dir)] });
    }
    // Memory-dependent bench cases: the CPU's memory is checked, other devices' is not.
    if std::env::var("TCAT_TEST_DEVICE").is_err() {
        cases.push(Case {
            name: "cli/bench-inputs-past-memory".into(),
            args: bench(&["--batch", "1000000", "--heads", "1000", "--seq", "1000", "--head-dim", "1000"]),
            needle: "alone would need".into(),
            hide: vec![],
        });
        cases.push(Case {
            name: "cli/bench-scores-past-memory".into(),
            args: bench(&["--variants", "dense", "--seq", "1000000"]),
            needle: "dense at seq 1000000: skipped".into(),
            hide: vec![],
        });
    }
    cases
}

// ---------------------------------------------------------------- running a case

struct Outcome {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    timed_out: bool,
}

fn prlimit_available() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(case: &Case, limit_memory: bool) -> Outcome {
    let tcat = env!("CARGO_BIN_EXE_tcat");
    let mut command = if limit_memory {
        let mut c = Command::new("prlimit");
        c.arg(format!("--as={MEMORY_LIMIT}")).arg("--").arg(tcat);
        c
    } else {
        Command::new(tcat)
    };
    command.args(&case.args);
    if let Ok(device) = std::env::var("TCAT_TEST_DEVICE")
        && !case.args.iter().any(|a| a == "--device")
    {
        command.args(["--device", &device]);
    }
    // No hub access from the corpus: a bad path must not turn into a download.
    // With backtraces on, an error that drags one along shows up as more than one line.
    command
        .env("HF_HUB_OFFLINE", "1")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().expect("tcat starts");
    // Read stderr on a thread so a chatty child cannot block on a full pipe.
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Outcome {
        status: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        elapsed,
        timed_out,
    }
}

/// What is wrong with `outcome` for `case`, if anything.
fn judge(case: &Case, outcome: &Outcome) -> Option<String> {
    if outcome.timed_out {
        return Some(format!("still running after {TIME_LIMIT:?}"));
    }
    if outcome.stderr.contains("panicked") {
        return Some("panicked".into());
    }
    if outcome.status != Some(1) {
        return Some(format!("exit status {:?}, expected 1", outcome.status));
    }
    if !outcome.stdout.is_empty() {
        return Some(format!("printed {:?} on stdout before failing", outcome.stdout));
    }
    let errors: Vec<&str> = outcome.stderr.lines().filter(|l| l.starts_with("error:")).collect();
    if errors.len() != 1 {
        return Some(format!("{} `error:` lines, expected 1", errors.len()));
    }
    let line = case.hide.iter().fold(errors[0].to_string(), |line, h| line.replace(h.as_str(), "<input>"));
    if !line.contains(&case.needle) {
        return Some(format!("the error does not name {:?}", case.needle));
    }
    None
}

#[test]
fn every_bad_input_fails_cleanly() {
    let mut scratch = Scratch::new();
    let cases = corpus(&mut scratch);
    assert!(cases.len() >= 80, "{} cases", cases.len());
    let limit_memory = prlimit_available();
    if !limit_memory {
        eprintln!("prlimit not found: the cases run without the {MEMORY_LIMIT}-byte address-space limit");
    }
    let show = std::env::var_os("TCAT_BAD_INPUTS_SHOW").is_some();
    // Two workers: the cases are independent processes.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(case) = cases.get(i) else { break };
                        done.push((i, run(case, limit_memory)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    for (i, outcome) in &results {
        let case = &cases[*i];
        let verdict = judge(case, outcome);
        if show {
            println!(
                "{} [{:?}, {:.1} s] {}\n    {}",
                if verdict.is_none() { "ok  " } else { "FAIL" },
                outcome.status,
                outcome.elapsed.as_secs_f64(),
                case.name,
                outcome.stderr.trim().replace('\n', "\n    ")
            );
        }
        if let Some(why) = verdict {
            let tail: String = outcome.stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            failures.push(format!(
                "{}: {why}\n    tcat {}\n    stderr (last lines): {tail}",
                case.name,
                case.args.join(" ")
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch.root);
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
