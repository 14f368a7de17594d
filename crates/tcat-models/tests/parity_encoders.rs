//! Parity with Hugging Face `transformers` for issue 13's text encoders on tiny perturbed
//! checkpoints it saved (tests/fixtures/tcat_fixtures/encoders2.py): ALBERT, ELECTRA and XLM, f32
//! within 1e-4, each padded batch equal to its rows run alone.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use tcat_models::{Batch, Model, ModelSource};

const TOL: f32 = 1e-4;

fn load(name: &str, dtype: DType) -> Model {
    let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
    Model::load(&source, &device(), dtype).unwrap()
}

/// The inputs of an encoder fixture as a batch: rows under the mask, with the fixture's token
/// types and language ids when it has them.
fn encoder_batch(exp: &std::collections::HashMap<String, Tensor>, pad: u32, only: Option<usize>) -> Batch {
    let mask = &exp["attention_mask"];
    let pick = |all: Vec<Vec<u32>>| -> Vec<Vec<u32>> {
        match only {
            Some(i) => vec![all[i].clone()],
            None => all,
        }
    };
    let ids = pick(rows(&exp["input_ids"], mask));
    let types = exp.get("token_type_ids").map(|t| pick(rows(t, mask)));
    let batch = Batch::right_padded(&ids, types.as_deref(), pad, &device()).unwrap();
    match exp.get("langs") {
        Some(langs) => batch.with_languages(&pick(rows(langs, mask))).unwrap(),
        None => batch,
    }
}

/// Hidden states of the padded batch match transformers, and each row run alone matches its
/// row of the batch (padding changes nothing).
fn check_hidden_and_rows_alone(name: &str, encoder: &tcat_models::EncoderModel) -> Tensor {
    let exp = expected(name);
    let mask = &exp["attention_mask"];
    let hidden = encoder.hidden_states(&encoder_batch(&exp, encoder.pad_token_id(), None)).unwrap();
    let d = masked_max_diff(&hidden, &exp["hidden_states"], mask);
    eprintln!("{name}: hidden_states max abs diff {d:.2e}");
    assert!(d <= TOL, "{name} hidden_states differ by {d}");
    for (i, row) in rows(&exp["input_ids"], mask).iter().enumerate() {
        let alone = encoder.hidden_states(&encoder_batch(&exp, encoder.pad_token_id(), Some(i))).unwrap();
        let in_batch = hidden.narrow(0, i, 1).unwrap().narrow(1, 0, row.len()).unwrap();
        let d = max_diff(&alone, &in_batch);
        assert!(d <= TOL, "{name} row {i} alone differs from the padded batch by {d}");
    }
    hidden
}

/// ALBERT: factorised embeddings (E 16 → H 32), 2 layers sharing one group's weights,
/// gelu_new; pooler, masked-LM (H → E → V) and sentence-order logits.
#[test]
fn albert_factorised_embeddings_and_shared_layers_match_transformers() {
    let exp = expected("albert");
    let model = load("albert", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let mask = &exp["attention_mask"];
    let hidden = check_hidden_and_rows_alone("albert", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["mlm_logits"], mask);
    assert!(d <= TOL, "albert mlm_logits differ by {d}");
    let pooled = encoder.pooled(&hidden).unwrap();
    let d = max_diff(&pooled, &exp["pooler_output"]);
    assert!(d <= TOL, "albert pooler_output differs by {d}");
    let d = max_diff(&encoder.sentence_order_logits(&pooled).unwrap(), &exp["sop_logits"]);
    eprintln!("albert: sop_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "albert sop_logits differ by {d}");
}

/// ELECTRA's discriminator: embeddings of width 16 projected to 32 (`embeddings_project`),
/// replaced-token logits per token.
#[test]
fn electra_discriminator_with_projected_embeddings_matches_transformers() {
    let exp = expected("electra");
    let model = load("electra", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("electra", encoder);
    let logits = encoder.replaced_token_logits(&hidden).unwrap();
    let d = masked_max_diff(
        &logits.unsqueeze(2).unwrap(),
        &exp["discriminator_logits"].unsqueeze(2).unwrap(),
        &exp["attention_mask"],
    );
    eprintln!("electra: discriminator_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "electra discriminator logits differ by {d}");
    // The discriminator checkpoint has no generator head.
    assert!(encoder.mlm_logits(&hidden).is_err());
}

/// ELECTRA's generator: masked-LM head H 24 → E 16 (exact GELU, LayerNorm) → V, tied to the
/// E-wide token table; no discriminator head.
#[test]
fn electra_generator_masked_lm_head_matches_transformers() {
    let exp = expected("electra-generator");
    let model = load("electra-generator", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("electra-generator", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["mlm_logits"], &exp["attention_mask"]);
    eprintln!("electra-generator: mlm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "electra generator mlm_logits differ by {d}");
    assert!(!encoder.has_replaced_token_head());
}

/// XLM: language embeddings added per token (two languages in row 0), tied LM head with bias.
#[test]
fn xlm_language_embeddings_match_transformers() {
    let exp = expected("xlm");
    let model = load("xlm", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let mask = &exp["attention_mask"];
    let hidden = check_hidden_and_rows_alone("xlm", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["lm_logits"], mask);
    eprintln!("xlm: lm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "xlm lm_logits differ by {d}");
    // Without language ids the output differs (the fixture's languages matter).
    let ids = rows(&exp["input_ids"], mask);
    let plain = Batch::right_padded(&ids, None, encoder.pad_token_id(), &device()).unwrap();
    let d = masked_max_diff(&encoder.hidden_states(&plain).unwrap(), &exp["hidden_states"], mask);
    assert!(d > 1e-2, "language ids changed nothing ({d})");
}

/// Language ids: one row per row of ids, of the same length, inside the table; and only for
/// models that have a language table.
#[test]
fn language_ids_are_checked() {
    let exp = expected("xlm");
    let model = load("xlm", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let ids = rows(&exp["input_ids"], &exp["attention_mask"]);
    let batch = || Batch::right_padded(&ids, None, encoder.pad_token_id(), &device()).unwrap();
    let short: Vec<Vec<u32>> = ids.iter().map(|r| vec![0; r.len().saturating_sub(1).max(1)]).collect();
    let err = batch().with_languages(&short).unwrap_err().to_string();
    assert!(err.contains("row 0") && err.contains("language ids"), "{err}");
    let err = batch().with_languages(&ids[..1].iter().map(|r| vec![0; r.len()]).collect::<Vec<_>>()).unwrap_err();
    assert!(err.to_string().contains("1 rows of language ids for 3 rows"), "{err}");
    let out_of_table: Vec<Vec<u32>> = ids.iter().map(|r| vec![2; r.len()]).collect();
    let err = encoder.hidden_states(&batch().with_languages(&out_of_table).unwrap()).unwrap_err().to_string();
    assert!(err.contains("language id 2") && err.contains("n_langs 2"), "{err}");
    let bert = load("bert", DType::F32);
    let bert = bert.as_encoder().unwrap();
    let one = Batch::right_padded(&[vec![5, 6]], None, 0, &device()).unwrap().with_languages(&[vec![0, 0]]).unwrap();
    let err = bert.hidden_states(&one).unwrap_err().to_string();
    assert!(err.contains("no language embeddings"), "{err}");
}
