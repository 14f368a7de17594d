//! Vision-language models built from specs (PaLM-E's prefix embeddings, CoCa's attentional
//! pooler and multimodal layers), on seeded random weights: the prefix path equals a token
//! sequence whose table rows are the image vectors, padded batches equal rows alone, the text
//! logits are causal, and CoCa's lower layers do not cross-attend.

use candle_core::{DType, Device, IndexOp, Tensor};
use tcat_attention::AttentionMask;
use tcat_blocks::{Embeddings, LmHead};
use tcat_core::Linear;
use tcat_models::{Batch, DecoderModel, ImageConnection, Model, VisionLanguageModel};
use tcat_position::sequential_position_ids;
use tcat_spec::*;

const VOCAB: usize = 40;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// A ViT of 8-pixel images in 4-pixel patches (4 patches and a class token), 24 wide.
fn image_tower() -> TowerSpec {
    let mut tower = TowerSpec::encoder(0, 24, 2, 2, 5)
        .with_residual(ResidualSpec::Pre)
        .with_norm(NormSpec::LayerNorm { eps: 1e-6, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(48, ActivationKind::Gelu));
    tower.embeddings = EmbeddingSpec {
        input: InputKind::Patches { image_size: 8, patch_size: 4, channels: 3 },
        ..EmbeddingSpec::tokens()
    };
    tower.final_norm = true;
    tower
}

fn build(decoder: TowerSpec, connection: VisionConnection, seed: u64) -> VisionLanguageModel {
    let spec = ArchSpec {
        stacks: Stacks::VisionLanguage { vision: image_tower(), decoder, connection },
        heads: vec![HeadSpec::Lm { tied: true, bias: false }],
        tokens: SpecialTokens { eos: vec![1], pad: 0, decoder_start: None },
    };
    match Model::preset(&spec, "vision-language-test", seed, &Device::Cpu, DType::F32).unwrap() {
        Model::VisionLanguage(m) => *m,
        other => panic!("expected a vision-language model, built {other:?}"),
    }
}

/// PaLM-E-like: a rotary, RMS-normed decoder 32 wide reading the image as a prefix.
fn palm_e() -> VisionLanguageModel {
    let decoder = TowerSpec::decoder(VOCAB, 32, 2, 4, 64)
        .with_positions(PositionSpec::Rotary(RotarySpec::full(10000.0)))
        .with_norm(NormSpec::RmsNorm { eps: 1e-6 });
    build(decoder, VisionConnection::PrefixEmbeddings, 3)
}

/// CoCa-like: a decoder of 3 layers, the first unimodal, the others cross-attending to 3 pooled
/// image tokens.
fn coca() -> VisionLanguageModel {
    let mut decoder = TowerSpec::decoder(VOCAB, 32, 3, 4, 64);
    decoder.cross_attention = Some(AttentionSpec::multi_head(32, 4, Masking::Bidirectional));
    build(decoder, VisionConnection::AttentionalPooling { queries: 3, unimodal_layers: 1 }, 5)
}

fn pixels(images: usize, seed: f64) -> Tensor {
    let n = images * 3 * 8 * 8;
    let values: Vec<f32> = (0..n).map(|i| ((i as f64 * 0.37 + seed).sin()) as f32).collect();
    Tensor::from_vec(values, (images, 3, 8, 8), &Device::Cpu).unwrap()
}

/// The prefix-embedding path is the token path with the image vectors as extra table rows:
/// a decoder whose table is extended by the projected image tokens, given their ids, gives the
/// same final states, in a right-padded batch of two rows.
#[test]
fn image_prefix_equals_tokens_whose_table_rows_are_the_image_vectors() {
    let model = palm_e();
    assert!(matches!(model.connection(), ImageConnection::Prefix(_)));
    let decoder = model.decoder();
    let dev = Device::Cpu;
    let image = pixels(2, 0.0);
    let prefix = model.image_tokens(&image).unwrap(); // [2, 5, 32]
    assert_eq!(prefix.dims(), &[2, 5, 32]);
    let rows = [vec![3u32, 9, 4, 17], vec![8u32, 2]];
    let batch = Batch::right_padded(&rows, None, 0, &dev).unwrap();
    let words = decoder.word_vectors(batch.input_ids()).unwrap();
    let positions = sequential_position_ids(2, 9, 0, &dev).unwrap();
    let image_keep = Tensor::ones((2, 5), batch.attention_mask().dtype(), &dev).unwrap();
    let keep = Tensor::cat(&[&image_keep, batch.attention_mask()], 1).unwrap();
    let mask = AttentionMask::causal().with_key_padding(keep.clone());
    let vectors = Tensor::cat(&[&prefix, &words], 1).unwrap();
    let via_vectors = decoder.hidden_states_from_vectors(&vectors, &positions, &mask, None, None).unwrap();

    let table = decoder.word_vectors(&Tensor::arange(0u32, VOCAB as u32, &dev).unwrap().unsqueeze(0).unwrap());
    let table = table.unwrap().squeeze(0).unwrap();
    for (r, row) in rows.iter().enumerate() {
        // Row r's image tokens become ids VOCAB.. of an extended table.
        let extended = Tensor::cat(&[&table, &prefix.i(r).unwrap()], 0).unwrap();
        let plain = DecoderModel::new(
            Embeddings::new(extended, None, None, None),
            decoder.stack().clone(),
            LmHead::new(Linear::new(table.clone(), None)),
            64,
            vec![1],
            0,
        );
        let ids: Vec<u32> = (0..5).map(|i| VOCAB as u32 + i).chain(row.iter().copied()).collect();
        let n = ids.len();
        let ids = Tensor::new(ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let positions = sequential_position_ids(1, n, 0, &dev).unwrap();
        let expected = plain.hidden_states(&ids, &positions, &AttentionMask::causal(), None).unwrap();
        let got = via_vectors.i(r).unwrap().narrow(0, 0, n).unwrap().unsqueeze(0).unwrap();
        let d = max_diff(&got, &expected);
        assert!(d < 1e-5, "row {r}: the image prefix differs from the extended-table tokens by {d}");
    }
}

/// Logits come at the text positions only, and a padded batch equals its rows run alone.
#[test]
fn padded_batches_equal_rows_alone_for_both_connections() {
    let dev = Device::Cpu;
    let rows = [vec![3u32, 9, 4, 17, 5], vec![8u32, 2]];
    for (name, model) in [("palm-e", palm_e()), ("coca", coca())] {
        let images = pixels(2, 1.0);
        let batch = Batch::right_padded(&rows, None, 0, &dev).unwrap();
        let logits = model.logits(&images, &batch).unwrap();
        assert_eq!(logits.dims(), &[2, 5, VOCAB], "{name}");
        for (r, row) in rows.iter().enumerate() {
            let alone = Batch::right_padded(std::slice::from_ref(row), None, 0, &dev).unwrap();
            let expected = model.logits(&images.narrow(0, r, 1).unwrap(), &alone).unwrap();
            let got = logits.narrow(0, r, 1).unwrap().narrow(1, 0, row.len()).unwrap();
            let d = max_diff(&got, &expected);
            assert!(d < 1e-5, "{name} row {r}: padded batch differs from the row alone by {d}");
        }
    }
}

/// The text logits are causal (a later token changes no earlier logits) and read the image
/// (another image changes them).
#[test]
fn text_logits_are_causal_and_conditioned_on_the_image() {
    let dev = Device::Cpu;
    for (name, model) in [("palm-e", palm_e()), ("coca", coca())] {
        let a = Batch::right_padded(&[vec![3u32, 9, 4, 17]], None, 0, &dev).unwrap();
        let b = Batch::right_padded(&[vec![3u32, 9, 4, 30]], None, 0, &dev).unwrap();
        let image = pixels(1, 2.0);
        let la = model.logits(&image, &a).unwrap();
        let lb = model.logits(&image, &b).unwrap();
        let d = max_diff(&la.narrow(1, 0, 3).unwrap(), &lb.narrow(1, 0, 3).unwrap());
        assert!(d < 1e-6, "{name}: a later token changed earlier logits by {d}");
        assert!(max_diff(&la.narrow(1, 3, 1).unwrap(), &lb.narrow(1, 3, 1).unwrap()) > 1e-4);
        let other = model.logits(&pixels(1, 7.0), &a).unwrap();
        assert!(max_diff(&la, &other) > 1e-4, "{name}: the logits do not depend on the image");
    }
}

/// CoCa's decoder: the first `unimodal_layers` layers see the text only, the rest
/// cross-attend to the `queries` pooled image tokens.
#[test]
fn coca_has_unimodal_then_multimodal_layers_over_pooled_tokens() {
    let model = coca();
    let crossing: Vec<bool> = model.decoder().stack().layers().iter().map(|l| l.cross_attention().is_some()).collect();
    assert_eq!(crossing, [false, true, true]);
    assert!(matches!(model.connection(), ImageConnection::Pooled(p) if p.num_queries() == 3));
    assert_eq!(model.image_tokens(&pixels(2, 0.5)).unwrap().dims(), &[2, 3, 32]);
}

/// Inputs a user can get wrong are errors naming them.
#[test]
fn mismatched_inputs_are_refused_by_name() {
    let dev = Device::Cpu;
    let model = coca();
    let batch = Batch::right_padded(&[vec![3u32, 9]], None, 0, &dev).unwrap();
    let err = model.logits(&pixels(2, 0.0), &batch).unwrap_err().to_string();
    assert!(err.contains("2 image(s) for 1 text row"), "{err}");
    let wrong_size = Tensor::zeros((1, 3, 16, 16), DType::F32, &dev).unwrap();
    let err = model.logits(&wrong_size, &batch).unwrap_err().to_string();
    assert!(err.contains("pixel_values"), "{err}");
    let out_of_vocab = Batch::right_padded(&[vec![3u32, VOCAB as u32]], None, 0, &dev).unwrap();
    assert!(model.logits(&pixels(1, 0.0), &out_of_vocab).is_err());
    // A PaLM-E prefix counts against the decoder's positions: 5 image tokens + 60 > 64.
    let long = Batch::right_padded(&[vec![3u32; 60]], None, 0, &dev).unwrap();
    let err = palm_e().logits(&pixels(1, 0.0), &long).unwrap_err().to_string();
    assert!(err.contains("65"), "{err}");
}

/// Specs the builder cannot honour are refused: a prefix decoder that cross-attends, a pooled
/// connection without cross-attention, every layer unimodal.
#[test]
fn inconsistent_vision_language_specs_are_refused() {
    let build_err = |decoder: TowerSpec, connection| {
        let spec = ArchSpec {
            stacks: Stacks::VisionLanguage { vision: image_tower(), decoder, connection },
            heads: vec![HeadSpec::Lm { tied: true, bias: false }],
            tokens: SpecialTokens::default(),
        };
        Model::preset(&spec, "bad", 0, &Device::Cpu, DType::F32).unwrap_err().to_string()
    };
    let plain = TowerSpec::decoder(VOCAB, 32, 2, 4, 64);
    let mut crossing = plain.clone();
    crossing.cross_attention = Some(AttentionSpec::multi_head(32, 4, Masking::Bidirectional));
    let err = build_err(crossing.clone(), VisionConnection::PrefixEmbeddings);
    assert!(err.contains("cannot cross-attend"), "{err}");
    let err = build_err(plain, VisionConnection::AttentionalPooling { queries: 2, unimodal_layers: 1 });
    assert!(err.contains("cross-attention"), "{err}");
    let err = build_err(crossing, VisionConnection::AttentionalPooling { queries: 2, unimodal_layers: 2 });
    assert!(err.contains("unimodal"), "{err}");
}
