//! `tcat bench attention`, run as a user runs it.

mod common;
use common::tcat;

/// The device kind the rows report: `cpu`, `cuda` or `metal` (no ordinal).
fn device_kind() -> String {
    let name = std::env::var("TCAT_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    name.split(':').next().unwrap_or_default().to_string()
}

#[test]
fn bench_attention_prints_rows_and_writes_the_plot() {
    let svg = std::env::temp_dir().join(format!("tcat-bench-{}.svg", std::process::id()));
    let _ = std::fs::remove_file(&svg);
    let svg_arg = svg.to_str().unwrap();
    let args =
        ["bench", "attention", "--variants", "dense,sliding:16", "--seq", "32,64", "--repeats", "1", "--svg", svg_arg];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = tcat(&json_args);
    assert!(out.status.success(), "tcat failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys: Vec<(String, u64)> =
        rows.iter().map(|r| (r["variant"].as_str().unwrap().to_string(), r["seq"].as_u64().unwrap())).collect();
    let expected: Vec<(String, u64)> =
        [("dense", 32), ("sliding:16", 32), ("dense", 64), ("sliding:16", 64)].map(|(v, s)| (v.into(), s)).into();
    assert_eq!(keys, expected);
    for row in &rows {
        assert_eq!(
            (row["batch"].as_u64(), row["heads"].as_u64(), row["head_dim"].as_u64()),
            (Some(1), Some(8), Some(64))
        );
        assert_eq!(row["dtype"], "f32");
        assert_eq!(row["device"], device_kind().as_str());
        assert_eq!(row["times_s"].as_array().unwrap().len(), 1);
        assert!(row["median_s"].as_f64().unwrap() > 0.0);
        // Peak memory counts CPU heap bytes only (GPU memory is not counted: null). On the CPU
        // the scores alone are heads · seq² · 4 bytes.
        let seq = row["seq"].as_u64().unwrap();
        if device_kind() == "cpu" {
            assert!(row["peak_bytes"].as_u64().unwrap() >= 8 * seq * seq * 4, "{row}");
        } else {
            assert!(row["peak_bytes"].is_null(), "{row}");
        }
        assert!(row["ratio_to_dense"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(rows[0]["ratio_to_dense"], 1.0);

    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(doc.starts_with("<?xml") && doc.trim_end().ends_with("</svg>"));
    assert_eq!(doc.matches("<polyline").count(), 2);
    assert_eq!(doc.matches("<circle").count(), 4);
    for v in ["dense", "sliding:16"] {
        assert!(doc.contains(&format!(r#"data-variant="{v}""#)), "{v}");
    }

    // Without --json: the table.
    let out = tcat(&args);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let table: Vec<&str> = text.lines().filter(|l| l.starts_with("dense") || l.starts_with("sliding")).collect();
    assert_eq!(table.len(), 4, "{text}");
    let memory = if device_kind() == "cpu" { "KiB" } else { "n/a" }; // heap bytes on the CPU only
    assert!(table[0].trim_end().ends_with("1.00") && table.iter().all(|l| l.contains(memory)), "{text}");
    let _ = std::fs::remove_file(&svg);
}

#[test]
fn bench_attention_rejects_bad_input() {
    for (args, message) in [
        (
            vec!["--variants", "dense,warp"],
            "unknown attention variant `warp`; known: dense, dense-bidirectional, sliding:W",
        ),
        (vec!["--variants", "sliding"], "sliding:W"),
        (vec!["--seq", "32,abc"], "--seq"),
        (vec!["--repeats", "0"], "--repeats"),
        (vec!["--heads", "0"], "--heads"),
    ] {
        let mut all = vec!["bench", "attention", "--seq", "8"];
        all.extend(args.iter());
        let out = tcat(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} should fail");
        assert!(!stderr.contains("panicked"), "{all:?} panicked:\n{stderr}");
        assert!(stderr.contains(message), "{all:?}: {stderr}");
    }
}
