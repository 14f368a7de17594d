//! `tcat bench models` and `tcat generate --stats`, run as a user runs them. The bench runs with
//! `TCAT_BENCH_TINY=1` (every random-weight workload at the catalog's tiny size, same sequence
//! lengths) and a tiny GGUF fixture in place of SmolLM2, so the whole contract is checked in
//! seconds.

use std::process::{Command, Output};

use tcat_testkit::fixture;

mod common;
use common::{fails, ok, tcat};

const ALL: [&str; 15] = [
    "bert-base",
    "gpt2-decode",
    "smollm2-q4_1-decode",
    "smollm2-q4_1-prefill",
    "smollm2-f32-decode",
    "smollm2-f16-decode",
    "smollm2-bf16-decode",
    "t5-base-generate",
    "moe-decode",
    "moe-dense-decode",
    "vit-base",
    "qwen3-decode",
    "gemma3-decode",
    "deepseek-v2-decode",
    "modernbert-base",
];

fn gguf() -> String {
    let dir = fixture("llama31-gguf");
    dir.join("model.gguf").to_str().unwrap().to_string()
}

/// `tcat bench models ARGS` with tiny workloads and without `TCAT_SMOLLM2` from the caller.
fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcat"))
        .args(["bench", "models"])
        .args(args)
        .env("TCAT_BENCH_TINY", "1")
        .env_remove("TCAT_SMOLLM2")
        .env_remove("RAYON_NUM_THREADS")
        .output()
        .expect("tcat runs")
}

fn json_lines(out: &Output) -> Vec<serde_json::Map<String, serde_json::Value>> {
    assert!(out.status.success(), "tcat bench models failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("not a JSON object: {line} ({other:?})"),
        })
        .collect()
}

#[test]
fn every_workload_prints_one_json_line_with_the_contract_fields() {
    let g = gguf();
    let out = bench(&["--smollm2", &g, "--repeats", "1", "--threads", "1", "--json"]);
    let lines = json_lines(&out);
    let names: Vec<&str> = lines.iter().map(|l| l["workload"].as_str().unwrap()).collect();
    assert_eq!(names, ALL);
    // The keys, in the documented order, on the line as printed.
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("{\"workload\": \"bert-base\", \"median_s\": "), "{first}");
    for line in &lines {
        let name = line["workload"].as_str().unwrap();
        let decode = !matches!(name, "bert-base" | "vit-base" | "modernbert-base");
        let mut keys: Vec<&str> = line.keys().map(String::as_str).collect();
        keys.sort();
        let mut want = vec!["median_s", "peak_rss_mib", "threads", "workload"];
        if decode {
            want.push("tokens_per_s");
            want.sort();
        }
        assert_eq!(keys, want, "{name}");
        let median = line["median_s"].as_f64().unwrap();
        assert!(median > 0.0 && median < 60.0, "{name}: {median}");
        assert_eq!(line["threads"].as_u64(), Some(1), "{name}");
        let peak = line["peak_rss_mib"].as_f64().unwrap();
        assert!(peak > 1.0 && peak < 4096.0, "{name}: {peak}");
        if decode {
            let rate = line["tokens_per_s"].as_f64().unwrap();
            // 64 (decode) or 128 (prefill) tokens cannot take longer than the whole run.
            let tokens = if name.ends_with("prefill") { 128.0 } else { 64.0 };
            assert!(rate >= tokens / median * 0.999, "{name}: {rate} tokens/s, whole run {median} s");
        }
    }
    // The decoding roof goes to stderr (stdout is the contract's lines): the roof once, then
    // each decoding workload's weight bytes per token, GB/s and share of the roof.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("note: memory read roof ").count(), 1, "{stderr}");
    for line in &lines {
        let name = line["workload"].as_str().unwrap();
        let streams = name.ends_with("-decode");
        let note = stderr.lines().find(|l| l.starts_with(&format!("note: {name} reads ")));
        assert_eq!(note.is_some(), streams, "{name}: {stderr}");
        if let Some(note) = note {
            // "... reads X MB of weights per token: R GB/s, S of the roof": R = X · tokens/s.
            let number = |after: &str| -> f64 {
                let rest = &note[note.find(after).unwrap() + after.len()..];
                rest.split_whitespace().next().unwrap().trim_end_matches(',').parse().unwrap()
            };
            let (mb, rate) = (number(" reads "), number("per token: "));
            let want = mb * 1e6 * line["tokens_per_s"].as_f64().unwrap() / 1e9;
            assert!((rate - want).abs() <= 0.002 + 0.01 * want, "{note}: {want}");
        }
    }
}

#[test]
fn threads_and_defaults() {
    // No GGUF: the smollm2 workloads are skipped with a note, the others run.
    let out = bench(&["--workloads", "gpt2-decode", "--repeats", "2", "--threads", "2", "--json"]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["threads"].as_u64(), Some(2));
    let out = bench(&["--repeats", "1", "--json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipping the smollm2-* workloads"));
    let names: Vec<String> = json_lines(&out).iter().map(|l| l["workload"].as_str().unwrap().to_string()).collect();
    let want: Vec<&str> = ALL.iter().copied().filter(|w| !w.starts_with("smollm2")).collect();
    assert_eq!(names, want);
    // The table: a header and one row per workload.
    let out = bench(&["--workloads", "bert-base,moe-dense-decode", "--repeats", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[1].starts_with("workload") && rows[1].contains("tokens/s"), "{table}");
    assert!(rows[1].contains("weights GB/s") && rows[1].contains("× roof"), "{table}");
    assert!(rows[2].starts_with("bert-base") && rows[3].starts_with("moe-dense-decode"), "{table}");
    // The encoder streams no weights per token; the decoder's share of the roof is a number.
    let cells = |row: &str| row.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let (bert, moe) = (cells(rows[2]), cells(rows[3]));
    assert_eq!(bert[bert.len() - 4..bert.len() - 2], ["-", "-"], "{table}");
    assert!(moe[moe.len() - 3].parse::<f64>().unwrap() > 0.0, "{table}");
    assert!(table.contains("GB/s)"), "{table}");
}

#[test]
fn bad_bench_arguments_are_clear_errors() {
    let g = gguf();
    let cases: [(&[&str], &str); 6] = [
        (&["--workloads", "gpt2-decode,bert-large"], "unknown workload `bert-large`"),
        (&["--workloads", ","], "no workload"),
        (&["--workloads", "smollm2-q4_1-decode"], "need the SmolLM2 GGUF"),
        (&["--smollm2", "/nonexistent/smollm2.gguf"], "no such file"),
        (&["--threads", "0"], "--threads must be at least 1"),
        (&["--repeats", "0", "--smollm2", &g], "--repeats must be at least 1"),
    ];
    for (args, want) in cases {
        let out = bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let stderr = fails(&["bench", "models", "--threads", "-1"]);
    assert!(stderr.starts_with("error:"), "{stderr}");
}

/// The three stats lines; returns (prompt tokens, generated tokens after the first step).
fn stats(stderr: &str) -> (usize, usize) {
    let line = |prefix: &str| {
        stderr.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stderr}"))
    };
    let load = line("load time: ");
    assert!(load.ends_with(" s"), "{load}");
    let count = |l: &str| l.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap();
    let prompt = line("prompt: ");
    let generation = line("generation: ");
    for l in [prompt, generation] {
        assert!(l.contains(" tokens in ") && l.contains("tokens/s"), "{l}");
    }
    (count(prompt), count(generation))
}

#[test]
fn generate_stats_go_to_stderr_and_leave_stdout_alone() {
    let model = fixture("gpt2");
    let m = model.to_str().unwrap();
    let base: &[&str] = &["generate", "--model", m, "--prompt-ids", "5,6,7", "--max-new-tokens", "6"];
    for extra in [&["--json"][..], &[][..]] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let plain = ok(&args);
        let with: Vec<&str> = args.iter().copied().chain(["--stats"]).collect();
        let out = tcat(&with);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), plain, "{with:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let (prompt, after_first) = stats(&stderr);
        assert_eq!(prompt, 3, "{stderr}");
        assert!(after_first < 6, "{stderr}");
    }
    // Without --stats nothing is said about timings.
    let out = tcat(base);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("load time"));
    // A streamed text prompt.
    let args = ["generate", "--model", m, "--prompt", "the cat", "--max-new-tokens", "4"];
    let plain = ok(&args);
    let out = tcat(&[&args[..], &["--stats"]].concat());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), plain);
    stats(&String::from_utf8(out.stderr).unwrap());
    // An encoder-decoder, and beam search (timed as a whole).
    let t5 = fixture("t5");
    let t5 = t5.to_str().unwrap();
    let args = ["generate", "--model", t5, "--prompt-ids", "5,6,7,1", "--max-new-tokens", "5", "--json"];
    let plain = ok(&args);
    let out = tcat(&[&args[..], &["--stats"]].concat());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), plain);
    assert_eq!(stats(&String::from_utf8(out.stderr).unwrap()).0, 4);
    let args = ["generate", "--model", m, "--prompt-ids", "5,6,7", "--max-new-tokens", "4", "--num-beams", "2"];
    let plain = ok(&args);
    let out = tcat(&[&args[..], &["--stats"]].concat());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), plain);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("load time: ") && stderr.contains("beam search"), "{stderr}");
}
