//! Model behaviour that does not need the reference library: padding, caching, sampling.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tcat_attention::AttentionMask;
use tcat_models::{Batch, GenerationConfig, Model, ModelSource, Sampling, generate};
use tcat_position::sequential_position_ids;

fn load(name: &str) -> Model {
    let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
    Model::load(&source, &device(), DType::F32).unwrap()
}

const ROWS: [&[u32]; 3] = [&[5, 17, 33, 8, 91, 12, 40], &[7, 3, 99], &[64]];

#[test]
fn padded_batch_equals_rows_one_by_one() {
    let dev = device();
    for name in ["bert", "roberta", "distilbert", "gpt2", "gemma", "gemma2", "gemma3"] {
        let model = load(name);
        let rows: Vec<Vec<u32>> = ROWS.iter().map(|r| r.to_vec()).collect();
        let batch = Batch::right_padded(&rows, None, model.pad_token_id(), &dev).unwrap();
        let run = |b: &Batch| match &model {
            Model::Encoder(m) => m.hidden_states(b).unwrap(),
            Model::Decoder(m) => m.logits(b).unwrap(),
            Model::Seq2seq(_) => unreachable!("encoder-decoders: tests/seq2seq.rs"),
            Model::Vision(_) | Model::DualEncoder(_) | Model::VisionLanguage(_) => {
                unreachable!("image models: tests/parity_vision.rs")
            }
        };
        let all = run(&batch);
        for (i, row) in rows.iter().enumerate() {
            let single =
                run(&Batch::right_padded(std::slice::from_ref(row), None, model.pad_token_id(), &dev).unwrap());
            let from_batch = all.narrow(0, i, 1).unwrap().narrow(1, 0, row.len()).unwrap();
            let d = max_diff(&from_batch, &single);
            // Relative to the outputs' size: Gemma's logits reach ±50 (f32 rounding is ~4e-6 there).
            let scale = single.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
            assert!(d < 1e-5 * scale, "{name} row {i}: {d} (outputs up to {scale})");
        }
    }
}

#[test]
fn cached_decoding_equals_full_forward_at_every_step() {
    // Gemma 2 and 3: sliding layers (window 3) beside global ones in one cache set, past the window.
    for name in ["gpt2", "gemma2", "gemma3"] {
        cached_decoding_equals_full_forward(name);
    }
}

fn cached_decoding_equals_full_forward(name: &str) {
    let dev = device();
    let model = load(name);
    let decoder = model.as_decoder().unwrap();
    let ids: Vec<u32> = vec![11, 250, 3, 77, 190, 42, 8, 120, 5, 66];
    let full_ids = Tensor::new(ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
    let full = decoder
        .forward(&full_ids, &sequential_position_ids(1, ids.len(), 0, &dev).unwrap(), &AttentionMask::causal(), None)
        .unwrap();
    let mut caches = decoder.new_caches(ids.len());
    let prompt = 4;
    let mut steps = vec![
        decoder
            .forward(
                &full_ids.narrow(1, 0, prompt).unwrap(),
                &sequential_position_ids(1, prompt, 0, &dev).unwrap(),
                &AttentionMask::causal(),
                Some(&mut caches),
            )
            .unwrap(),
    ];
    for t in prompt..ids.len() {
        steps.push(
            decoder
                .forward(
                    &full_ids.narrow(1, t, 1).unwrap(),
                    &sequential_position_ids(1, 1, t, &dev).unwrap(),
                    &AttentionMask::causal(),
                    Some(&mut caches),
                )
                .unwrap(),
        );
        let so_far = Tensor::cat(&steps, 1).unwrap();
        let d = max_diff(&so_far, &full.narrow(1, 0, t + 1).unwrap());
        assert!(d < 1e-4, "{name} step {t}: {d}");
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let model = load("gpt2");
    let decoder = model.as_decoder().unwrap();
    let prompts = vec![vec![11u32, 250, 3], vec![77, 190]];
    let config = |seed| GenerationConfig {
        max_new_tokens: 12,
        sampling: Sampling::Sample { temperature: 1.3, top_k: Some(50), top_p: Some(0.95) },
        seed,
        stop_tokens: Some(vec![]),
        ..Default::default()
    };
    let a = generate(decoder, &prompts, &config(42), |_, _| {}).unwrap();
    let b = generate(decoder, &prompts, &config(42), |_, _| {}).unwrap();
    assert_eq!(a, b);
    let others: Vec<_> = (0..4).map(|s| generate(decoder, &prompts, &config(s), |_, _| {}).unwrap()).collect();
    assert!(others.iter().any(|o| o != &a), "different seeds should give different samples");
}

#[test]
fn generation_stops_at_eos() {
    let model = load("gpt2");
    let decoder = model.as_decoder().unwrap();
    let prompt = vec![vec![11u32, 250, 3]];
    let free = generate(
        decoder,
        &prompt,
        &GenerationConfig {
            max_new_tokens: 6,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_tokens: Some(vec![]),
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    let first = free[0][3];
    let mut streamed = vec![];
    let stopped = generate(
        decoder,
        &prompt,
        &GenerationConfig {
            max_new_tokens: 6,
            sampling: Sampling::Greedy,
            seed: 0,
            stop_tokens: Some(vec![first]),
            ..Default::default()
        },
        |_, id| streamed.push(id),
    )
    .unwrap();
    assert_eq!(stopped[0], vec![11, 250, 3, first]);
    assert_eq!(streamed, vec![first]);
}

#[test]
fn stop_sequences_and_repetition_penalty() {
    let model = load("gpt2");
    let decoder = model.as_decoder().unwrap();
    let prompt = vec![vec![11u32, 250, 3]];
    let base = GenerationConfig { max_new_tokens: 8, stop_tokens: Some(vec![]), ..Default::default() };
    let free = generate(decoder, &prompt, &base, |_, _| {}).unwrap();
    let pair = free[0][4..6].to_vec();
    let stopped =
        generate(decoder, &prompt, &GenerationConfig { stop_sequences: vec![pair.clone()], ..base.clone() }, |_, _| {})
            .unwrap();
    assert_eq!(stopped[0], free[0][..6].to_vec(), "stops right after the sequence {pair:?}");
    // The tiny greedy model repeats itself; a strong penalty must change the continuation.
    assert!(free[0][3..].windows(2).any(|w| w[0] == w[1]), "fixture no longer repeats: {:?}", free[0]);
    let penalized =
        generate(decoder, &prompt, &GenerationConfig { repetition_penalty: 100.0, ..base.clone() }, |_, _| {}).unwrap();
    assert!(!penalized[0][3..].windows(2).any(|w| w[0] == w[1]), "{:?}", penalized[0]);
    let bad = GenerationConfig { repetition_penalty: 0.0, ..base };
    assert!(generate(decoder, &prompt, &bad, |_, _| {}).is_err());
}

/// The device the suite claims to run on is the one the models compute on: `TCAT_TEST_DEVICE`
/// naming a GPU gives a GPU device (not a silent CPU fallback), and the outputs of a model
/// loaded there stay there (nothing moves them to the CPU behind the caller's back). On a CPU
/// run only the first part can fail.
#[test]
fn models_compute_on_the_test_device() {
    let dev = device();
    match std::env::var("TCAT_TEST_DEVICE") {
        Err(_) => assert!(dev.is_cpu(), "no TCAT_TEST_DEVICE: the CPU, got {:?}", dev.location()),
        Ok(name) => {
            let cpu = name.split(':').next() == Some("cpu");
            assert_eq!(dev.is_cpu(), cpu, "TCAT_TEST_DEVICE={name} gave {:?}", dev.location());
        }
    }
    for name in ["bert", "gpt2", "t5"] {
        let model = load(name);
        let batch = Batch::right_padded(&[vec![5, 17, 33]], None, model.pad_token_id(), &dev).unwrap();
        let out = match &model {
            Model::Encoder(m) => m.hidden_states(&batch).unwrap(),
            Model::Decoder(m) => m.logits(&batch).unwrap(),
            Model::Seq2seq(m) => {
                let decoder = Batch::right_padded(&[vec![m.tokens().decoder_start, 4]], None, 0, &dev).unwrap();
                m.logits(&batch, &decoder).unwrap()
            }
            Model::Vision(_) | Model::DualEncoder(_) | Model::VisionLanguage(_) => {
                unreachable!("image models: tests/parity_vision.rs")
            }
        };
        assert!(
            out.device().same_device(&dev),
            "{name}: output on {:?}, model on {:?}",
            out.device().location(),
            dev.location()
        );
    }
}
