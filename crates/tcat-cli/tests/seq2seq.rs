//! `tcat forward --decoder-ids` and `tcat generate` on encoder-decoders, as tools outside this
//! repository run them, against the outputs transformers saved with the fixtures.

use candle_core::{DType, Device, Tensor};
use tcat_testkit::{expected, fixture, masked_max_diff};

mod common;
use common::{fails, id_args, ok, temp_out};

#[test]
fn forward_with_decoder_ids_writes_the_reference_logits() {
    for name in ["t5", "t5-v1_1", "bart", "mbart", "marian"] {
        let exp = expected(name);
        let out = temp_out(&format!("seq2seq-{name}"));
        let model = fixture(name);
        let mut args = vec!["forward".to_string(), "--model".into(), model.to_str().unwrap().into()];
        for row in id_args(&exp["input_ids"], &exp["attention_mask"]) {
            args.extend(["--ids".into(), row]);
        }
        for row in id_args(&exp["decoder_input_ids"], &exp["decoder_attention_mask"]) {
            args.extend(["--decoder-ids".into(), row]);
        }
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        let logits = &written["logits"];
        assert_eq!(logits.dtype(), DType::F32);
        assert_eq!(logits.dims(), exp["logits"].dims(), "{name}: logits are [batch, decoder_seq, vocab]");
        let d = masked_max_diff(logits, &exp["logits"], &exp["decoder_attention_mask"]);
        assert!(d <= 1e-4, "{name}: logits differ by {d}");
        let mask: Vec<Vec<f32>> = written["attention_mask"].to_vec2().unwrap();
        let want: Vec<Vec<f32>> = exp["attention_mask"].to_dtype(DType::F32).unwrap().to_vec2().unwrap();
        assert_eq!(mask, want, "{name}: attention_mask is the encoder's [batch, seq]");
        std::fs::remove_file(out).ok();
    }
}

#[test]
fn decoder_ids_are_required_by_encoder_decoders_and_refused_elsewhere() {
    let out = temp_out("seq2seq-errors");
    let out = out.to_str().unwrap();
    let t5 = fixture("t5");
    let err = fails(&["forward", "--model", t5.to_str().unwrap(), "--ids", "5,6,7", "--out", out]);
    assert!(err.contains("--decoder-ids") && err.contains("encoder-decoder"), "{err}");
    let err = fails(&[
        "forward",
        "--model",
        t5.to_str().unwrap(),
        "--ids",
        "5,6,7",
        "--ids",
        "8",
        "--decoder-ids",
        "0,4",
        "--out",
        out,
    ]);
    assert!(err.contains("one per row"), "{err}");
    let gpt2 = fixture("gpt2");
    let err =
        fails(&["forward", "--model", gpt2.to_str().unwrap(), "--ids", "5,6,7", "--decoder-ids", "0,4", "--out", out]);
    assert!(err.contains("not an encoder-decoder"), "{err}");
    let err =
        fails(&["forward", "--model", t5.to_str().unwrap(), "--ids", "5,6", "--decoder-ids", "0,999", "--out", out]);
    assert!(err.contains("999"), "{err}");
}

/// The `info` metadata of a fixture's expected.safetensors.
fn info(name: &str) -> serde_json::Value {
    let bytes = std::fs::read(fixture(name).join("expected.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    serde_json::from_str(&meta.metadata().as_ref().unwrap()["info"]).unwrap()
}

#[test]
fn generate_translates_a_text_prompt_end_to_end() {
    // The prompt is tokenized with T5's SentencePiece tokenizer.json (</s> appended), encoded,
    // and decoded greedily from the decoder start token, as transformers' generate does.
    let exp = expected("t5");
    let info = info("t5");
    let t5 = fixture("t5");
    let prompt = info["prompt"].as_str().unwrap();
    let line =
        ok(&["generate", "--model", t5.to_str().unwrap(), "--prompt", prompt, "--max-new-tokens", "8", "--json"]);
    let json: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let want: Vec<Vec<i64>> = exp["prompt_greedy_ids"].to_vec2().unwrap();
    let got: Vec<i64> = json["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(got, want[0], "ids start with the decoder start token, as transformers returns them");
    assert_eq!(json["text"], info["prompt_greedy_text"]);
}

/// `--prompt-ids` arguments of a generation case.
fn prompt_args(case: &serde_json::Value) -> Vec<String> {
    case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            let ids: Vec<String> = row.as_array().unwrap().iter().map(|v| v.to_string()).collect();
            ["--prompt-ids".to_string(), ids.join(",")]
        })
        .collect()
}

#[test]
fn generate_greedy_and_beam_ids_equal_transformers() {
    for name in ["bart", "marian", "t5-v1_1"] {
        let text = std::fs::read_to_string(fixture(name).join("generation.json")).unwrap();
        let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in cases["cases"].as_array().unwrap() {
            let model = fixture(name);
            let mut args = vec!["generate".to_string(), "--model".into(), model.to_str().unwrap().into()];
            args.extend(prompt_args(case));
            args.extend(["--max-new-tokens".into(), case["max_new_tokens"].to_string(), "--json".into()]);
            let beams = case["num_beams"].as_u64().unwrap();
            if beams > 1 {
                args.extend(["--num-beams".into(), beams.to_string()]);
                args.extend(["--length-penalty".into(), case["length_penalty"].to_string()]);
                match &case["early_stopping"] {
                    serde_json::Value::Bool(true) => args.push("--early-stopping".into()),
                    serde_json::Value::Bool(false) => {}
                    // `--early-stopping never` is not a CLI setting.
                    _ => continue,
                }
                let n = case["no_repeat_ngram_size"].as_u64().unwrap();
                if n > 0 {
                    args.extend(["--no-repeat-ngram-size".into(), n.to_string()]);
                }
            }
            let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
            let want = case["ids"].as_array().unwrap();
            // transformers pads the shorter rows (greedy with the pad id, beams with
            // `pad or eos[0]`); tcat prints each row unpadded.
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(fixture(name).join("generation_config.json")).unwrap())
                    .unwrap();
            let fill = match (beams > 1, config["pad_token_id"].as_u64().unwrap()) {
                (true, 0) => config["eos_token_id"].as_u64().unwrap(),
                (_, pad) => pad,
            };
            for (line, want) in out.lines().zip(want) {
                let json: serde_json::Value = serde_json::from_str(line).unwrap();
                let mut got: Vec<u64> = json["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
                let want: Vec<u64> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
                assert!(got.len() <= want.len(), "{name} {}: {got:?} longer than {want:?}", case["name"]);
                got.resize(want.len(), fill);
                assert_eq!(got, want, "{name} {}", case["name"]);
            }
            assert_eq!(out.lines().count(), want.len(), "{name} {}: one line per prompt", case["name"]);
        }
    }
}

#[test]
fn router_stats_of_switch_transformers_equal_transformers_losses() {
    let exp = expected("switch");
    let out = temp_out("seq2seq-switch");
    let model = fixture("switch");
    let mut args =
        vec!["forward".to_string(), "--model".into(), model.to_str().unwrap().into(), "--router-stats".into()];
    for row in id_args(&exp["input_ids"], &exp["attention_mask"]) {
        args.extend(["--ids".into(), row]);
    }
    for row in id_args(&exp["decoder_input_ids"], &exp["decoder_attention_mask"]) {
        args.extend(["--decoder-ids".into(), row]);
    }
    args.extend(["--out".into(), out.to_str().unwrap().into()]);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let d = masked_max_diff(&written["logits"], &exp["logits"], &exp["decoder_attention_mask"]);
    assert!(d <= 1e-4, "switch logits differ by {d}");
    assert_eq!(written["router_load"].dims(), [2, 4], "one encoder and one decoder sparse layer, 4 experts");
    let scalar = |t: &Tensor| t.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    for loss in ["encoder_aux_loss", "decoder_aux_loss", "encoder_z_loss", "decoder_z_loss"] {
        let (got, want) = (scalar(&written[loss]), scalar(&exp[loss]));
        assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{loss}: {got} vs {want}");
    }
    let sum = scalar(&exp["encoder_aux_loss"]) + scalar(&exp["decoder_aux_loss"]);
    assert!((scalar(&written["aux_loss"]) - sum).abs() <= 1e-4 * sum);
    std::fs::remove_file(out).ok();
}
