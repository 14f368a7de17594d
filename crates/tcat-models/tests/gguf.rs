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
