//! `tcat generate --num-beams`: the ids transformers' `generate(num_beams=K)` returns for the
//! gpt2 fixture's cases (`tests/fixtures/gpt2/generation.json`), and clear errors for settings
//! that do not go together.

use serde_json::Value;
use tcat_testkit::fixture;

mod common;
use common::{fails, ok};

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

/// Runs every case of the gpt2 fixture that the flags can express (all but
/// `early_stopping="never"`, which has no flag) through `tcat generate --json`, and compares the
/// rows, padded as transformers pads them, with its ids.
#[test]
fn generate_with_beams_matches_transformers() {
    let model = fixture("gpt2");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(model.join("generation.json")).unwrap()).unwrap();
    let cases = json.get("cases").unwrap_or(&json).as_array().unwrap();
    // gpt2's config has no pad id: transformers pads with the EOS, as tcat does.
    let config: Value = serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let pad = config["eos_token_id"].as_u64().unwrap() as u32;
    let (mut beams, mut greedy) = (0, 0);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let early = match &case["early_stopping"] {
            Value::Bool(b) => *b,
            _ => continue,
        };
        let prompts: Vec<Vec<u32>> = case["prompts"].as_array().unwrap().iter().map(ids_of).collect();
        let want: Vec<Vec<u32>> = case["ids"].as_array().unwrap().iter().map(ids_of).collect();
        let num_beams = case["num_beams"].as_u64().unwrap();
        let mut args = vec!["generate".to_string(), "--model".into(), model.to_str().unwrap().into()];
        for p in &prompts {
            let list: Vec<String> = p.iter().map(u32::to_string).collect();
            args.extend(["--prompt-ids".into(), list.join(",")]);
        }
        args.extend(["--max-new-tokens".into(), case["max_new_tokens"].to_string(), "--json".into()]);
        args.extend(["--num-beams".into(), num_beams.to_string()]);
        if num_beams > 1 {
            args.extend(["--length-penalty".into(), case["length_penalty"].to_string()]);
            if early {
                args.push("--early-stopping".into());
            }
        }
        let ngram = case["no_repeat_ngram_size"].as_u64().unwrap_or(0);
        if ngram > 0 {
            args.extend(["--no-repeat-ngram-size".into(), ngram.to_string()]);
        }
        let stdout = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let got: Vec<Vec<u32>> = stdout
            .lines()
            .map(|l| {
                let line: Value = serde_json::from_str(l).unwrap();
                assert!(line["text"].is_string(), "{name}: the fixture has a tokenizer: {l}");
                ids_of(&line["ids"])
            })
            .collect();
        assert_eq!(got.len(), prompts.len(), "{name}: one line per prompt");
        // transformers' rows: left padding, the row, then padding to the longest output.
        let longest = prompts.iter().map(Vec::len).max().unwrap();
        let width = got.iter().zip(&prompts).map(|(g, p)| longest + g.len() - p.len()).max().unwrap();
        let padded: Vec<Vec<u32>> = got
            .iter()
            .zip(&prompts)
            .map(|(g, p)| {
                let mut row = vec![pad; longest - p.len()];
                row.extend(g);
                row.resize(width, pad);
                row
            })
            .collect();
        assert_eq!(padded, want, "{name}");
        *if num_beams > 1 { &mut beams } else { &mut greedy } += 1;
    }
    assert!(beams >= 2 && greedy >= 1, "gpt2 generation.json: {beams} beam and {greedy} greedy cases ran");
}

#[test]
fn beam_flags_that_do_not_go_together_are_refused() {
    let model = fixture("gpt2");
    let model = model.to_str().unwrap();
    let base = ["generate", "--model", model, "--prompt-ids", "5,6,7", "--max-new-tokens", "4"];
    let run = |extra: &[&str]| fails(&[&base[..], extra].concat());
    let err = run(&["--num-beams", "0"]);
    assert!(err.contains("--num-beams must be at least 1"), "{err}");
    for sampling in [&["--temperature", "0.7"][..], &["--top-k", "5"], &["--top-p", "0.9"]] {
        let err = run(&[&["--num-beams", "3"][..], sampling].concat());
        assert!(err.contains(sampling[0]) && err.contains("--num-beams 3"), "{sampling:?}: {err}");
    }
    let err = run(&["--length-penalty", "2"]);
    assert!(err.contains("--length-penalty applies to beam search"), "{err}");
    let err = run(&["--num-beams", "1", "--early-stopping"]);
    assert!(err.contains("--early-stopping applies to beam search"), "{err}");
    let err = run(&["--num-beams", "2", "--repetition-penalty", "1.3"]);
    assert!(err.contains("--repetition-penalty"), "{err}");
    let err = run(&["--num-beams", "2", "--length-penalty", "nan"]);
    assert!(err.contains("--length-penalty must be a finite number"), "{err}");
    // Greedy stays the default, and a single beam is greedy.
    let greedy = ok(&[&base[..], &["--json"]].concat());
    assert_eq!(ok(&[&base[..], &["--json", "--num-beams", "1"]].concat()), greedy);
}
