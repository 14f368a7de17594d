//! Parity with Hugging Face `transformers` for issue 13's image models on tiny perturbed
//! checkpoints it saved (tests/fixtures/tcat_fixtures/encoders2.py): ViT (`ViTModel` with its
//! pooler) and CLIP (`CLIPModel`), f32 within 1e-4; CLIP's padded text batch equals its rows run
//! alone; the image preprocessing equals transformers' image processors on the committed image;
//! bad pixel input is a clear error.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use tcat_models::image_processor::{ImageProcessor, RgbImage};
use tcat_models::{Batch, Model, ModelSource};

const TOL: f32 = 1e-4;

fn load(name: &str) -> Model {
    let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
    Model::load(&source, &device(), DType::F32).unwrap()
}

fn on_device(t: &Tensor) -> Tensor {
    t.to_device(&device()).unwrap()
}

/// ViT: patches of 8 over a 32-pixel image (16 + the class token), pre-LN layers, the final
/// LayerNorm on every token, and the tanh pooler.
#[test]
fn vit_hidden_states_and_pooler_match_transformers() {
    let exp = expected("vit");
    let model = load("vit");
    let vit = model.as_vision().expect("a ViT builds an image encoder");
    assert_eq!((vit.image_size(), vit.patch_size(), vit.hidden_size()), (Some(32), 8, 32));
    let hidden = vit.hidden_states(&on_device(&exp["pixel_values"])).unwrap();
    let d = max_diff(&hidden, &exp["hidden_states"]);
    eprintln!("vit: hidden_states max abs diff {d:.2e}");
    assert!(d <= TOL, "vit hidden_states differ by {d}");
    let pooled = vit.pooled(&hidden).unwrap();
    let d = max_diff(&pooled, &exp["pooler_output"]);
    eprintln!("vit: pooler_output max abs diff {d:.2e}");
    assert!(d <= TOL, "vit pooler_output differs by {d}");
    // One image alone is its row of the batch.
    let alone = vit.hidden_states(&on_device(&exp["pixel_values"].narrow(0, 1, 1).unwrap())).unwrap();
    assert!(max_diff(&alone, &hidden.narrow(0, 1, 1).unwrap()) <= 1e-5);
}

/// CLIP: both towers, their pooled states, the projections (normalised) and the logits.
#[test]
fn clip_towers_embeddings_and_logits_match_transformers() {
    let exp = expected("clip");
    let model = load("clip");
    let clip = model.as_dual_encoder().expect("CLIP builds a dual encoder");
    let mask = &exp["attention_mask"];
    let ids = rows(&exp["input_ids"], mask);
    let batch = Batch::right_padded(&ids, None, clip.pad_token_id(), &device()).unwrap();
    let text = clip.text().hidden_states(&batch).unwrap();
    let d = masked_max_diff(&text, &exp["text_hidden_states"], mask);
    eprintln!("clip: text_hidden_states max abs diff {d:.2e}");
    assert!(d <= TOL, "clip text hidden states differ by {d}");
    let pixels = on_device(&exp["pixel_values"]);
    let vision = clip.vision().hidden_states(&pixels).unwrap();
    let d = max_diff(&vision, &exp["vision_hidden_states"]);
    eprintln!("clip: vision_hidden_states max abs diff {d:.2e}");
    assert!(d <= TOL, "clip vision hidden states differ by {d}");
    for (name, got) in [
        ("text_pooled", clip.text_features(&batch).unwrap()),
        ("vision_pooled", clip.image_features(&pixels).unwrap()),
        ("text_embeds", clip.text_embeds(&batch).unwrap()),
        ("image_embeds", clip.image_embeds(&pixels).unwrap()),
    ] {
        let d = max_diff(&got, &exp[name]);
        eprintln!("clip: {name} max abs diff {d:.2e}");
        assert!(d <= TOL, "clip {name} differs by {d}");
    }
    let logits =
        clip.logits_per_image(&clip.image_embeds(&pixels).unwrap(), &clip.text_embeds(&batch).unwrap()).unwrap();
    let d = max_diff(&logits, &exp["logits_per_image"]);
    eprintln!("clip: logits_per_image max abs diff {d:.2e}");
    assert!(d <= TOL, "clip logits_per_image differ by {d}");
    let scale: f32 = exp["logit_scale"].to_scalar::<f32>().unwrap().exp();
    assert!((clip.logit_scale().unwrap() - scale).abs() <= 1e-5 * scale);
}

/// CLIP's text batch is right-padded with the end-of-text id (as its tokenizer pads): each row
/// run alone embeds as in the batch, and pools at its first end-of-text token.
#[test]
fn clip_padded_text_batch_equals_rows_alone() {
    let exp = expected("clip");
    let model = load("clip");
    let clip = model.as_dual_encoder().unwrap();
    let ids = rows(&exp["input_ids"], &exp["attention_mask"]);
    let batch = Batch::right_padded(&ids, None, clip.pad_token_id(), &device()).unwrap();
    let together = clip.text_embeds(&batch).unwrap();
    for (i, row) in ids.iter().enumerate() {
        let alone = clip
            .text_embeds(&Batch::right_padded(std::slice::from_ref(row), None, clip.pad_token_id(), &device()).unwrap())
            .unwrap();
        let d = max_diff(&alone, &together.narrow(0, i, 1).unwrap());
        assert!(d <= 1e-5, "clip text row {i} alone differs from the padded batch by {d}");
    }
}

/// The end-of-text rule of `CLIPTextTransformer`: `eos_token_id` 2 (legacy) pools at each
/// row's highest id, any other id at its first occurrence.
#[test]
fn clip_eos_pooling_rule() {
    use tcat_models::EosPooling;
    let rows = vec![vec![0, 5, 9, 1, 1], vec![0, 1, 7, 1, 1], vec![0, 3, 4, 4, 2]];
    assert_eq!(EosPooling::for_eos(1).positions(&rows), [3, 1, 0]);
    assert_eq!(EosPooling::for_eos(2).positions(&rows), [2, 2, 2]);
    let model = load("clip");
    assert_eq!(model.as_dual_encoder().unwrap().text().pooling(), EosPooling::FirstEos(1));
}

/// Pixel values of another size than the position table's, another rank or an integer dtype
/// are errors that say what was expected.
#[test]
fn bad_pixel_values_are_clear_errors() {
    let model = load("vit");
    let vit = model.as_vision().unwrap();
    let err = |t: Tensor| vit.hidden_states(&on_device(&t)).unwrap_err().to_string();
    let big = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let e = err(big);
    assert!(e.contains("64×64") && e.contains("32×32") && e.contains("interpolating"), "{e}");
    let e = err(Tensor::zeros((3, 32, 32), DType::F32, &Device::Cpu).unwrap());
    assert!(e.contains("[3, 32, 32]") && e.contains("4 dimensions"), "{e}");
    let e = err(Tensor::zeros((1, 3, 32, 32), DType::U8, &Device::Cpu).unwrap());
    assert!(e.contains("U8") && e.contains("floating-point"), "{e}");
    let e = err(Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap());
    assert!(e.contains("1 channels, expected 3"), "{e}");
    let clip = load("clip");
    let e = clip
        .as_dual_encoder()
        .unwrap()
        .image_embeds(&on_device(&Tensor::zeros((2, 3, 24, 24), DType::F32, &Device::Cpu).unwrap()));
    let e = e.unwrap_err().to_string();
    assert!(e.contains("24×24") && e.contains("32×32"), "{e}");
}

/// A ViT whose config says another image size than its position table holds is refused when
/// loading, naming the tensor.
#[test]
fn a_position_table_of_another_size_is_refused() {
    let dir = std::env::temp_dir().join(format!("tcat-vit-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("vit").join("config.json")).unwrap()).unwrap();
    config["image_size"] = 48.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(fixture("vit").join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    let e = Model::load(&source, &Device::Cpu, DType::F32).unwrap_err().to_string();
    assert!(e.contains("position_embeddings"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The committed PNG decodes to the bytes Pillow read.
#[test]
fn the_committed_png_decodes_as_pillow_reads_it() {
    let exp = expected("image-preprocessing");
    let image = RgbImage::open(&fixture("image-preprocessing").join("image.png")).unwrap();
    assert_eq!((image.width, image.height), (40, 30));
    let pillow: Vec<u8> = exp["image_u8"].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(image.pixels, pillow);
}

/// Images that are not plain RGB become the RGB transformers' `convert_to_rgb` makes with
/// Pillow: an RGBA ramp (every colour value at 32 alpha values, 0 and 255 among them), grey
/// with alpha and a palette with a transparent entry composited over white, 16-bit grey
/// clipped; and the RGBA image through CLIP's processor.
#[test]
fn non_rgb_images_convert_as_transformers_does() {
    let exp = expected("image-preprocessing");
    let dir = fixture("image-preprocessing");
    for name in ["rgba", "la", "palette", "gray16"] {
        let image = RgbImage::open(&dir.join(format!("{name}.png"))).unwrap();
        let want = &exp[&format!("{name}_u8")];
        let (h, w, _) = want.dims3().unwrap();
        assert_eq!((image.height, image.width), (h, w), "{name}");
        let want: Vec<u8> = want.flatten_all().unwrap().to_vec1().unwrap();
        let wrong = image.pixels.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(wrong, 0, "{name}: {wrong} of {} values differ from Pillow's", want.len());
    }
    let rgba = RgbImage::open(&dir.join("rgba.png")).unwrap();
    let processor = ImageProcessor::read(&dir.join("clip").join("preprocessor_config.json")).unwrap();
    let pixels = processor.pixel_values(&[rgba], &Device::Cpu).unwrap();
    let d = max_diff(&pixels, &exp["rgba_clip_pixel_values"]);
    eprintln!("clip preprocessing of an RGBA image: max abs diff {d:.2e}");
    assert!(d <= 1e-6, "clip preprocessing of an RGBA image differs by {d}");
}

/// `CLIPImageProcessor` (shortest edge 24, bicubic, centre crop 24, rescale, CLIP's mean and
/// std) and `ViTImageProcessor` (32×32 bilinear, mean and std ½) on the committed image.
#[test]
fn preprocessing_matches_transformers_image_processors() {
    let exp = expected("image-preprocessing");
    let dir = fixture("image-preprocessing");
    let image = RgbImage::open(&dir.join("image.png")).unwrap();
    for (name, key, dims) in
        [("clip", "clip_pixel_values", [1, 3, 24, 24]), ("vit", "vit_pixel_values", [1, 3, 32, 32])]
    {
        let processor = ImageProcessor::read(&dir.join(name).join("preprocessor_config.json")).unwrap();
        let pixels = processor.pixel_values(std::slice::from_ref(&image), &Device::Cpu).unwrap();
        assert_eq!(pixels.dims(), dims);
        let d = max_diff(&pixels, &exp[key]);
        eprintln!("{name} preprocessing: max abs diff {d:.2e}");
        assert!(d <= 1e-6, "{name} preprocessing differs by {d}");
    }
}

/// The model folders' own processors read, and their output fits the models.
#[test]
fn fixture_processors_feed_their_models() {
    let image = RgbImage::open(&fixture("image-preprocessing").join("image.png")).unwrap();
    for name in ["vit", "clip"] {
        let processor = ImageProcessor::read(&fixture(name).join("preprocessor_config.json")).unwrap();
        let pixels = processor.pixel_values(&[image.clone(), image.clone()], &device()).unwrap();
        assert_eq!(pixels.dims(), [2, 3, 32, 32]);
        let model = load(name);
        match &model {
            Model::Vision(m) => assert_eq!(m.hidden_states(&pixels).unwrap().dims(), [2, 17, 32]),
            Model::DualEncoder(m) => assert_eq!(m.image_embeds(&pixels).unwrap().dims(), [2, 16]),
            _ => panic!("{name}: not an image model"),
        }
    }
}

/// Bad processor configs name the field.
#[test]
fn bad_processor_configs_name_the_field() {
    let err = |v: serde_json::Value| ImageProcessor::from_json(&v).unwrap_err();
    assert!(err(serde_json::json!({"image_processor_type": "DetrImageProcessor"})).contains("DetrImageProcessor"));
    assert!(err(serde_json::json!({"size": {"depth": 3}})).contains("`size`"));
    assert!(err(serde_json::json!({"resample": 0})).contains("nearest"));
    assert!(err(serde_json::json!({"image_std": [0.5, 0.0, 0.5]})).contains("image_std"));
    // A huge output size is refused before anything is allocated.
    let huge = ImageProcessor::from_json(&serde_json::json!({"size": {"height": 100000, "width": 100000}})).unwrap();
    let image = RgbImage::new(2, 2, vec![0; 12]).unwrap();
    let e = huge.preprocess(&image).unwrap_err().to_string();
    assert!(e.contains("100000×100000") && e.contains("`size`"), "{e}");
}

/// A second ViT (tests/fixtures/tcat_fixtures/vision.py): `ViTForImageClassification`'s base
/// model under `vit.` without a pooler, no q/k/v biases, gelu_new, 4 channels, patches of 6;
/// and its classifier's logits.
#[test]
fn vit_classifier_checkpoint_base_model_matches_transformers() {
    let exp = expected("vit-classifier");
    let model = load("vit-classifier");
    let vit = model.as_vision().unwrap();
    assert!(!vit.has_pooler());
    assert_eq!((vit.image_size(), vit.channels()), (Some(24), 4));
    let hidden = vit.hidden_states(&on_device(&exp["pixel_values"])).unwrap();
    let d = max_diff(&hidden, &exp["hidden_states"]);
    eprintln!("vit-classifier: hidden_states max abs diff {d:.2e}");
    assert!(d <= TOL, "vit-classifier hidden_states differ by {d}");
    assert!(vit.pooled(&hidden).unwrap_err().to_string().contains("no pooler"));
    assert!(vit.has_classifier());
    let d = max_diff(&vit.logits(&hidden).unwrap(), &exp["logits"]);
    eprintln!("vit-classifier: logits max abs diff {d:.2e}");
    assert!(d <= TOL, "vit-classifier logits differ by {d}");
    // A ViTModel checkpoint has no classifier.
    let plain = load("vit");
    let e = plain.as_vision().unwrap().logits(&hidden).unwrap_err().to_string();
    assert!(e.contains("no image classifier"), "{e}");
}

/// A second CLIP: the legacy `eos_token_id` 2 (pooled at each row's highest id), rows padded
/// with 0, exact GELU in the text tower, 4 patches of 12.
#[test]
fn clip_legacy_eos_checkpoint_matches_transformers() {
    let exp = expected("clip-legacy");
    let model = load("clip-legacy");
    let clip = model.as_dual_encoder().unwrap();
    assert_eq!(clip.text().pooling(), tcat_models::EosPooling::HighestId);
    let mask = &exp["attention_mask"];
    let ids = rows(&exp["input_ids"], mask);
    let batch = Batch::right_padded(&ids, None, clip.pad_token_id(), &device()).unwrap();
    let text = clip.text().hidden_states(&batch).unwrap();
    let d = masked_max_diff(&text, &exp["text_hidden_states"], mask);
    assert!(d <= TOL, "clip-legacy text hidden states differ by {d}");
    let pixels = on_device(&exp["pixel_values"]);
    let d = max_diff(&clip.vision().hidden_states(&pixels).unwrap(), &exp["vision_hidden_states"]);
    assert!(d <= TOL, "clip-legacy vision hidden states differ by {d}");
    let (images, texts) = (clip.image_embeds(&pixels).unwrap(), clip.text_embeds(&batch).unwrap());
    for (name, got) in [
        ("text_embeds", texts.clone()),
        ("image_embeds", images.clone()),
        ("logits_per_image", clip.logits_per_image(&images, &texts).unwrap()),
    ] {
        let d = max_diff(&got, &exp[name]);
        eprintln!("clip-legacy: {name} max abs diff {d:.2e}");
        assert!(d <= TOL, "clip-legacy {name} differs by {d}");
    }
}
