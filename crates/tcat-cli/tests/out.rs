//! `--out` and `--svg`: written atomically next to the resolved target.

use std::path::PathBuf;

use candle_core::Device;
use tcat_testkit::fixture;

mod common;
use common::{fails, ok};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcat-cli-out-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Writing through a symbolic link replaces the link's target and leaves the link a link, with
/// no temporary file left behind.
#[cfg(unix)]
#[test]
fn forward_writes_through_a_link_and_the_link_stays() {
    let dir = scratch("link");
    let bert = fixture("bert");
    std::fs::create_dir(dir.join("real")).unwrap();
    std::fs::write(dir.join("real/out.safetensors"), b"previous").unwrap();
    std::os::unix::fs::symlink("real/out.safetensors", dir.join("link.safetensors")).unwrap();
    let link = dir.join("link.safetensors");
    ok(&["forward", "--model", bert.to_str().unwrap(), "--ids", "2,9,3", "--out", link.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let written = candle_core::safetensors::load(dir.join("real/out.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(written["hidden_states"].dims(), &[1, 3, 32]);
    assert_eq!(names(&dir), ["link.safetensors", "real"]);
    assert_eq!(names(&dir.join("real")), ["out.safetensors"]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bad output paths are refused before the model runs; a failed command leaves a previous file
/// as it was and no temporary file.
#[test]
fn bad_out_paths_are_refused_and_a_previous_file_is_kept() {
    let dir = scratch("bad");
    let bert = fixture("bert");
    let bert = bert.to_str().unwrap();
    let previous = dir.join("previous.safetensors");
    std::fs::write(&previous, b"previous").unwrap();
    let missing = dir.join("no/such/dir/out.safetensors");
    let file_as_dir = previous.join("out.safetensors");
    let cases = [
        (dir.to_str().unwrap().to_string(), "is a directory"),
        (missing.to_str().unwrap().to_string(), "no/such/dir is not usable"),
        (file_as_dir.to_str().unwrap().to_string(), "is not a directory"),
        (String::new(), "a value is required for '--out <OUT>'"),
    ];
    for (out, needle) in &cases {
        let stderr = fails(&["forward", "--model", bert, "--ids", "2,9,3", "--out", out]);
        assert!(
            stderr.contains("--out") && stderr.contains(needle) && stderr.lines().count() == 1,
            "--out {out:?}: {stderr}"
        );
    }
    // A run that fails (a token id past the vocabulary) leaves the previous file intact.
    fails(&["forward", "--model", bert, "--ids", "2,999", "--out", previous.to_str().unwrap()]);
    assert_eq!(std::fs::read(&previous).unwrap(), b"previous");
    assert_eq!(names(&dir), ["previous.safetensors"]);
    // --svg goes through the same checks.
    let stderr = fails(&["bench", "attention", "--seq", "8", "--repeats", "1", "--svg", missing.to_str().unwrap()]);
    assert!(stderr.contains("--svg") && stderr.contains("is not usable"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
