//! The image contract of `tcat forward` and `tcat embed` (issue 13), as tools outside the
//! repository use it: `forward --pixel-values FILE.safetensors` writes a ViT's `hidden_states`
//! and CLIP's `image_embeds`, `forward --ids` on CLIP writes `text_embeds`, and `embed --image`
//! prints image and text embeddings and the image-text probabilities.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use tcat_testkit::{expected, fixture, max_diff};

mod common;
use common::{fails, id_args, ok, temp_out};

const TOL: f32 = 1e-4;

/// `tensors` saved to a temporary safetensors file for this test.
fn pixel_file(tag: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
    let path = temp_out(&format!("pixels-{tag}"));
    let map: HashMap<String, Tensor> = tensors.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn forward_pixel_values_on_vit_writes_hidden_states() {
    let exp = expected("vit");
    let input = pixel_file("vit", &[("pixel_values", exp["pixel_values"].clone())]);
    let out = temp_out("vit-hidden");
    ok(&["forward", "--model", s(&fixture("vit")), "--pixel-values", s(&input), "--out", s(&out)]);
    let written = load(&out);
    assert_eq!(written["hidden_states"].dims(), [2, 17, 32]);
    assert_eq!(written["hidden_states"].dtype(), DType::F32);
    assert!(max_diff(&written["hidden_states"], &exp["hidden_states"]) <= TOL);
    for p in [input, out] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn forward_on_clip_writes_normalised_image_and_text_embeds() {
    let exp = expected("clip");
    let clip = fixture("clip");
    let input = pixel_file("clip", &[("pixel_values", exp["pixel_values"].clone())]);
    let out = temp_out("clip-image");
    ok(&["forward", "--model", s(&clip), "--pixel-values", s(&input), "--out", s(&out)]);
    let written = load(&out);
    assert_eq!(written["image_embeds"].dims(), [2, 16]);
    assert!(max_diff(&written["image_embeds"], &exp["image_embeds"]) <= TOL);
    assert!(!written.contains_key("text_embeds"));

    let mut args = vec!["forward".to_string(), "--model".into(), s(&clip).into(), "--out".into(), s(&out).into()];
    for row in id_args(&exp["input_ids"], &exp["attention_mask"]) {
        args.extend(["--ids".to_string(), row]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args);
    let written = load(&out);
    assert_eq!(written["text_embeds"].dims(), [3, 16]);
    assert!(max_diff(&written["text_embeds"], &exp["text_embeds"]) <= TOL);
    assert!(!written.contains_key("image_embeds"));

    // Both at once: both embeddings and CLIPModel's logits_per_image.
    let mut both = args.clone();
    both.extend(["--pixel-values", s(&input)]);
    ok(&both);
    let written = load(&out);
    assert!(max_diff(&written["logits_per_image"], &exp["logits_per_image"]) <= TOL);
    for p in [input, out] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn bad_pixel_files_are_clear_errors() {
    let vit = fixture("vit");
    let out = temp_out("vit-bad");
    let cpu = Device::Cpu;
    let cases = [
        (
            "missing",
            vec![("pixels", Tensor::zeros((1, 3, 32, 32), DType::F32, &cpu).unwrap())],
            "no tensor `pixel_values` (found: pixels)",
        ),
        (
            "rank",
            vec![("pixel_values", Tensor::zeros((3, 32, 32), DType::F32, &cpu).unwrap())],
            "shape [3, 32, 32]; expected [batch, 3, height, width]",
        ),
        (
            "dtype",
            vec![("pixel_values", Tensor::zeros((1, 3, 32, 32), DType::U8, &cpu).unwrap())],
            "is U8; expected f32",
        ),
        (
            "f16",
            vec![("pixel_values", Tensor::zeros((1, 3, 32, 32), DType::F16, &cpu).unwrap())],
            "is F16; expected f32",
        ),
        (
            "size",
            vec![("pixel_values", Tensor::zeros((1, 3, 48, 48), DType::F32, &cpu).unwrap())],
            "the image is 48×48 pixels, but the position table is for 32×32 images",
        ),
        (
            "channels",
            vec![("pixel_values", Tensor::zeros((1, 4, 32, 32), DType::F32, &cpu).unwrap())],
            "4 channels, expected 3",
        ),
    ];
    for (tag, tensors, message) in cases {
        let input = pixel_file(&format!("bad-{tag}"), &tensors);
        let err = fails(&["forward", "--model", s(&vit), "--pixel-values", s(&input), "--out", s(&out)]);
        assert!(err.contains(message), "{tag}: {err}");
        assert!(err.lines().count() == 1, "{tag}: one line expected: {err}");
        std::fs::remove_file(input).unwrap();
    }
    assert!(!out.exists());
    // Not a safetensors file, ids to an image encoder, pixels to a text model.
    let err = fails(&["forward", "--model", s(&vit), "--pixel-values", s(&vit.join("config.json")), "--out", s(&out)]);
    assert!(err.contains("--pixel-values") && err.contains("expected a safetensors file"), "{err}");
    let err = fails(&["forward", "--model", s(&vit), "--ids", "1,2", "--out", s(&out)]);
    assert!(err.contains("is an image encoder (ViT); give --pixel-values"), "{err}");
    let input = pixel_file("bert", &[("pixel_values", Tensor::zeros((1, 3, 32, 32), DType::F32, &cpu).unwrap())]);
    let err = fails(&["forward", "--model", s(&fixture("bert")), "--pixel-values", s(&input), "--out", s(&out)]);
    assert!(err.contains("reads tokens, not images"), "{err}");
    let err = fails(&["forward", "--model", s(&vit), "--pixel-values", s(&input), "--langs", "0", "--out", s(&out)]);
    assert!(err.contains("--langs") && err.contains("cannot be used with"), "{err}");
    std::fs::remove_file(input).unwrap();
    let err = fails(&["forward", "--model", s(&vit), "--out", s(&out)]);
    assert!(err.contains("--ids") && err.contains("required"), "{err}");
}

/// A copy of the CLIP fixture folder with the committed image beside it (and a second image,
/// the same one flipped, as a JPEG-free second file).
fn clip_with_images(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tcat-cli-clip-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("clip")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let a = fixture("image-preprocessing").join("image.png");
    // A second image: the same PNG under another name is enough to check the batch order.
    let b = dir.join("b.png");
    std::fs::copy(&a, &b).unwrap();
    (dir, a, b)
}

#[test]
fn embed_images_and_texts_prints_embeddings_and_probabilities() {
    let (dir, a, b) = clip_with_images("embed");
    let out = ok(&["embed", "--model", s(&dir), "--image", s(&a), "--image", s(&b), "hello world", "a cat", "--json"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2 + 2 + 2, "{out}");
    let vector = |v: &serde_json::Value| -> Vec<f64> {
        v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    assert_eq!(lines[0]["image"], s(&a));
    assert_eq!(lines[1]["image"], s(&b));
    assert_eq!(lines[2]["text"], "hello world");
    assert_eq!(lines[3]["text"], "a cat");
    for line in &lines[..4] {
        let v = vector(line);
        assert_eq!(v.len(), 16);
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "embeddings are L2-normalised: {norm}");
    }
    assert_eq!(vector(&lines[0]), vector(&lines[1]), "the same image twice embeds the same");
    // Probabilities: softmax over the texts of exp(logit_scale) · cosine.
    let scale = expected("clip")["logit_scale"].to_scalar::<f32>().unwrap().exp() as f64;
    let (img, t0, t1) = (vector(&lines[0]), vector(&lines[2]), vector(&lines[3]));
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    let (l0, l1) = (scale * dot(&img, &t0), scale * dot(&img, &t1));
    let p0 = 1.0 / (1.0 + (l1 - l0).exp());
    for line in &lines[4..] {
        assert_eq!(line["texts"], serde_json::json!(["hello world", "a cat"]));
        let p: Vec<f64> = line["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!((p[0] - p0).abs() < 1e-4 && (p[0] + p[1] - 1.0).abs() < 1e-5, "{p:?} vs {p0}");
    }
    // The text lines are `forward --ids`'s text_embeds of the tokenized texts, and the image
    // lines the embeddings of the preprocessed image.
    let text_only = ok(&["embed", "--model", s(&dir), "hello world", "--json"]);
    let text_line: serde_json::Value = serde_json::from_str(text_only.lines().next().unwrap()).unwrap();
    // Equal up to summation order: one text's projections have few enough rows for the
    // matrix-vector kernel, the batch's go through the matrix product.
    let (alone, batched) = (vector(&text_line), vector(&lines[2]));
    let far = alone.iter().zip(&batched).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(far <= 1e-6, "{alone:?} vs {batched:?}: {far}");
    let human = ok(&["embed", "--model", s(&dir), "--image", s(&a), "hello world", "a cat"]);
    assert!(human.contains("image-text probabilities") && human.contains("\"a cat\""), "{human}");
    let image_only = ok(&["embed", "--model", s(&dir), "--image", s(&a)]);
    assert!(image_only.starts_with("image ") && !image_only.contains("probabilities"), "{image_only}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn embed_image_errors_are_clear() {
    let (dir, a, _) = clip_with_images("errors");
    let missing = dir.join("no-such.png");
    let err = fails(&["embed", "--model", s(&dir), "--image", s(&missing), "a cat"]);
    assert!(err.contains("no-such.png"), "{err}");
    let err = fails(&["embed", "--model", s(&dir), "--image", s(&dir.join("config.json")), "a cat"]);
    assert!(err.contains("not an image tcat can decode"), "{err}");
    let err = fails(&["embed", "--model", s(&fixture("bert")), "--image", s(&a), "a cat"]);
    assert!(err.contains("not a text-image model (CLIP)"), "{err}");
    let err = fails(&["embed", "--model", s(&fixture("vit")), "--image", s(&a)]);
    assert!(err.contains("--image"), "{err}");
    std::fs::remove_file(dir.join("preprocessor_config.json")).unwrap();
    let err = fails(&["embed", "--model", s(&dir), "--image", s(&a), "a cat"]);
    assert!(err.contains("no preprocessor_config.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
