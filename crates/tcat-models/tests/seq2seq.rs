//! Encoder-decoders (t5, t5-v1_1, mt5, bart, mbart, marian, marian-separate) against Hugging
//! Face `transformers` on tiny perturbed checkpoints it saved (tests/fixtures/tcat_fixtures/
//! seq2seq.py): logits and encoder states of ragged batches within 1e-4, cached decoding equal
//! to the full forward at every step, and greedy ids equal to `generate`'s.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tcat_attention::AttentionMask;
use tcat_models::generation::{BeamSettings, EarlyStopping, generate_seq2seq_beam};
use tcat_models::{Batch, GenerationConfig, Model, ModelSource, Sampling, Seq2seqModel, generate_seq2seq};

const TOL: f32 = 1e-4;
const FOLDERS: &[&str] = &["t5", "t5-v1_1", "mt5", "bart", "mbart", "marian", "marian-separate"];

fn load(name: &str) -> Seq2seqModel {
    let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
    match Model::load(&source, &device(), DType::F32).unwrap() {
        Model::Seq2seq(m) => m,
        _ => panic!("{name} did not load as an encoder-decoder"),
    }
}

fn batches(exp: &std::collections::HashMap<String, Tensor>, pad: u32) -> (Batch, Batch) {
    let enc = rows(&exp["input_ids"], &exp["attention_mask"]);
    let dec = rows(&exp["decoder_input_ids"], &exp["decoder_attention_mask"]);
    (Batch::right_padded(&enc, None, pad, &device()).unwrap(), Batch::right_padded(&dec, None, pad, &device()).unwrap())
}

#[test]
fn logits_and_encoder_states_match_transformers() {
    for name in FOLDERS {
        let exp = expected(name);
        let model = load(name);
        let (enc, dec) = batches(&exp, model.pad_token_id());
        let encoded = model.encode(&enc).unwrap();
        let d = masked_max_diff(&encoded, &exp["encoder_hidden"], &exp["attention_mask"]);
        eprintln!("{name}: encoder states max abs diff {d:.2e}");
        assert!(d <= TOL, "{name}: encoder states differ by {d}");
        let logits = model.logits(&enc, &dec).unwrap();
        let d = masked_max_diff(&logits, &exp["logits"], &exp["decoder_attention_mask"]);
        eprintln!("{name}: logits max abs diff {d:.2e}");
        assert!(d <= TOL, "{name}: logits differ by {d}");
    }
}

#[test]
fn cached_decoding_equals_the_full_forward() {
    for name in FOLDERS {
        let exp = expected(name);
        let model = load(name);
        // The longest decoder row, alone, with its encoder row.
        let enc_row = Batch::right_padded(&enc_rows(&exp)[..1], None, model.pad_token_id(), &device()).unwrap();
        let dec_row = rows(&exp["decoder_input_ids"], &exp["decoder_attention_mask"])[0].clone();
        let full = model
            .logits(&enc_row, &Batch::right_padded(std::slice::from_ref(&dec_row), None, 0, &device()).unwrap())
            .unwrap();
        let encoded = model.encode(&enc_row).unwrap();
        let memory = model.memory(&encoded, &enc_row).unwrap();
        let mut caches = model.new_caches(dec_row.len());
        for (t, &id) in dec_row.iter().enumerate() {
            let ids = Tensor::new(&[[id]], &device()).unwrap();
            let (h, _) = model.decode(&ids, &AttentionMask::causal(), Some(&mut caches), &memory).unwrap();
            let step = model.head(&h).unwrap();
            let d = max_diff(&step, &full.narrow(1, t, 1).unwrap());
            assert!(d <= TOL, "{name}: cached step {t} differs from the full forward by {d}");
        }
    }
}

fn enc_rows(exp: &std::collections::HashMap<String, Tensor>) -> Vec<Vec<u32>> {
    rows(&exp["input_ids"], &exp["attention_mask"])
}

/// The generation cases transformers ran on a fixture (`generation.json`).
fn cases(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixture(name).join("generation.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn ids(value: &serde_json::Value) -> Vec<Vec<u32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect())
        .collect()
}

#[test]
fn greedy_ids_equal_transformers_generate() {
    for name in FOLDERS {
        let model = load(name);
        for case in cases(name).iter().filter(|c| c["num_beams"] == 1) {
            let prompts = ids(&case["prompts"]);
            let config = GenerationConfig {
                max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
                sampling: Sampling::Greedy,
                ..GenerationConfig::default()
            };
            let out = generate_seq2seq(&model, &prompts, &config, |_, _| {}).unwrap();
            let expected = ids(&case["ids"]);
            let width = expected[0].len();
            for (row, (got, want)) in out.iter().zip(&expected).enumerate() {
                // transformers pads finished rows with the pad id.
                let mut padded = got.clone();
                padded.resize(width, model.pad_token_id());
                assert_eq!(&padded, want, "{name} {} row {row}", case["name"]);
            }
            eprintln!("{name} {}: {out:?}", case["name"]);
        }
    }
}

#[test]
fn beam_ids_equal_transformers_generate() {
    let mut failures = Vec::new();
    for name in FOLDERS {
        let model = load(name);
        for case in cases(name).iter().filter(|c| c["num_beams"].as_u64().unwrap() > 1) {
            let prompts = ids(&case["prompts"]);
            let config = GenerationConfig {
                max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
                ..GenerationConfig::default()
            };
            let settings = BeamSettings {
                num_beams: case["num_beams"].as_u64().unwrap() as usize,
                length_penalty: case["length_penalty"].as_f64().unwrap(),
                early_stopping: match &case["early_stopping"] {
                    serde_json::Value::Bool(true) => EarlyStopping::OnBeamsDone,
                    serde_json::Value::Bool(false) => EarlyStopping::Heuristic,
                    _ => EarlyStopping::Never,
                },
                no_repeat_ngram_size: case["no_repeat_ngram_size"].as_u64().unwrap() as usize,
            };
            let out = generate_seq2seq_beam(&model, &prompts, &config, &settings).unwrap();
            let expected = ids(&case["ids"]);
            let width = expected[0].len();
            // transformers pads the shorter beam rows with `pad or eos[0]` (Python `or`).
            let fill = match model.tokens().pad {
                0 => model.tokens().eos.first().copied().unwrap_or(0),
                pad => pad,
            };
            for (row, (got, want)) in out.iter().zip(&expected).enumerate() {
                let mut padded = got.clone();
                padded.resize(width, fill);
                if &padded != want {
                    failures.push(format!("{name} {} row {row}: {padded:?} != {want:?}", case["name"]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn generation_ids_come_from_generation_config_json() {
    // BART forces <s> first and </s> last; Marian bans its pad token and starts from it.
    let bart = load("bart");
    assert_eq!(
        (bart.tokens().decoder_start, bart.tokens().forced_bos, bart.tokens().forced_eos),
        (2, Some(0), Some(2))
    );
    let marian = load("marian");
    assert_eq!(marian.tokens().bad_words, [vec![319]]);
    assert_eq!((marian.tokens().decoder_start, marian.tokens().pad), (319, 319));
    // A banned token is never generated: ban what greedy decoding picks first.
    let prompts = vec![vec![5, 6, 7]];
    let config = GenerationConfig { max_new_tokens: 3, stop_tokens: Some(vec![]), ..GenerationConfig::default() };
    let free = generate_seq2seq(&marian, &prompts, &config, |_, _| {}).unwrap();
    let first = free[0][1];
    let banned = marian
        .clone()
        .with_tokens(tcat_models::Seq2seqTokens { bad_words: vec![vec![319], vec![first]], ..marian.tokens().clone() });
    let out = generate_seq2seq(&banned, &prompts, &config, |_, _| {}).unwrap();
    assert!(!out[0][1..].contains(&first), "{first} was banned: {out:?}");
}

#[test]
fn padded_batches_equal_rows_run_alone() {
    for name in ["t5", "bart", "marian"] {
        let model = load(name);
        let start = model.tokens().decoder_start;
        let enc = vec![vec![5, 17, 33, 8, 91, 12, 40], vec![7, 3, 99], vec![64]];
        let dec = vec![vec![start, 9, 4, 11], vec![start], vec![start, 21]];
        let pad = model.pad_token_id();
        let batch = |rows: &[Vec<u32>]| Batch::right_padded(rows, None, pad, &device()).unwrap();
        let all = model.logits(&batch(&enc), &batch(&dec)).unwrap();
        for i in 0..enc.len() {
            let alone = model.logits(&batch(&enc[i..=i]), &batch(&dec[i..=i])).unwrap();
            let from_batch = all.narrow(0, i, 1).unwrap().narrow(1, 0, dec[i].len()).unwrap();
            let d = max_diff(&from_batch, &alone);
            assert!(d <= TOL, "{name} row {i}: logits differ by {d}");
        }
        // Greedy and beam generation of the batch = each prompt alone.
        let config = GenerationConfig { max_new_tokens: 6, ..GenerationConfig::default() };
        let settings = BeamSettings::new(3);
        let greedy = generate_seq2seq(&model, &enc, &config, |_, _| {}).unwrap();
        let beams = generate_seq2seq_beam(&model, &enc, &config, &settings).unwrap();
        for i in 0..enc.len() {
            let one = generate_seq2seq(&model, &enc[i..=i], &config, |_, _| {}).unwrap();
            assert_eq!(greedy[i], one[0], "{name} greedy row {i}");
            let one = generate_seq2seq_beam(&model, &enc[i..=i], &config, &settings).unwrap();
            assert_eq!(beams[i], one[0], "{name} beam row {i}");
        }
    }
}

/// The mean of the layers' z-losses: transformers' `router_z_loss_func` over the stack's
/// concatenated router logits (every layer has the same number of tokens).
fn z_loss(layers: &[tcat_blocks::RouterOutput]) -> f32 {
    let sum: f32 = layers.iter().map(|r| r.z_loss.to_scalar::<f32>().unwrap()).sum();
    sum / layers.len() as f32
}

#[test]
fn switch_transformers_matches_transformers_with_capacity_dropping() {
    let exp = expected("switch");
    let model = load("switch");
    let (enc, dec) = batches(&exp, model.pad_token_id());
    let report = model.logits_with_router(&enc, &dec).unwrap();
    let d = masked_max_diff(&model.encode(&enc).unwrap(), &exp["encoder_hidden"], &exp["attention_mask"]);
    assert!(d <= TOL, "switch: encoder states differ by {d}");
    let d = masked_max_diff(&report.logits, &exp["logits"], &exp["decoder_attention_mask"]);
    eprintln!("switch: logits max abs diff {d:.2e}");
    assert!(d <= TOL, "switch: logits differ by {d}");
    // One sparse layer per stack (layer 1), router logits for every position, pads included.
    assert_eq!((report.encoder.len(), report.decoder.len()), (1, 1));
    for (stack, routers) in [("encoder", &report.encoder), ("decoder", &report.decoder)] {
        let d = max_diff(&routers[0].logits, &exp[&format!("{stack}_router_logits.1")]);
        assert!(d <= TOL, "switch {stack} router logits differ by {d}");
        let dropped = routers[0].experts.flatten_all().unwrap().to_vec1::<u32>().unwrap();
        assert!(dropped.contains(&4), "switch {stack}: the capacity of 2 drops tokens");
        let aux = tcat_blocks::load_balancing_loss(routers).unwrap().to_scalar::<f32>().unwrap();
        let want = exp[&format!("{stack}_aux_loss")].to_scalar::<f32>().unwrap();
        assert!((aux - want).abs() <= 1e-5 * want.abs().max(1.0), "switch {stack} aux loss {aux} vs {want}");
        let z = z_loss(routers);
        let want = exp[&format!("{stack}_z_loss")].to_scalar::<f32>().unwrap();
        assert!((z - want).abs() <= 1e-4 * want.abs().max(1.0), "switch {stack} z loss {z} vs {want}");
    }
}

#[test]
fn switch_transformers_generates_as_transformers() {
    // transformers routes each cached decoding step on its own, so a decoder token is never
    // dropped while generating: tcat's cached decoding does the same.
    let model = load("switch");
    let mut failures = vec![];
    for case in cases("switch") {
        let prompts = ids(&case["prompts"]);
        let config = GenerationConfig {
            max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
            ..GenerationConfig::default()
        };
        let beams = case["num_beams"].as_u64().unwrap() as usize;
        let out = if beams == 1 {
            generate_seq2seq(&model, &prompts, &config, |_, _| {}).unwrap()
        } else {
            let settings = BeamSettings {
                num_beams: beams,
                length_penalty: case["length_penalty"].as_f64().unwrap(),
                early_stopping: match &case["early_stopping"] {
                    serde_json::Value::Bool(true) => EarlyStopping::OnBeamsDone,
                    serde_json::Value::Bool(false) => EarlyStopping::Heuristic,
                    _ => EarlyStopping::Never,
                },
                no_repeat_ngram_size: case["no_repeat_ngram_size"].as_u64().unwrap() as usize,
            };
            generate_seq2seq_beam(&model, &prompts, &config, &settings).unwrap()
        };
        let fill = if beams == 1 { 0 } else { 1 };
        for (row, (got, want)) in out.iter().zip(ids(&case["ids"])).enumerate() {
            let mut padded = got.clone();
            padded.resize(want.len(), fill);
            if padded != want {
                failures.push(format!("{} row {row}: {padded:?} != {want:?}", case["name"]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
