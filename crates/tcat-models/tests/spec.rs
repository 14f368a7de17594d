//! Architectures as data: the GGUF and safetensors paths of LLaMA build one spec, Llama 3.1's
//! `rope_freqs.weight` and linear rope scaling in GGUF files match transformers, specs survive
//! a JSON round trip, and LaBSE-style sentence-transformers folders (a `Dense` module after
//! pooling) match sentence-transformers.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use tcat_models::gguf::GgufFile;
use tcat_models::{Batch, ConfigFile, GenerationConfig, Model, ModelSource, SentenceConfig, generate};

const TOL: f32 = 1e-4;

fn gguf(name: &str) -> std::path::PathBuf {
    fixture(name).join("model.gguf")
}

fn hf_spec(name: &str) -> tcat_spec::ArchSpec {
    let config = ConfigFile::read(&fixture(name).join("config.json")).unwrap();
    tcat_models::spec_of(&config).unwrap()
}

#[test]
fn gguf_and_safetensors_build_the_same_llama_spec() {
    let from_gguf = GgufFile::open(&gguf("llama-scaled-gguf")).unwrap().spec().unwrap();
    assert_eq!(from_gguf, hf_spec("llama-scaled"));
}

#[test]
fn llama31_gguf_spec_differs_only_in_where_the_scaling_is_stored() {
    let mut from_gguf = GgufFile::open(&gguf("llama31-gguf")).unwrap().spec().unwrap();
    let hf = hf_spec("llama-llama3");
    let (tcat_spec::Stacks::Decoder { tower: g }, tcat_spec::Stacks::Decoder { tower: h }) =
        (&mut from_gguf.stacks, &hf.stacks)
    else {
        panic!("both are decoders")
    };
    let (tcat_spec::PositionSpec::Rotary(gr), tcat_spec::PositionSpec::Rotary(hr)) = (&mut g.positions, h.positions)
    else {
        panic!("both rotate")
    };
    assert_eq!(gr.scaling, tcat_spec::RopeScalingSpec::StoredFactors);
    assert!(matches!(hr.scaling, tcat_spec::RopeScalingSpec::Llama3 { .. }));
    gr.scaling = hr.scaling;
    assert_eq!(from_gguf, hf);
}

/// Logits of the fixture's ragged batch and its greedy continuation, from a GGUF file, against
/// the transformers outputs of the checkpoint it was converted from.
fn check_gguf(file: &str, reference: &str, dtype: Option<DType>) {
    let exp = expected(reference);
    let model = GgufFile::open(&gguf(file)).unwrap().load_llama(&device(), dtype).unwrap();
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let d = masked_max_diff(&model.logits(&batch).unwrap(), &exp["logits"], mask);
    eprintln!("{file}: logits max abs diff {d:.2e}");
    assert!(d <= TOL, "{file} logits differ from transformers by {d}");
    let to_u32 = |t: &Tensor| -> Vec<u32> { t.to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect() };
    let (prompt, want) = (to_u32(&exp["prompt_ids"]), to_u32(&exp["greedy_ids"]));
    let config =
        GenerationConfig { max_new_tokens: want.len() - prompt.len(), stop_tokens: Some(vec![]), ..Default::default() };
    let got = generate(&model, &[prompt], &config, |_, _| {}).unwrap();
    assert_eq!(got[0], want, "{file} greedy ids");
}

#[test]
fn llama31_gguf_with_rope_freqs_matches_transformers() {
    check_gguf("llama31-gguf", "llama-llama3", Some(DType::F32));
    check_gguf("llama31-gguf", "llama-llama3", None);
}

#[test]
fn llama_gguf_with_linear_rope_scaling_matches_transformers() {
    check_gguf("llama-scaled-gguf", "llama-scaled", Some(DType::F32));
}

/// The rope_freqs tensor is honoured: the same file without it is visibly wrong.
#[test]
fn llama31_gguf_without_rope_freqs_does_not_match() {
    let path = std::env::temp_dir().join(format!("tcat-llama31-nofreqs-{}.gguf", std::process::id()));
    rewrite_gguf(&gguf("llama31-gguf"), &path, |_, _| {}, |name| name != "rope_freqs.weight");
    let exp = expected("llama-llama3");
    let model = GgufFile::open(&path).unwrap().load_llama(&device(), Some(DType::F32)).unwrap();
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let d = masked_max_diff(&model.logits(&batch).unwrap(), &exp["logits"], mask);
    std::fs::remove_file(&path).ok();
    assert!(d > 1e-3, "dropping rope_freqs.weight changed nothing ({d})");
}

#[test]
fn gguf_rope_scaling_that_cannot_be_honoured_is_refused() {
    let path = std::env::temp_dir().join(format!("tcat-llama-yarn-{}.gguf", std::process::id()));
    rewrite_gguf(
        &gguf("llama-scaled-gguf"),
        &path,
        |key, value| {
            if key == "llama.rope.scaling.type" {
                *value = candle_core::quantized::gguf_file::Value::String("yarn".into());
            }
        },
        |_| true,
    );
    let err = match GgufFile::open(&path).unwrap().load_llama(&device(), None) {
        Ok(_) => panic!("a yarn-scaled GGUF must be refused"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_file(&path).ok();
    assert!(err.contains("llama.rope.scaling.type `yarn` is not supported"), "{err}");
}

/// Copies a GGUF file, editing metadata values and keeping the tensors `keep` accepts.
fn rewrite_gguf(
    from: &std::path::Path,
    to: &std::path::Path,
    edit: impl Fn(&str, &mut candle_core::quantized::gguf_file::Value),
    keep: impl Fn(&str) -> bool,
) {
    rewrite_gguf_tensors(from, to, edit, keep, |_, q| q);
}

/// [`rewrite_gguf`] that also replaces tensors (`map` gets each kept tensor by name).
fn rewrite_gguf_tensors(
    from: &std::path::Path,
    to: &std::path::Path,
    edit: impl Fn(&str, &mut candle_core::quantized::gguf_file::Value),
    keep: impl Fn(&str) -> bool,
    map: impl Fn(&str, candle_core::quantized::QTensor) -> candle_core::quantized::QTensor,
) {
    use candle_core::quantized::gguf_file;
    let mut file = std::fs::File::open(from).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata: Vec<(String, gguf_file::Value)> = content.metadata.clone().into_iter().collect();
    for (key, value) in metadata.iter_mut() {
        edit(key, value);
    }
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .filter(|name| keep(name))
        .map(|name| (name.clone(), map(name, content.tensor(&mut file, name, &Device::Cpu).unwrap())))
        .collect();
    let metadata_refs: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(to).unwrap(), &metadata_refs, &tensor_refs).unwrap();
}

#[test]
fn every_fixture_spec_survives_json() {
    for name in [
        "bert",
        "roberta",
        "distilbert",
        "gpt2",
        "gpt_bigcode",
        "gpt_neo",
        "gpt_neox",
        "gptj",
        "llama",
        "mistral",
        "opt-350m-like",
        "bloom",
        "ctrl",
        "openai-gpt",
        "mixtral",
        "qwen2_moe",
        "olmoe",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3",
    ] {
        let spec = hf_spec(name);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<tcat_spec::ArchSpec>(&json).unwrap(), spec, "{name}");
    }
}

#[test]
fn labse_like_dense_module_matches_sentence_transformers() {
    let dir = fixture("labse-like");
    let exp = expected("labse-like");
    let sentence = SentenceConfig::read(&dir).unwrap().expect("a sentence-transformers folder");
    assert_eq!(sentence.pooling, tcat_blocks::SentencePooling::Cls);
    assert_eq!(sentence.dense.len(), 1);
    assert!(sentence.normalize);
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    let model = Model::load(&source, &device(), DType::F32).unwrap();
    let encoder = model.as_encoder().unwrap();
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, encoder.pad_token_id(), &device()).unwrap();
    let hidden = encoder.hidden_states(&batch).unwrap();
    let got = sentence.embed(&hidden, batch.attention_mask()).unwrap();
    let d = max_diff(&got, &exp["embeddings"]);
    eprintln!("labse-like: embeddings max abs diff {d:.2e}");
    assert!(d <= TOL, "LaBSE-style embeddings differ by {d}");
}

/// A tiny Transformer-XL-style decoder (relative positions with `u`, `v`, no absolute table).
fn xl_preset() -> tcat_models::DecoderModel {
    use tcat_spec::*;
    let tower = TowerSpec::decoder(64, 32, 2, 4, 64)
        .with_positions(PositionSpec::TransformerXl { mem_len: 16, clamp_len: 0, biases: XlBiases::Shared })
        .with_norm(NormSpec::RmsNorm { eps: 1e-6 });
    let spec = ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false });
    let model = Model::preset(&spec, "xl-test", 7, &Device::Cpu, DType::F32).unwrap();
    model.into_decoder().unwrap()
}

/// Segment-level recurrence: the second segment read with the first one's states in memory
/// gives the logits of one pass over both (Dai et al. 2019, §3.2, with a memory that holds the
/// whole first segment).
#[test]
fn transformer_xl_segment_memory_equals_one_pass_over_both_segments() {
    let model = xl_preset();
    let ids: Vec<u32> = (1..=10).collect();
    let all = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let batch = Batch::right_padded(std::slice::from_ref(&ids), None, 0, &Device::Cpu).unwrap();
    let one_pass = model.logits(&batch).unwrap();
    let mut memory = model.new_memory(16);
    let first = model.logits_with_memory(&all.narrow(1, 0, 6).unwrap(), &mut memory).unwrap();
    let second = model.logits_with_memory(&all.narrow(1, 6, 4).unwrap(), &mut memory).unwrap();
    assert!(max_diff(&first, &one_pass.narrow(1, 0, 6).unwrap()) < 1e-5);
    let d = max_diff(&second, &one_pass.narrow(1, 6, 4).unwrap());
    assert!(d < 1e-5, "second segment with memory differs from one pass by {d}");
    // Without the memory the second segment sees only itself: visibly different.
    let mut empty = model.new_memory(16);
    let alone = model.logits_with_memory(&all.narrow(1, 6, 4).unwrap(), &mut empty).unwrap();
    assert!(max_diff(&alone, &one_pass.narrow(1, 6, 4).unwrap()) > 1e-3);
}

#[test]
fn mixtral_gguf_builds_the_safetensors_spec_and_matches_transformers() {
    let mut from_gguf = GgufFile::open(&gguf("mixtral-gguf")).unwrap().spec().unwrap();
    let hf = hf_spec("mixtral");
    // The GGUF writer's tokenizer metadata names its own special ids.
    from_gguf.tokens = hf.tokens.clone();
    assert_eq!(from_gguf, hf);
    check_gguf("mixtral-gguf", "mixtral", Some(DType::F32));
    check_gguf("mixtral-gguf", "mixtral", None);
}

/// Experts stored quantized (the fixture's stacked experts re-written as Q8_0) are split from
/// the stack block-wise and stay quantized, one matrix per expert; the model still gives
/// transformers' greedy tokens, and its logits stay near the dense load of the same file.
#[test]
fn mixtral_gguf_quantized_experts_stay_quantized() {
    use candle_core::quantized::{GgmlDType, QTensor};
    let path = std::env::temp_dir().join(format!("tcat-mixtral-q8-{}.gguf", std::process::id()));
    rewrite_gguf_tensors(
        &gguf("mixtral-gguf"),
        &path,
        |_, _| {},
        |_| true,
        |name, q| match name.contains("_exps") {
            true => QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), GgmlDType::Q8_0).unwrap(),
            false => q,
        },
    );
    let quantized = GgufFile::open(&path).unwrap().load_llama(&device(), None).unwrap();
    let dense = GgufFile::open(&path).unwrap().load_llama(&device(), Some(DType::F32)).unwrap();
    for (model, held_quantized) in [(&quantized, true), (&dense, false)] {
        for (i, layer) in model.stack().layers().iter().enumerate() {
            let experts = layer.parts().1.as_experts().expect("every Mixtral layer is sparse").experts();
            assert_eq!(experts.len(), 4);
            for linear in experts.iter().flat_map(|e| e.projections()) {
                assert_eq!(linear.is_quantized(), held_quantized, "layer {i}: an expert projection");
            }
        }
    }
    let exp = expected("mixtral");
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let (q_logits, d_logits) = (quantized.logits(&batch).unwrap(), dense.logits(&batch).unwrap());
    let to_dense = masked_max_diff(&q_logits, &d_logits, mask);
    let to_reference = masked_max_diff(&q_logits, &exp["logits"], mask);
    eprintln!("Q8_0 experts: logits vs dense load {to_dense:.2e}, vs transformers {to_reference:.2e}");
    assert!(to_dense < 0.05 && to_reference < 0.05, "Q8_0 experts moved the logits by {to_dense} / {to_reference}");
    assert!(to_reference > 1e-6, "the experts were not re-quantized");
    let to_u32 = |t: &Tensor| -> Vec<u32> { t.to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect() };
    let (prompt, want) = (to_u32(&exp["prompt_ids"]), to_u32(&exp["greedy_ids"]));
    let config =
        GenerationConfig { max_new_tokens: want.len() - prompt.len(), stop_tokens: Some(vec![]), ..Default::default() };
    let got = generate(&quantized, &[prompt], &config, |_, _| {}).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(got[0], want, "greedy ids with Q8_0 experts");
}

/// The routers' logits per layer and the load-balancing loss equal transformers'
/// (`output_router_logits=True`; its loss over the real tokens of the padded batch, before the
/// coefficient).
#[test]
fn mixtral_router_logits_and_aux_loss_match_transformers() {
    let exp = expected("mixtral");
    let source = ModelSource::resolve(fixture("mixtral").to_str().unwrap()).unwrap();
    let model = Model::load(&source, &device(), DType::F32).unwrap();
    let decoder = model.as_decoder().unwrap();
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let report = decoder.logits_with_router(&batch).unwrap();
    assert_eq!(report.routers.len(), 2);
    for (layer, router) in report.routers.iter().enumerate() {
        let got = router.logits.reshape(((), 4)).unwrap();
        // Padded positions differ (their inputs are the pad embedding either way, but the
        // reference runs the padded batch too): compare every row.
        let d = max_diff(&got, &exp[&format!("router_logits.{layer}")]);
        assert!(d <= TOL, "layer {layer} router logits differ by {d}");
    }
    let aux = report.aux_loss.unwrap();
    let d = max_diff(&aux, &exp["aux_loss"]);
    assert!(d <= 1e-5, "aux loss {aux} differs from transformers' by {d}");
    assert_eq!(report.router_load.dims(), &[2, 4]);
}

/// Heads whose values are wider than their keys change the computation: refused by key.
#[test]
fn gguf_value_width_other_than_the_key_width_is_refused() {
    let path = std::env::temp_dir().join(format!("tcat-llama-vlen-{}.gguf", std::process::id()));
    rewrite_gguf(
        &gguf("llama-scaled-gguf"),
        &path,
        |key, value| {
            if key == "llama.attention.value_length" {
                *value = candle_core::quantized::gguf_file::Value::U32(16);
            }
        },
        |_| true,
    );
    let err = match GgufFile::open(&path).unwrap().load_llama(&device(), None) {
        Ok(_) => panic!("a value width other than the key width must be refused"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_file(&path).ok();
    assert!(err.contains("llama.attention.value_length"), "{err}");
}

/// MoE config fields the blocks cannot honour are refused by name, and transformers' defaults
/// are the ones applied where a field is absent.
#[test]
fn moe_family_configs_are_checked_by_field() {
    let edited = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut config = ConfigFile::read(&fixture(name).join("config.json")).unwrap();
        edit(&mut config.json);
        tcat_models::spec_of(&config)
    };
    let err = edited("qwen2_moe", &|j| j["mlp_only_layers"] = serde_json::json!([0])).unwrap_err().to_string();
    assert!(err.contains("mlp_only_layers"), "{err}");
    let err = edited("olmoe", &|j| j["clip_qkv"] = serde_json::json!(8.0)).unwrap_err().to_string();
    assert!(err.contains("clip_qkv"), "{err}");
    let err = edited("qwen3_moe", &|j| j["num_experts_per_tok"] = serde_json::json!(5)).unwrap_err().to_string();
    assert!(err.contains("num_experts_per_tok"), "{err}");
    // Qwen2-MoE always has its shared expert (5632 wide when the config does not say).
    let spec = edited("qwen2_moe", &|j| {
        j.as_object_mut().unwrap().remove("shared_expert_intermediate_size");
    })
    .unwrap();
    let tcat_spec::Stacks::Decoder { tower } = spec.stacks else { panic!("a decoder") };
    assert_eq!(tower.feed_forward.experts.unwrap().shared_expert.unwrap().inner, 5632);
    // Qwen3 heads are 128 wide unless the config says otherwise.
    let spec = edited("qwen3", &|j| {
        j.as_object_mut().unwrap().remove("head_dim");
    })
    .unwrap();
    let tcat_spec::Stacks::Decoder { tower } = spec.stacks else { panic!("a decoder") };
    assert_eq!(tower.attention.head_dim, 128);
}

/// Gemma configs: the traits read from the fixtures, transformers' defaults where a field is
/// absent, and the values tcat cannot honour refused by name.
#[test]
fn gemma_family_configs_are_checked_by_field() {
    use tcat_spec::{AttentionPattern as P, HeadSpec, NormSpec, ResidualSpec, RopeScalingSpec, ScaleRule, Stacks};
    let edited = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut config = ConfigFile::read(&fixture(name).join("config.json")).unwrap();
        edit(&mut config.json);
        tcat_models::spec_of(&config)
    };
    let tower = |spec: &tcat_spec::ArchSpec| match &spec.stacks {
        Stacks::Decoder { tower } => tower.clone(),
        _ => panic!("a decoder"),
    };
    let g2 = hf_spec("gemma2");
    let t = tower(&g2);
    assert_eq!(t.residual, ResidualSpec::Sandwich);
    assert_eq!(t.norm, NormSpec::RmsNormPlusOne { eps: 1e-6 });
    assert_eq!(t.attention.scale, ScaleRule::Fixed { scale: 0.25 });
    assert_eq!(t.attention.logit_softcap, Some(5.0));
    assert_eq!(t.attention.schedule, [P::Local { window: 3 }, P::Dense, P::Local { window: 3 }, P::Dense]);
    assert_eq!(g2.heads, [HeadSpec::SoftcappedLm { tied: true, cap: 15.0 }]);
    let t = tower(&hf_spec("gemma3"));
    assert_eq!(
        t.attention.schedule,
        [P::Local { window: 3 }, P::Local { window: 3 }, P::Dense, P::Local { window: 3 }]
    );
    let tcat_spec::PositionSpec::Rotary(global) = t.positions else { panic!("rotary") };
    assert_eq!((global.base, global.scaling), (1e6, RopeScalingSpec::Linear { factor: 8.0 }));
    let local = t.attention.local_rotary.unwrap();
    assert_eq!((local.base, local.scaling), (1e4, RopeScalingSpec::None));
    // transformers' defaults: Gemma 2 caps at 50 / 30 when the fields are absent, none when null.
    let spec = edited("gemma2", &|j| {
        let o = j.as_object_mut().unwrap();
        o.remove("attn_logit_softcapping");
        o.remove("final_logit_softcapping");
        o.remove("layer_types");
    })
    .unwrap();
    assert_eq!(tower(&spec).attention.logit_softcap, Some(50.0));
    assert_eq!(spec.heads, [HeadSpec::SoftcappedLm { tied: true, cap: 30.0 }]);
    assert_eq!(tower(&spec).attention.schedule, [P::Local { window: 3 }, P::Dense, P::Local { window: 3 }, P::Dense]);
    let spec = edited("gemma2", &|j| j["final_logit_softcapping"] = serde_json::Value::Null).unwrap();
    assert_eq!(spec.heads, [HeadSpec::Lm { tied: true, bias: false }]);
    // Gemma 3 without `layer_types`: five local layers in six; legacy rope fields.
    let spec = edited("gemma3", &|j| {
        let o = j.as_object_mut().unwrap();
        o.remove("layer_types");
        o.remove("sliding_window_pattern");
        o.remove("_sliding_window_pattern");
        o.remove("rope_parameters");
        o.insert("rope_theta".into(), serde_json::json!(500000.0));
        o.insert("rope_local_base_freq".into(), serde_json::json!(20000.0));
        o.insert("rope_scaling".into(), serde_json::json!({"rope_type": "linear", "factor": 4.0}));
    })
    .unwrap();
    let t = tower(&spec);
    assert_eq!(t.attention.schedule, [P::Local { window: 3 }; 4]);
    let tcat_spec::PositionSpec::Rotary(global) = t.positions else { panic!("rotary") };
    assert_eq!((global.base, global.scaling), (5e5, RopeScalingSpec::Linear { factor: 4.0 }));
    assert_eq!(t.attention.local_rotary.unwrap().base, 2e4);
    // Refusals, by name.
    for (name, field, value) in [
        ("gemma2", "use_bidirectional_attention", serde_json::json!(true)),
        ("gemma3", "use_bidirectional_attention", serde_json::json!(true)),
        (
            "gemma2",
            "layer_types",
            serde_json::json!(["sliding_attention", "chunked_attention", "full_attention", "full_attention"]),
        ),
        ("gemma2", "layer_types", serde_json::json!(["sliding_attention"])),
        ("gemma2", "attn_logit_softcapping", serde_json::json!(-1.0)),
        ("gemma2", "sliding_window", serde_json::json!(0)),
        ("gemma", "attn_logit_softcapping", serde_json::json!(50.0)),
        ("gemma", "sliding_window", serde_json::json!(4096)),
        ("gemma", "query_pre_attn_scalar", serde_json::json!(256)),
        ("gemma3", "hidden_activation", serde_json::json!("swiglu")),
    ] {
        let err = edited(name, &|j| j[field] = value.clone()).unwrap_err().to_string();
        assert!(
            err.contains(field) || err.contains("chunked_attention") || err.contains("layer_types"),
            "{name} {field}: {err}"
        );
    }
    let err = edited("gemma3", &|j| j["rope_parameters"]["full_attention"]["rope_type"] = serde_json::json!("yarn"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("yarn"), "{err}");
}
