//! Scratch files for the targets that go through tcat's path-based readers.

use std::path::PathBuf;

/// A scratch folder of this fuzzing process (libFuzzer runs one input at a time per process;
/// `-jobs`/`-fork` workers are separate processes, so the id keeps them apart).
pub fn scratch_dir(target: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcat-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the fuzzing scratch folder");
    dir
}

/// Writes `bytes` to `name` inside `dir` and returns its path.
pub fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a fuzzing scratch file");
    path
}
