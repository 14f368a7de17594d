//! `tcat forward --model preset:coca|preset:palm-e --pixel-values FILE --ids ...`: the
//! vision-language presets write `logits` at the text positions, one image per row; a padded
//! row's logits are the row's alone; `generate` and missing inputs are clear errors.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

mod common;
use common::{fails, ok, temp_out};

/// The tiny presets read 32-pixel RGB images.
fn pixels_file(tag: &str, pixels: &Tensor) -> std::path::PathBuf {
    let path = temp_out(&format!("pixels-{tag}"));
    candle_core::safetensors::save(&HashMap::from([("pixel_values".to_string(), pixels.clone())]), &path).unwrap();
    path
}

fn forward(preset: &str, ids: &[&str], pixels: &std::path::Path, tag: &str) -> HashMap<String, Tensor> {
    let out = temp_out(tag);
    let model = format!("preset:{preset}");
    let mut args = vec!["forward", "--model", &model];
    for row in ids {
        args.extend(["--ids", row]);
    }
    let (pixels, out_str) = (pixels.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--pixel-values", pixels, "--out", out_str]);
    ok(&args);
    let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    std::fs::remove_file(out).ok();
    written
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn vision_language_presets_write_text_logits_conditioned_on_each_image() {
    let dev = Device::Cpu;
    let images = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &dev).unwrap();
    let both = pixels_file("vl-both", &images);
    let second = pixels_file("vl-second", &images.narrow(0, 1, 1).unwrap());
    let swapped = pixels_file(
        "vl-swapped",
        &Tensor::cat(&[images.narrow(0, 1, 1).unwrap(), images.narrow(0, 0, 1).unwrap()], 0).unwrap(),
    );
    for preset in ["coca", "palm-e"] {
        let batch = forward(preset, &["5,9,11,3", "7,2"], &both, &format!("{preset}-vl-batch"));
        let logits = &batch["logits"];
        assert_eq!(logits.dims(), &[2, 4, 256], "{preset}: logits at the text positions only");
        assert_eq!(batch["attention_mask"].dims(), &[2, 4]);
        let alone = forward(preset, &["7,2"], &second, &format!("{preset}-vl-alone"));
        let d = max_diff(&logits.narrow(0, 1, 1).unwrap().narrow(1, 0, 2).unwrap(), &alone["logits"]);
        assert!(d < 1e-4, "{preset}: the padded row differs from the row alone by {d}");
        let other = forward(preset, &["5,9,11,3", "7,2"], &swapped, &format!("{preset}-vl-swapped"));
        assert!(max_diff(&other["logits"], logits) > 1e-4, "{preset}: the logits do not read the image");
    }
}

#[test]
fn vision_language_inputs_that_do_not_fit_are_named() {
    let dev = Device::Cpu;
    let one = pixels_file("vl-one", &Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &dev).unwrap());
    let out = temp_out("vl-errors");
    let (one, out) = (one.to_str().unwrap(), out.to_str().unwrap());
    let err = fails(&[
        "forward",
        "--model",
        "preset:coca",
        "--ids",
        "1,2",
        "--ids",
        "3",
        "--pixel-values",
        one,
        "--out",
        out,
    ]);
    assert!(err.contains("1 image(s) for 2 text row(s)"), "{err}");
    let err = fails(&["forward", "--model", "preset:palm-e", "--ids", "1,2", "--out", out]);
    assert!(err.contains("--pixel-values"), "{err}");
    let err = fails(&["forward", "--model", "preset:coca", "--pixel-values", one, "--out", out]);
    assert!(err.contains("--ids"), "{err}");
    let err = fails(&["generate", "--model", "preset:palm-e", "--prompt-ids", "1,2", "--max-new-tokens", "2"]);
    assert!(err.contains("vision-language"), "{err}");
}
