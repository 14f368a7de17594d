//! `tcat forward --langs`: XLM's language id per token, one `--langs` per `--ids` row (issue 13's
//! CLI contract), on the xlm fixture saved by transformers.

use candle_core::Device;
use tcat_testkit::{expected, fixture, masked_max_diff};

mod common;
use common::{fails, id_args, ok, temp_out};

fn xlm_args(out: &str, langs: Option<Vec<String>>) -> Vec<String> {
    let exp = expected("xlm");
    let mask = &exp["attention_mask"];
    let mut args = vec!["forward".to_string(), "--model".into(), fixture("xlm").to_str().unwrap().into()];
    for row in id_args(&exp["input_ids"], mask) {
        args.extend(["--ids".into(), row]);
    }
    for row in langs.unwrap_or_else(|| id_args(&exp["langs"], mask)) {
        args.extend(["--langs".into(), row]);
    }
    args.extend(["--out".into(), out.into()]);
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn forward_with_langs_writes_the_reference_hidden_states() {
    let exp = expected("xlm");
    let out = temp_out("xlm-langs");
    ok(&strs(&xlm_args(out.to_str().unwrap(), None)));
    let written = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let d = masked_max_diff(&written["hidden_states"], &exp["hidden_states"], &exp["attention_mask"]);
    assert!(d <= 1e-4, "xlm hidden_states through --langs differ by {d}");
    std::fs::remove_file(out).ok();
}

#[test]
fn langs_that_do_not_fit_the_rows_are_clear_errors() {
    let out = temp_out("xlm-langs-bad");
    let o = out.to_str().unwrap();
    // The fixture's rows have 7, 4 and 1 tokens.
    let cases: [(Vec<String>, &str); 3] = [
        (vec!["0,0,0,0,0,0,0".into()], "--langs: given 1 times for 3 --ids rows"),
        (vec!["0,0,0,0,0,0,0".into(), "0,1".into(), "0".into()], "--langs row 2: 2 language ids for 4 --ids"),
        (
            vec!["0,0,0,0,0,0,0".into(), "0,1,1,2".into(), "0".into()],
            "language id 2 is outside the model's 2 languages",
        ),
    ];
    for (langs, message) in cases {
        let err = fails(&strs(&xlm_args(o, Some(langs))));
        assert!(err.contains(message), "expected `{message}` in: {err}");
    }
    let bert = fixture("bert");
    let err = fails(&["forward", "--model", bert.to_str().unwrap(), "--ids", "2,3", "--langs", "0,0", "--out", o]);
    assert!(err.contains("--langs") && err.contains("no language embeddings"), "{err}");
    assert!(!out.exists(), "a failed forward wrote {o}");
}
