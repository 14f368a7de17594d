//! One loaded model shared by several threads: the model types are `Send + Sync`, and four
//! threads running the same model at once (each on its own batch) compute exactly what the
//! same batches give one after another.

use candle_core::{DType, Tensor};
use tcat_models::{Batch, DecoderModel, EncoderModel, GenerationConfig, Model, ModelSource, generate};
use tcat_testkit::{device, fixture, max_diff};

/// Compile-time: a model can be shared by reference across threads (`Sync`) and moved into
/// one (`Send`).
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Model>();
    shared::<DecoderModel>();
    shared::<EncoderModel>();
};

const THREADS: usize = 4;

fn load(name: &str) -> Model {
    let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
    Model::load(&source, &device(), DType::F32).unwrap()
}

/// Batch `i` of the run: different lengths, ids and paddings per thread.
fn rows(i: usize, vocab: usize) -> Vec<Vec<u32>> {
    let id = |k: usize| ((k * 31 + i * 17 + 5) % (vocab - 1) + 1) as u32;
    vec![(0..5 + 3 * i).map(id).collect(), (100..103 + i).map(id).collect(), vec![id(7 * i + 2)]]
}

/// What one thread computes on batch `i`: the outputs that matter for the model kind.
fn outputs(model: &Model, i: usize) -> Vec<Tensor> {
    let dev = device();
    match model {
        Model::Encoder(m) => {
            let batch = Batch::right_padded(&rows(i, m.vocab_size()), None, m.pad_token_id(), &dev).unwrap();
            let hidden = m.hidden_states(&batch).unwrap();
            let mut out = vec![m.pooled(&hidden).unwrap()];
            if m.has_mlm_head() {
                out.push(m.mlm_logits(&hidden).unwrap());
            }
            out.insert(0, hidden);
            out
        }
        Model::Decoder(m) => {
            let prompts = rows(i, m.vocab_size());
            let batch = Batch::right_padded(&prompts, None, m.pad_token_id(), &dev).unwrap();
            let logits = m.logits(&batch).unwrap();
            // Cached greedy decoding: each thread holds its own caches.
            let config = GenerationConfig { max_new_tokens: 6, stop_tokens: Some(vec![]), ..Default::default() };
            let generated = generate(m, &prompts, &config, |_, _| {}).unwrap();
            let generated: Vec<u32> = generated.concat();
            vec![logits, Tensor::new(generated.as_slice(), &dev).unwrap().to_dtype(DType::F32).unwrap()]
        }
        Model::Seq2seq(_) | Model::Vision(_) | Model::DualEncoder(_) | Model::VisionLanguage(_) => {
            unreachable!("the concurrency fixtures are encoders and decoders")
        }
    }
}

fn check_concurrent_equals_serial(name: &str) {
    let model = load(name);
    let serial: Vec<Vec<Tensor>> = (0..THREADS).map(|i| outputs(&model, i)).collect();
    // Several rounds, so the threads overlap in more than one way.
    for round in 0..3 {
        let concurrent: Vec<Vec<Tensor>> = std::thread::scope(|s| {
            let model = &model;
            let handles: Vec<_> = (0..THREADS).map(|i| s.spawn(move || outputs(model, i))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (a, b)) in serial.iter().zip(&concurrent).enumerate() {
            assert_eq!(a.len(), b.len());
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                let d = max_diff(x, y);
                assert!(d <= 1e-6, "{name} round {round} thread {i} output {k}: max |serial - concurrent| = {d}");
            }
        }
    }
}

#[test]
fn bert_shared_by_four_threads_equals_serial() {
    check_concurrent_equals_serial("bert");
}

#[test]
fn llama_shared_by_four_threads_equals_serial() {
    check_concurrent_equals_serial("llama");
}
