//! `tcat forward --latents`: the GLIDE, Latent Diffusion and Imagen presets run their text
//! encoder and one U-Net text-conditioning layer over given image tokens (issue 13's presets);
//! a padded text row conditions its latents as the row alone does; bad latents are clear errors.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

mod common;
use common::{fails, ok, temp_out};

/// Writes `latents` `[rows, 6, 32]` (the tiny presets' image width) to a file of `tag`.
fn latents_file(tag: &str, latents: &Tensor) -> std::path::PathBuf {
    let path = temp_out(&format!("latents-{tag}"));
    candle_core::safetensors::save(&HashMap::from([("latents".to_string(), latents.clone())]), &path).unwrap();
    path
}

fn run(preset: &str, ids: &[&str], latents: &std::path::Path, tag: &str) -> HashMap<String, Tensor> {
    let out = temp_out(tag);
    let model = format!("preset:{preset}");
    let mut args = vec!["forward", "--model", &model];
    for row in ids {
        args.extend(["--ids", row]);
    }
    let (latents, out_str) = (latents.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--latents", latents, "--out", out_str]);
    ok(&args);
    let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    std::fs::remove_file(out).ok();
    written
}

#[test]
fn diffusion_presets_condition_latents_on_their_text_and_ignore_padding() {
    let dev = Device::Cpu;
    let latents = Tensor::randn(0f32, 1.0, (2, 6, 32), &dev).unwrap();
    let both = latents_file("both", &latents);
    let second = latents_file("second", &latents.narrow(0, 1, 1).unwrap());
    for preset in ["glide", "latent-diffusion", "imagen"] {
        let batch = run(preset, &["5,9,11,3", "7,2"], &both, &format!("{preset}-batch"));
        let conditioned = &batch["conditioned_latents"];
        assert_eq!(conditioned.dims(), &[2, 6, 32], "{preset}");
        // The branch changes the latents.
        let moved = (conditioned - &latents).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(moved > 1e-3, "{preset}: conditioning left the latents unchanged");
        // Row 1 (two tokens, padded in the batch) conditions its latents as it does alone.
        let alone = run(preset, &["7,2"], &second, &format!("{preset}-alone"));
        let d = (conditioned.narrow(0, 1, 1).unwrap() - &alone["conditioned_latents"])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-4, "{preset}: the padded row's conditioned latents differ from the row alone by {d}");
        // Other text, other conditioning.
        let other = run(preset, &["8,8,8,8", "7,2"], &both, &format!("{preset}-other"));
        let d = (other["conditioned_latents"].narrow(0, 0, 1).unwrap() - conditioned.narrow(0, 0, 1).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d > 1e-4, "{preset}: the text did not reach the latents");
    }
    std::fs::remove_file(both).ok();
    std::fs::remove_file(second).ok();
}

#[test]
fn bad_latents_are_clear_errors() {
    let dev = Device::Cpu;
    let out = temp_out("latents-bad-out");
    let o = out.to_str().unwrap();
    let narrow = latents_file("narrow", &Tensor::zeros((1, 4, 16), candle_core::DType::F32, &dev).unwrap());
    let err = fails(&[
        "forward",
        "--model",
        "preset:glide",
        "--ids",
        "1,2",
        "--latents",
        narrow.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(err.contains("latents have shape [1, 4, 16]") && err.contains("32"), "{err}");
    let rows = latents_file("rows", &Tensor::zeros((2, 4, 32), candle_core::DType::F32, &dev).unwrap());
    let err = fails(&[
        "forward",
        "--model",
        "preset:imagen",
        "--ids",
        "1,2",
        "--latents",
        rows.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(err.contains("1 (rows of text)"), "{err}");
    let unnamed = temp_out("latents-unnamed");
    candle_core::safetensors::save(
        &HashMap::from([("x".to_string(), Tensor::zeros((1, 4, 32), candle_core::DType::F32, &dev).unwrap())]),
        &unnamed,
    )
    .unwrap();
    let err = fails(&[
        "forward",
        "--model",
        "preset:glide",
        "--ids",
        "1,2",
        "--latents",
        unnamed.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(err.contains("no `latents` tensor"), "{err}");
    let err = fails(&[
        "forward",
        "--model",
        "preset:bert",
        "--ids",
        "1,2",
        "--latents",
        narrow.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(err.contains("no text-conditioning layer"), "{err}");
    assert!(!out.exists(), "a failed forward wrote {o}");
    for f in [narrow, rows, unnamed] {
        std::fs::remove_file(f).ok();
    }
}
