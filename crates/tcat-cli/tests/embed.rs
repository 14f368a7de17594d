//! `tcat embed` on texts longer than the model takes: truncated as sentence-transformers does,
//! or refused with `--no-truncate`.

use std::path::{Path, PathBuf};

use tcat_testkit::fixture;

mod common;
use common::{fails, ok};

fn embedding(model: &Path, text: &str, extra: &[&str]) -> Vec<f64> {
    let mut args = vec!["embed", "--model", model.to_str().unwrap(), "--json"];
    args.extend(extra);
    args.push(text);
    let line: serde_json::Value = serde_json::from_str(ok(&args).trim()).unwrap();
    line["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn repeat(words: &str, n: usize) -> String {
    vec![words; n].join(" ")
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The bert fixture has 64 positions and no sentence config: a 102-token text ([CLS] + 100 +
/// [SEP]) embeds as its first 62 words between the special tokens.
#[test]
fn long_texts_are_truncated_to_the_position_limit() {
    let bert = fixture("bert");
    let long = embedding(&bert, &repeat("the cat", 50), &[]);
    let cut = embedding(&bert, &repeat("the cat", 31), &[]);
    assert!(max_diff(&long, &cut) < 1e-6, "{}", max_diff(&long, &cut));
    let shorter = embedding(&bert, &repeat("the cat", 30), &[]);
    assert!(max_diff(&long, &shorter) > 1e-4);
    // A text that fits is the same with or without --no-truncate.
    assert_eq!(embedding(&bert, "the cat", &["--no-truncate"]), embedding(&bert, "the cat", &[]));
    let err = fails(&["embed", "--model", bert.to_str().unwrap(), "--no-truncate", "the cat", &repeat("the cat", 50)]);
    assert!(err.contains("--no-truncate: text 2") && err.contains("is 102 tokens; expected at most 64"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A copy of the LaBSE-like sentence-transformers folder with `max_seq_length` set.
fn labse_with(max_seq_length: &str, tag: &str) -> PathBuf {
    let src = fixture("labse-like");
    let dir = std::env::temp_dir().join(format!("tcat-cli-embed-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&src, &dir);
    let path = dir.join("sentence_bert_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["max_seq_length"] = serde_json::from_str(max_seq_length).unwrap();
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// sentence_bert_config.json's `max_seq_length` (8 here: 6 words and the special tokens) wins
/// over the position table; a bad value is refused by name.
#[test]
fn max_seq_length_of_the_sentence_config_is_the_limit() {
    let dir = labse_with("8", "eight");
    let long = embedding(&dir, &repeat("the cat", 20), &[]);
    let cut = embedding(&dir, &repeat("the cat", 3), &[]);
    assert!(max_diff(&long, &cut) < 1e-6, "{}", max_diff(&long, &cut));
    let err = fails(&["embed", "--model", dir.to_str().unwrap(), "--no-truncate", &repeat("the cat", 20)]);
    assert!(
        err.contains("expected at most 8 (max_seq_length in") && err.contains("sentence_bert_config.json"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    for (value, tag) in [("\"long\"", "string"), ("0", "zero"), ("-3", "negative")] {
        let dir = labse_with(value, tag);
        let err = fails(&["embed", "--model", dir.to_str().unwrap(), "the cat"]);
        assert!(err.contains(&format!("max_seq_length is {value}; expected a positive integer")), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Larger than the position table (64): the table is the limit.
    let dir = labse_with("100000", "huge");
    let err = fails(&["embed", "--model", dir.to_str().unwrap(), "--no-truncate", &repeat("the cat", 50)]);
    assert!(err.contains("expected at most 64 (the model's position table"), "{err}");
    assert_eq!(embedding(&dir, &repeat("the cat", 50), &[]).len(), embedding(&dir, "the", &[]).len());
    std::fs::remove_dir_all(&dir).unwrap();
}
