//! Running the `tcat` binary as a user runs it, shared by the CLI tests.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `tcat` on the device named by `TCAT_TEST_DEVICE` (the CPU when unset), unless the
/// arguments choose one themselves.
pub fn tcat(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tcat"));
    command.args(args);
    if let Ok(device) = std::env::var("TCAT_TEST_DEVICE")
        && !args.contains(&"--device")
    {
        command.args(["--device", &device]);
    }
    command.output().expect("tcat runs")
}

/// Runs a command that must succeed and returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = tcat(args);
    assert!(out.status.success(), "tcat {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail cleanly and returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = tcat(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "tcat {args:?} should fail");
    assert!(!stderr.contains("panicked"), "tcat {args:?} panicked:\n{stderr}");
    stderr
}

/// `--ids` style arguments: the unpadded rows, comma-separated, of an id tensor under its mask.
pub fn id_args(ids: &candle_core::Tensor, mask: &candle_core::Tensor) -> Vec<String> {
    let ids: Vec<Vec<i64>> = ids.to_vec2().unwrap();
    let mask: Vec<Vec<i64>> = mask.to_vec2().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| {
            r.iter().zip(m).filter(|(_, m)| **m != 0).map(|(i, _)| i.to_string()).collect::<Vec<_>>().join(",")
        })
        .collect()
}

/// A temporary output path for one test (`tag`) of this process.
pub fn temp_out(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tcat-cli-{tag}-{}.safetensors", std::process::id()))
}
