//! The `tcat` command's contract, run as a user runs it, on the reference fixtures.

use std::path::PathBuf;

use candle_core::{DType, Device};
use tcat_testkit::{expected, fixture, masked_max_diff};

mod common;
use common::{fails, id_args, ok, temp_out};

#[test]
fn forward_writes_the_reference_outputs() {
    for (name, output) in [
        ("bert", "hidden_states"),
        ("roberta", "hidden_states"),
        ("distilbert", "hidden_states"),
        ("deberta-v1", "hidden_states"),
        ("deberta-v2", "hidden_states"),
        ("xlnet", "hidden_states"),
        ("gpt2", "logits"),
    ] {
        let exp = expected(name);
        let mask = &exp["attention_mask"];
        let out = temp_out(name);
        let model = fixture(name);
        let mut args = vec!["forward".to_string(), "--model".into(), model.to_str().unwrap().into()];
        for row in id_args(&exp["input_ids"], mask) {
            args.extend(["--ids".into(), row]);
        }
        if let Some(types) = exp.get("token_type_ids") {
            for row in id_args(types, mask) {
                args.extend(["--token-type-ids".into(), row]);
            }
        }
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        let got = &written[output];
        assert_eq!(got.dtype(), DType::F32);
        let want = if name == "gpt2" { &exp["logits"] } else { &exp["hidden_states"] };
        let d = masked_max_diff(got, want, mask);
        assert!(d <= 1e-4, "{name}: {output} differs by {d}");
        let written_mask: Vec<Vec<f32>> = written["attention_mask"].to_vec2().unwrap();
        let want_mask: Vec<Vec<f32>> = mask.to_dtype(DType::F32).unwrap().to_vec2().unwrap();
        assert_eq!(written_mask, want_mask);
        std::fs::remove_file(out).ok();
    }
}

#[test]
fn forward_accepts_a_weights_file() {
    let out = temp_out("file");
    let weights = fixture("bert").join("model.safetensors");
    ok(&["forward", "--model", weights.to_str().unwrap(), "--ids", "2,9,3", "--out", out.to_str().unwrap()]);
    let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert_eq!(written["hidden_states"].dims(), &[1, 3, 32]);
    std::fs::remove_file(out).ok();
}

fn embeddings(stdout: &str) -> Vec<(String, Vec<f32>)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let e = v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (v["text"].as_str().unwrap().to_string(), e)
        })
        .collect()
}

#[test]
fn embed_prints_one_json_line_per_text_including_empty() {
    let model = fixture("bert");
    let stdout = ok(&["embed", "--model", model.to_str().unwrap(), "--json", "--normalize", "the cat", ""]);
    let lines = embeddings(&stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].0, "");
    for (_, e) in &lines {
        assert_eq!(e.len(), 32);
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    let cls = embeddings(&ok(&["embed", "--model", model.to_str().unwrap(), "--json", "--pooling", "cls", "the cat"]));
    assert_ne!(cls[0].1, lines[0].1);
}

#[test]
fn embed_on_minilm_matches_sentence_transformers() {
    let dir = std::env::var_os("TCAT_MINILM_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("TCAT_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/tcat"))
            .join("all-MiniLM-L6-v2")
    });
    assert!(dir.is_dir(), "run scripts/fetch_minilm.sh first ({} missing)", dir.display());
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm/expected.json")).unwrap()).unwrap();
    let sentences: Vec<&str> = exp["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let mut args = vec!["embed", "--model", dir.to_str().unwrap(), "--json"];
    args.extend(&sentences);
    let got = embeddings(&ok(&args));
    for ((text, g), want) in got.iter().zip(exp["embeddings"].as_array().unwrap()) {
        let want: Vec<f32> = want.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let dot: f32 = g.iter().zip(&want).map(|(a, b)| a * b).sum();
        assert!(dot >= 0.9999, "{text:?}: cosine {dot}"); // both are unit vectors
    }
}

#[test]
fn fill_mask_ranks_predictions() {
    let model = fixture("bert");
    let stdout = ok(&["fill-mask", "--model", model.to_str().unwrap(), "--top-k", "3", "--json", "the [MASK] sat"]);
    let preds: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 3);
    let scores: Vec<f64> = preds.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().sum::<f64>() <= 1.0 + 1e-6);
    assert!(preds.iter().all(|p| p["position"] == 2));
    let stderr = fails(&["fill-mask", "--model", model.to_str().unwrap(), "no mask here"]);
    assert!(stderr.contains("[MASK]"), "{stderr}");
    let roberta = fixture("roberta");
    let stdout = ok(&["fill-mask", "--model", roberta.to_str().unwrap(), "--json", "the<mask> sat"]);
    assert_eq!(stdout.lines().count(), 5);
}

#[test]
fn generate_greedy_matches_transformers() {
    let exp = expected("gpt2");
    let prompt: Vec<i64> = exp["prompt_ids"].to_vec1().unwrap();
    let want: Vec<i64> = exp["greedy_ids"].to_vec1().unwrap();
    let prompt = prompt.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let new = (want.len() - 5).to_string();
    let model = fixture("gpt2");
    let stdout = ok(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt-ids",
        &prompt,
        "--max-new-tokens",
        &new,
        "--json",
    ]);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let ids: Vec<i64> = line["ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    // The fixture's EOS id is 0 and greedy never produces it here, so all tokens come out.
    assert_eq!(ids, want);
    assert!(line["text"].is_string());
}

#[test]
fn generate_from_text_streams_and_sampling_is_seeded() {
    let model = fixture("gpt2");
    let m = model.to_str().unwrap();
    let streamed = ok(&["generate", "--model", m, "--prompt", "the cat", "--max-new-tokens", "5"]);
    assert!(streamed.starts_with("the cat"), "{streamed}");
    let sample = |seed: &str| {
        ok(&[
            "generate",
            "--model",
            m,
            "--prompt",
            "the cat",
            "--max-new-tokens",
            "8",
            // The fixture's distributions are peaked (one token often holds 85% at t = 1.2),
            // so a hotter temperature lets the seed show.
            "--temperature",
            "3",
            "--top-k",
            "40",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--json",
        ])
    };
    assert_eq!(sample("7"), sample("7"));
    assert!((0..4).map(|s| sample(&s.to_string())).any(|o| o != sample("7")));
}

#[test]
fn bad_input_fails_cleanly() {
    let bert = fixture("bert");
    let bert = bert.to_str().unwrap();
    let gpt2 = fixture("gpt2");
    let gpt2 = gpt2.to_str().unwrap();
    let out = temp_out("bad");
    let out = out.to_str().unwrap();
    let long = "1,".repeat(65);
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["forward", "--model", bert, "--ids", "2,999", "--out", out], "token id 999"),
        (vec!["forward", "--model", bert, "--ids", "2,x", "--out", out], "`x` is not a token id"),
        (vec!["forward", "--model", bert, "--ids", "2,3", "--token-type-ids", "0", "--out", out], "token type ids"),
        (vec!["forward", "--model", "/no/such/model", "--ids", "2", "--out", out], "/no/such/model"),
        (vec!["forward", "--model", gpt2, "--ids", &long, "--out", out], "65 tokens"),
        (vec!["forward", "--model", bert, "--ids", "2", "--decoder-ids", "2", "--out", out], "encoder-decoder"),
        (vec!["forward", "--model", bert, "--ids", "2", "--device", "cuda:x", "--out", out], "not a device number"),
        (vec!["forward", "--model", bert, "--ids", "2", "--dtype", "f8", "--out", out], "unknown dtype"),
        (vec!["embed", "--model", gpt2, "x"], "encoder"),
        (vec!["generate", "--model", bert, "--prompt-ids", "1", "--max-new-tokens", "1"], "causal language model"),
        (vec!["generate", "--model", gpt2, "--prompt", "", "--max-new-tokens", "1"], "no tokens"),
        (vec!["generate", "--model", gpt2, "--prompt-ids", "1", "--max-new-tokens", "64"], "65 tokens"),
        (vec!["generate", "--model", gpt2, "--prompt-ids", "1", "--max-new-tokens", "2", "--top-p", "2"], "top-p"),
    ];
    // Only a build without CUDA support refuses `--device cuda` (a GPU run of the suite has it).
    if !candle_core::utils::cuda_is_available() {
        cases.push((
            vec!["forward", "--model", bert, "--ids", "2", "--device", "cuda", "--out", out],
            "--features cuda",
        ));
    }
    for (args, needle) in cases {
        let stderr = fails(&args);
        assert!(stderr.contains(needle), "tcat {args:?}: expected {needle:?} in:\n{stderr}");
    }
}

/// `tcat forward` and `tcat generate` on every decoder family's fixture.
#[test]
fn forward_and_generate_work_for_every_decoder_family() {
    let families = [
        "llama",
        "llama-scaled",
        "mistral",
        "gpt_neox",
        "gpt_neox-sequential",
        "gptj",
        "gpt_neo",
        "bloom",
        "opt",
        "opt-postln",
        "gpt_bigcode",
        "gpt_bigcode-mha",
        "opt-350m-like",
        "llama-llama3",
        "openai-gpt",
        "ctrl",
        "qwen2",
        "mixtral",
        "gemma",
        "gemma2",
        "gemma3",
    ];
    for name in families {
        let exp = expected(name);
        let mask = &exp["attention_mask"];
        let out = temp_out(&format!("family-{name}"));
        let model = fixture(name);
        let mut args = vec!["forward".to_string(), "--model".into(), model.to_str().unwrap().into()];
        for row in id_args(&exp["input_ids"], mask) {
            args.extend(["--ids".into(), row]);
        }
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        let d = masked_max_diff(&written["logits"], &exp["logits"], mask);
        assert!(d <= 1e-4, "{name}: logits differ by {d}");
        std::fs::remove_file(out).ok();

        let prompt: Vec<i64> = exp["prompt_ids"].to_vec1().unwrap();
        let want: Vec<i64> = exp.get("greedy_ids").expect("every decoder fixture has greedy_ids").to_vec1().unwrap();
        // transformers generated them without an EOS stop; tcat stops at the config's EOS (id 0
        // in every fixture), so the exact comparison holds while no continuation contains it.
        assert!(!want[prompt.len()..].contains(&0), "{name}: the reference continuation contains EOS 0: {want:?}");
        let new = (want.len() - prompt.len()).to_string();
        let prompt = prompt.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let m = model.to_str().unwrap();
        let stdout = ok(&["generate", "--model", m, "--prompt-ids", &prompt, "--max-new-tokens", &new, "--json"]);
        let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let ids: Vec<i64> = line["ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        assert_eq!(ids, want, "{name}: greedy ids differ from transformers'");
    }
}

/// The real SmolLM2-135M-Instruct GGUF file (fetched by scripts/fetch_smollm2.sh): `TCAT_SMOLLM2`,
/// else `$TCAT_CACHE` or `~/.cache/tcat` under `smollm2/`. A missing file fails the test.
fn smollm2() -> PathBuf {
    tcat_testkit::cached_file("TCAT_SMOLLM2", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "fetch_smollm2.sh")
}

/// `tcat generate` on the real GGUF file: quantized by default, and the tokenizer comes from
/// the GGUF metadata.
#[test]
fn generate_runs_a_gguf_model() {
    let path = smollm2();
    let m = path.to_str().unwrap();
    let stdout =
        ok(&["generate", "--model", m, "--prompt", "The capital of France is", "--max-new-tokens", "2", "--json"]);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(line["text"].as_str().unwrap().starts_with("The capital of France is Paris"), "{line}");
    let chat = ok(&["generate", "--model", m, "--chat", "--prompt", "What is 2+2?", "--max-new-tokens", "12"]);
    assert!(chat.contains('4') && !chat.contains("<|im_start|>"), "{chat}");
}

/// The real Gemma 3 270M GGUF file (fetched by scripts/fetch_gemma3.sh): `TCAT_GEMMA3`, else
/// `$TCAT_CACHE` or `~/.cache/tcat` under `gemma3/`. A missing file fails the test.
fn gemma3() -> PathBuf {
    tcat_testkit::cached_file("TCAT_GEMMA3", "gemma3/gemma-3-270m-q4_k_m.gguf", "fetch_gemma3.sh")
}

/// `tcat generate` on the Gemma 3 GGUF file (quantized by default), its SentencePiece tokenizer
/// rebuilt from the metadata (`<bos>` in front): the greedy ids and text are transformers' up to
/// its first near-tie (a step transformers' choice wins by less than 0.1 logits, which 8-bit
/// activations may flip), eight tokens here. tests/gemma3.rs in tcat-models checks the f32
/// model's full continuation.
#[test]
fn generate_runs_the_gemma3_gguf_model() {
    let path = gemma3();
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gemma3-270m/expected.json")).unwrap()).unwrap();
    let ids =
        |v: &serde_json::Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    let (prompt, prompt_ids, want) =
        (exp["prompt"].as_str().unwrap(), ids(&exp["prompt_ids"]), ids(&exp["greedy_ids"]));
    let margins = exp["greedy_margins"].as_array().unwrap();
    let decided = margins.iter().position(|m| m.as_f64().unwrap() < 0.1).unwrap_or(margins.len());
    assert!(decided >= 8, "the fixture's continuation is decided for {decided} tokens only");
    // The default stop is the model's `<eos>`: transformers' continuation must not contain it.
    let want = &want[..prompt_ids.len() + 8];
    assert!(!want[prompt_ids.len()..].contains(&1), "{want:?}");
    let stdout =
        ok(&["generate", "--model", path.to_str().unwrap(), "--prompt", prompt, "--max-new-tokens", "8", "--json"]);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(ids(&line["ids"]), want, "greedy ids differ from transformers'");
    let text = line["text"].as_str().unwrap();
    let full = format!("{prompt}{}", exp["greedy_text"].as_str().unwrap());
    assert!(text.len() > prompt.len() + 20 && full.starts_with(text), "{text:?} is not the start of {full:?}");
}

/// `tcat forward` on the GGUF file writes `[1, seq, vocab]` logits whose last-position argmax is
/// the token `tcat generate` picks greedily after the same ids (both quantized), and that token
/// is transformers' next token for "The capital of France is" (" Paris").
#[test]
fn forward_on_a_gguf_model_agrees_with_generate() {
    let path = smollm2();
    let m = path.to_str().unwrap();
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("smollm2/expected.json")).unwrap()).unwrap();
    let prompt: Vec<i64> = exp["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    let reference_next = exp["logits_last_top100"][0][0].as_i64().unwrap();
    let ids = prompt.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let out = temp_out("gguf");
    ok(&["forward", "--model", m, "--ids", &ids, "--out", out.to_str().unwrap()]);
    let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    std::fs::remove_file(&out).ok();
    let logits = &written["logits"];
    assert_eq!(logits.dtype(), DType::F32);
    assert_eq!(logits.dims(), &[1, prompt.len(), 49152], "SmolLM2's vocabulary has 49152 tokens");
    assert_eq!(written["attention_mask"].to_vec2::<f32>().unwrap(), vec![vec![1f32; prompt.len()]]);
    let last = logits.get(0).unwrap().get(prompt.len() - 1).unwrap();
    let argmax = i64::from(last.argmax(0).unwrap().to_scalar::<u32>().unwrap());

    let stdout = ok(&["generate", "--model", m, "--prompt-ids", &ids, "--max-new-tokens", "1", "--json"]);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let generated: Vec<i64> = line["ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    assert_eq!(generated[..prompt.len()], prompt[..], "generate echoes the prompt first");
    assert_eq!(generated.len(), prompt.len() + 1, "{generated:?}");
    assert_eq!(generated[prompt.len()], argmax, "generate's greedy token vs forward's last-position argmax");
    assert_eq!(argmax, reference_next, "next token after {prompt:?}");
}

/// `--router-stats` writes the routers' load per layer and the load-balancing loss, which equals
/// transformers' on the Mixtral fixture.
#[test]
fn forward_router_stats_on_a_mixture_of_experts() {
    let exp = expected("mixtral");
    let out = temp_out("router");
    let mut args =
        vec!["forward", "--model", fixture("mixtral").to_str().unwrap().to_string().leak(), "--router-stats"];
    let ids = id_args(&exp["input_ids"], &exp["attention_mask"]);
    for row in &ids {
        args.extend(["--ids", row.as_str()]);
    }
    args.extend(["--out", out.to_str().unwrap()]);
    ok(&args);
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert_eq!(got["router_load"].dims(), &[2, 4]);
    let aux: f32 = got["aux_loss"].to_scalar().unwrap();
    let want: f32 = exp["aux_loss"].to_scalar().unwrap();
    assert!((aux - want).abs() < 1e-5, "aux_loss {aux}, transformers {want}");
    let err = fails(&[
        "forward",
        "--model",
        fixture("gpt2").to_str().unwrap(),
        "--ids",
        "1,2",
        "--router-stats",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("no mixture-of-experts layers"), "{err}");
    std::fs::remove_file(out).ok();
}
