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
        // GFLOP/s of the visible pairs: causal dense sees seq (seq + 1) / 2, the window of 16
        // 16 · 17 / 2 + (seq − 16) · 16; 4 · 64 flops per pair and head.
        let pairs = if row["variant"] == "dense" { seq * (seq + 1) / 2 } else { 16 * 17 / 2 + (seq - 16) * 16 };
        let want = (8 * 4 * 64 * pairs) as f64 / row["median_s"].as_f64().unwrap() / 1e9;
        let got = row["gflops"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-9 * want, "{row}: gflops {got} against {want}");
        assert!(row["matmul_gflops"].as_f64().unwrap() > 0.0, "{row}");
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
    assert!(table.iter().all(|l| l.contains(memory)), "{text}");
    // … × dense, then × matmul (the row's GFLOP/s over the matmul's printed above the table).
    let cells: Vec<&str> = table[0].split_whitespace().collect();
    assert_eq!(cells[cells.len() - 2], "1.00", "{text}");
    assert!(cells[cells.len() - 1].parse::<f64>().unwrap() > 0.0, "{text}");
    assert!(text.contains("GFLOP/s") && text.lines().any(|l| l.starts_with("f32 matmul 2048")), "{text}");
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

/// Sizes whose products overflow, or whose inputs or scores cannot fit, are refused by name
/// before anything is allocated: one error line, status 1, no timing table.
#[test]
fn bench_attention_refuses_sizes_that_overflow_or_cannot_fit() {
    let max = u64::MAX.to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--heads", &max], "--heads 18446744073709551615"),
        (vec!["--head-dim", &max], "--head-dim 18446744073709551615"),
        (vec!["--batch", &max], "--batch 18446744073709551615"),
        (vec!["--seq", &max], "--seq 18446744073709551615"),
        // 2^32 × 2^32 wraps to 0 in unchecked arithmetic.
        (vec!["--batch", "4294967296", "--heads", "4294967296"], "exceed the address space"),
        (vec!["--batch", "1000000", "--heads", "1000000", "--seq", "1000000"], "exceed the address space"),
        (vec!["--batch", "-1"], "'--batch <BATCH>'"),
        (vec!["--head-dim", "0"], "--head-dim must be at least 1"),
        (vec!["--batch", "0"], "--batch must be at least 1"),
        (vec!["--seq", "0"], "--seq"),
    ];
    // The inputs alone beyond any machine's memory (on the CPU, where memory is checked).
    let mut cases = cases;
    if device_kind() == "cpu" {
        cases.push((
            vec!["--batch", "1000000", "--heads", "1000", "--seq", "1000", "--head-dim", "1000"],
            "alone would need",
        ));
        // A materialised score matrix past any machine's memory: skipped, so nothing runs.
        cases.push((vec!["--variants", "dense", "--seq", "1000000"], "dense at seq 1000000: skipped"));
    }
    for (args, message) in cases {
        let mut all = vec!["bench", "attention", "--repeats", "1"];
        if !args.contains(&"--seq") {
            all.extend(["--seq", "8"]);
        }
        all.extend(args.iter());
        let start = std::time::Instant::now();
        let out = tcat(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{all:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{all:?} printed {}", String::from_utf8_lossy(&out.stdout));
        assert!(!stderr.contains("panicked"), "{all:?} panicked:\n{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{all:?}: {stderr}");
        assert!(errors[0].contains(message), "{all:?}: expected {message:?} in {stderr}");
        assert!(start.elapsed().as_secs() < 20, "{all:?} took {:?}", start.elapsed());
    }
}

/// A variant that cannot fit is skipped with a line, and the others still run (dense at
/// 100000 tokens would need 112 GiB of scores; linear attention needs kilobytes).
#[test]
fn bench_attention_skips_what_cannot_fit_and_runs_the_rest() {
    if device_kind() != "cpu" {
        return; // memory is checked on the CPU only
    }
    let out = tcat(&[
        "bench",
        "attention",
        "--variants",
        "dense,linear",
        "--seq",
        "8,100000",
        "--heads",
        "1",
        "--head-dim",
        "1",
        "--repeats",
        "1",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("dense at seq 100000: skipped, it would need about"), "{stderr}");
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys: Vec<(&str, u64)> =
        rows.iter().map(|r| (r["variant"].as_str().unwrap(), r["seq"].as_u64().unwrap())).collect();
    assert_eq!(keys, [("dense", 8), ("linear", 8), ("linear", 100000)]);
}

/// `--decode`: latent attention beside standard attention of the same width, with the cache
/// bytes per token of each.
#[test]
fn bench_attention_decode_compares_latent_and_standard_caches() {
    let args = ["bench", "attention", "--decode", "--heads", "2", "--head-dim", "8", "--seq", "16", "--steps", "2"];
    let out = tcat(&args);
    assert!(out.status.success(), "tcat failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("cache B/token") && table.contains("latent 32 + rotary key 4"), "{table}");
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = tcat(&json_args);
    assert!(out.status.success(), "tcat failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let bytes: Vec<(&str, u64)> =
        rows.iter().map(|r| (r["layer"].as_str().unwrap(), r["cache_bytes_per_token"].as_u64().unwrap())).collect();
    // Keys and values of 2 heads × 8, against a latent of 32 and a rotary key of 4 (f32).
    assert_eq!(bytes, [("mha", 2 * 2 * 8 * 4), ("mla", (32 + 4) * 4)]);
    assert!(rows.iter().all(|r| r["tokens_per_second"].as_f64().unwrap() > 0.0));
}
