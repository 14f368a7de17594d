//! Real weights: sentence-transformers/all-MiniLM-L6-v2 against embeddings computed with
//! `transformers` (tests/fixtures/minilm/make_expected.py). The folder is fetched by
//! scripts/fetch_minilm.sh; the test fails (not skips) when it is missing.

mod common;

use std::path::PathBuf;

use candle_core::DType;
use common::{device, fixture};
use tcat_models::{Batch, Model, ModelSource, SentenceConfig, load_tokenizer};

fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("TCAT_MINILM_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("TCAT_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tcat"));
        cache.join("all-MiniLM-L6-v2")
    });
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 not found in {}: run scripts/fetch_minilm.sh (or set TCAT_MINILM_DIR)",
        dir.display()
    );
    dir
}

#[derive(serde::Deserialize)]
struct Expected {
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_sentence_embeddings_match_transformers() {
    let dir = minilm_dir();
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm/expected.json")).unwrap()).unwrap();
    let dev = device();
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    let tokenizer = load_tokenizer(source.tokenizer.as_ref().unwrap()).unwrap();
    let ids: Vec<Vec<u32>> =
        expected.sentences.iter().map(|s| tokenizer.encode(s.as_str(), true).unwrap().get_ids().to_vec()).collect();
    assert_eq!(ids, expected.ids, "token ids differ from the reference tokenizer");

    let sentence = SentenceConfig::read(&dir).unwrap().expect("a sentence-transformers folder");
    assert_eq!(sentence.pooling, tcat_blocks::SentencePooling::Mean);
    assert!(sentence.normalize);
    let model = Model::load(&source, &dev, DType::F32).unwrap();
    let encoder = model.as_encoder().unwrap();
    let batch = Batch::right_padded(&ids, None, encoder.pad_token_id(), &dev).unwrap();
    let hidden = encoder.hidden_states(&batch).unwrap();
    let pooled = sentence.pooling.pool(&hidden, batch.attention_mask()).unwrap();
    let got: Vec<Vec<f32>> = tcat_blocks::SentencePooling::l2_normalize(&pooled).unwrap().to_vec2().unwrap();
    for ((text, g), want) in expected.sentences.iter().zip(&got).zip(&expected.embeddings) {
        let cos = cosine(g, want);
        let max_abs = g.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(cos >= 0.9999 && max_abs <= 1e-4, "{text:?}: cosine {cos}, max abs diff {max_abs}");
    }
}
