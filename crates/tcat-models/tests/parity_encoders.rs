//! Parity with Hugging Face `transformers` for issue 13's text encoders on tiny perturbed
//! checkpoints it saved (tests/fixtures/tcat_fixtures/encoders2.py): ALBERT, ELECTRA, XLM,
//! DeBERTa-v2 and XLNet, f32 within 1e-4, each padded batch equal to its rows run alone.

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

/// DeBERTa-v2: disentangled attention (content-to-position and position-to-content over 8 log
/// buckets of distances up to 64, keys shared with the content projections, normalised relative
/// embeddings, scale `1/√(3·head_dim)`), no absolute positions; a 12-token row reaches the
/// logarithmic buckets. The masked-LM head is tied to the token table.
#[test]
fn deberta_v2_disentangled_attention_matches_transformers() {
    let exp = expected("deberta-v2");
    let model = load("deberta-v2", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("deberta-v2", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["mlm_logits"], &exp["attention_mask"]);
    eprintln!("deberta-v2: mlm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "deberta-v2 mlm_logits differ by {d}");
}

/// XLNet's content stream: relative sinusoids clamped to 5 with per-layer `u`, `v`, relative
/// segment encodings from the token types, post-norm layers; right-padded rows equal their
/// rows alone, and the tied output layer with its bias matches.
#[test]
fn xlnet_relative_positions_and_segments_match_transformers() {
    let exp = expected("xlnet");
    let model = load("xlnet", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("xlnet", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["lm_logits"], &exp["attention_mask"]);
    eprintln!("xlnet: lm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "xlnet lm_logits differ by {d}");
    // The segments matter: without token types the states move away from transformers'.
    let ids = rows(&exp["input_ids"], &exp["attention_mask"]);
    let plain = Batch::right_padded(&ids, None, encoder.pad_token_id(), &device()).unwrap();
    let d = masked_max_diff(&encoder.hidden_states(&plain).unwrap(), &exp["hidden_states"], &exp["attention_mask"]);
    assert!(d > 1e-2, "token types changed nothing ({d})");
}

/// XLNet pads on the left: the left-padded batch matches transformers' (and so the rows alone,
/// which the fixture checked), relative positions ignoring where the row starts.
#[test]
fn xlnet_left_padded_batch_matches_transformers() {
    let exp = expected("xlnet");
    let model = load("xlnet", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let mask = &exp["left_attention_mask"];
    let ids = rows(&exp["left_input_ids"], mask);
    let types = rows(&exp["left_token_type_ids"], mask);
    let batch = Batch::left_padded_with_types(&ids, &types, encoder.pad_token_id(), &device()).unwrap();
    let hidden = encoder.hidden_states(&batch).unwrap();
    let d = masked_max_diff(&hidden, &exp["left_hidden_states"], mask);
    eprintln!("xlnet: left-padded hidden_states max abs diff {d:.2e}");
    assert!(d <= TOL, "xlnet left-padded hidden states differ by {d}");
}

/// A DeBERTa-v2 checkpoint saved with `legacy: false` keeps its masked-LM head under
/// `lm_predictions.lm_head` (dense, LayerNorm, bias; tied): the same head as the fixture's legacy
/// one under other names, so the logits are the same.
#[test]
fn deberta_v2_non_legacy_head_names_load() {
    let exp = expected("deberta-v2");
    let dir = std::env::temp_dir().join(format!("tcat-deberta-non-legacy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("deberta-v2");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["legacy"] = serde_json::Value::Bool(false);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let renamed: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let name = name
                .replace("cls.predictions.transform.", "lm_predictions.lm_head.")
                .replace("cls.predictions.bias", "lm_predictions.lm_head.bias");
            (name, t)
        })
        .collect();
    assert!(renamed.contains_key("lm_predictions.lm_head.dense.weight"));
    candle_core::safetensors::save(&renamed, dir.join("model.safetensors")).unwrap();
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    let model = Model::load(&source, &device(), DType::F32).unwrap();
    let encoder = model.as_encoder().unwrap();
    let mask = &exp["attention_mask"];
    let batch = Batch::right_padded(&rows(&exp["input_ids"], mask), None, 0, &device()).unwrap();
    let logits = encoder.mlm_logits(&encoder.hidden_states(&batch).unwrap()).unwrap();
    let d = masked_max_diff(&logits, &exp["mlm_logits"], mask);
    std::fs::remove_dir_all(&dir).ok();
    assert!(d <= TOL, "non-legacy deberta-v2 mlm_logits differ by {d}");
}

/// DeBERTa v1: the per-head fused `in_proj` with query and value biases, the layers' own
/// position projections (`pos_proj`, `pos_q_proj` with its bias), distances clamped at
/// `max_relative_positions` 8 (a 20-token row), absolute positions and segments as well.
#[test]
fn deberta_v1_matches_transformers() {
    let exp = expected("deberta-v1");
    let model = load("deberta-v1", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("deberta-v1", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["mlm_logits"], &exp["attention_mask"]);
    eprintln!("deberta-v1: mlm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "deberta v1 mlm_logits differ by {d}");
}

/// DeBERTa-v2 without shared keys (`pos_query_proj`), position-to-content alone (`"p2c"`, scale
/// `1/√(2·head_dim)`), distances up to 6 without buckets, unnormalised relative embeddings,
/// absolute positions and segments.
#[test]
fn deberta_v2_separate_position_projection_matches_transformers() {
    let exp = expected("deberta-v2-separate");
    let model = load("deberta-v2-separate", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("deberta-v2-separate", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["mlm_logits"], &exp["attention_mask"]);
    eprintln!("deberta-v2-separate: mlm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "deberta-v2 (separate projections) mlm_logits differ by {d}");
}

/// DeBERTa-v2 with its n-gram convolution beside the first layer (`conv_kernel_size` 3, 2
/// groups, gelu): the padded rows show the convolution's masking, and the same weights read
/// without the convolution (its fields dropped from the config) are visibly different.
#[test]
fn deberta_v2_token_convolution_matches_transformers() {
    let exp = expected("deberta-v2-conv");
    let model = load("deberta-v2-conv", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("deberta-v2-conv", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["mlm_logits"], &exp["attention_mask"]);
    eprintln!("deberta-v2-conv: mlm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "deberta-v2 (convolution) mlm_logits differ by {d}");

    let dir = std::env::temp_dir().join(format!("tcat-deberta-no-conv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("deberta-v2-conv");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("conv_kernel_size");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    let without = Model::load(&source, &device(), DType::F32).unwrap();
    let h = without.as_encoder().unwrap().hidden_states(&encoder_batch(&exp, 0, None)).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let d = masked_max_diff(&h, &exp["hidden_states"], &exp["attention_mask"]);
    assert!(d > 1e-2, "without its convolution the model still matches ({d}): the test cannot see it");
}

/// DeBERTa-v2 with tables narrower than the hidden states (`embedding_size` 16, hidden 32):
/// `embed_proj` maps the summed word, position and segment vectors before the norm, and the
/// legacy MLM head maps back to width 16 for the tied decoder.
#[test]
fn deberta_v2_embedding_projection_matches_transformers() {
    let exp = expected("deberta-v2-proj");
    let model = load("deberta-v2-proj", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let hidden = check_hidden_and_rows_alone("deberta-v2-proj", encoder);
    let d = masked_max_diff(&encoder.mlm_logits(&hidden).unwrap(), &exp["mlm_logits"], &exp["attention_mask"]);
    eprintln!("deberta-v2-proj: mlm_logits max abs diff {d:.2e}");
    assert!(d <= TOL, "deberta-v2 (embedding projection) mlm_logits differ by {d}");
}

/// `attention_head_size` as deberta-v2-xlarge stores it (hidden / heads) reads as without it;
/// any other size is refused by name.
#[test]
fn deberta_v2_attention_head_size_equal_to_the_split_is_accepted() {
    let exp = expected("deberta-v2");
    let src = fixture("deberta-v2");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let split = config["hidden_size"].as_u64().unwrap() / config["num_attention_heads"].as_u64().unwrap();
    for (size, accepted) in [(split, true), (split * 2, false)] {
        config["attention_head_size"] = serde_json::json!(size);
        let dir = std::env::temp_dir().join(format!("tcat-deberta-head-size-{size}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
        let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
        let loaded = Model::load(&source, &device(), DType::F32);
        std::fs::remove_dir_all(&dir).ok();
        match (loaded, accepted) {
            (Ok(model), true) => {
                let h = model.as_encoder().unwrap().hidden_states(&encoder_batch(&exp, 0, None)).unwrap();
                let d = masked_max_diff(&h, &exp["hidden_states"], &exp["attention_mask"]);
                assert!(d <= TOL, "with attention_head_size {size}: differs by {d}");
            }
            (Err(e), false) => assert!(e.to_string().contains("`attention_head_size`"), "{e}"),
            (Ok(_), false) => panic!("attention_head_size {size} (not hidden / heads) was accepted"),
            (Err(e), true) => panic!("attention_head_size {size} (hidden / heads) refused: {e}"),
        }
    }
}

/// XLNet's segment-level recurrence: three segments of two rows, each read with the states
/// the previous ones left in the memory (6, then 11 remembered positions, beyond `clamp_len`
/// 5), equal transformers' `mems` run; a memory for other rows is refused.
#[test]
fn xlnet_segment_memory_matches_transformers_mems() {
    let exp = candle_core::safetensors::load(fixture("xlnet").join("mems.safetensors"), &device()).unwrap();
    let model = load("xlnet", DType::F32);
    let encoder = model.as_encoder().unwrap();
    let mut memory = encoder.new_memory(None);
    let to_rows = |t: &Tensor| -> Vec<Vec<u32>> {
        t.to_vec2::<i64>().unwrap().into_iter().map(|r| r.into_iter().map(|i| i as u32).collect()).collect()
    };
    for k in 0..3 {
        let (ids, types) = (to_rows(&exp[&format!("seg{k}_ids")]), to_rows(&exp[&format!("seg{k}_types")]));
        let batch = Batch::right_padded(&ids, Some(&types), encoder.pad_token_id(), &device()).unwrap();
        let hidden = encoder.hidden_states_with_memory(&batch, &mut memory).unwrap();
        let d = max_diff(&hidden, &exp[&format!("seg{k}_hidden")]);
        eprintln!("xlnet mems: segment {k} max abs diff {d:.2e}");
        assert!(d <= TOL, "xlnet segment {k} with memory differs by {d}");
    }
    let one_row = Batch::right_padded(&[vec![7, 8]], None, encoder.pad_token_id(), &device()).unwrap();
    let err = encoder.hidden_states_with_memory(&one_row, &mut memory).unwrap_err().to_string();
    assert!(err.contains("holds 2 rows, the batch 1"), "{err}");
    // A model with an absolute position table cannot continue a memory.
    let bert = load("bert", DType::F32);
    let bert = bert.as_encoder().unwrap();
    let mut bert_memory = bert.new_memory(None);
    assert!(bert.hidden_states_with_memory(&one_row, &mut bert_memory).is_err());
}
