//! Encoder-decoders (t5, t5-v1_1, mt5, bart, mbart, marian, marian-separate) against Hugging
//! Face `transformers` on tiny perturbed checkpoints it saved (tests/fixtures/tcat_fixtures/
//! seq2seq.py): logits and encoder states of ragged batches within 1e-4, cached decoding equal
//! to the full forward at every step, and greedy ids equal to `generate`'s.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tcat_attention::AttentionMask;
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
        let full =
            model.logits(&enc_row, &Batch::right_padded(&[dec_row.clone()], None, 0, &device()).unwrap()).unwrap();
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
