//! Beam search: against an exhaustive search on a synthetic model, against greedy decoding for
//! one beam, and against Hugging Face transformers' `generate` on the decoder fixtures
//! (`tests/fixtures/<family>/generation.json`, written by `python -m tcat_fixtures`;
//! `TCAT_GENERATION_CASES=DIR` runs `DIR/<family>/generation.json` instead, for larger suites
//! in the same format).

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use serde_json::Value;
use tcat_models::generation::{
    BeamSettings, EarlyStopping, SearchLimits, StepDecoder, beam_search, generate_beam, no_repeat_ngram_bans,
};
use tcat_models::{GenerationConfig, Model, ModelSource, generate};

/// Vocabulary of the synthetic model; token 0 is EOS.
const VOCAB: usize = 3;

/// Logits of the next token after `seq` (prefix + generated): a fixed pseudo-random table keyed
/// by the whole sequence, so that every prefix has its own distribution.
fn table(seq: &[u32], seed: u64) -> Vec<f32> {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for &t in seq {
        h = (h ^ t as u64).wrapping_mul(0x100_0000_01b3).rotate_left(17);
    }
    (0..VOCAB)
        .map(|v| {
            let x = (h ^ (v as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 3.0
        })
        .collect()
}

/// A [`StepDecoder`] over [`table`]: it tracks each row's sequence as the search feeds and
/// reorders it (so it also checks that `select_rows` is called consistently with the ids fed).
struct Synthetic {
    rows: Vec<Vec<u32>>,
    seed: u64,
}

impl StepDecoder for Synthetic {
    fn step(&mut self, ids: &Tensor) -> tcat_core::Result<Tensor> {
        let ids: Vec<Vec<u32>> = ids.to_vec2()?;
        if self.rows.is_empty() {
            self.rows = ids;
        } else {
            assert_eq!(ids.len(), self.rows.len());
            for (row, new) in self.rows.iter_mut().zip(ids) {
                row.extend(new);
            }
        }
        let logits: Vec<f32> = self.rows.iter().flat_map(|r| table(r, self.seed)).collect();
        Ok(Tensor::from_vec(logits, (self.rows.len(), VOCAB), &Device::Cpu)?)
    }

    fn select_rows(&mut self, rows: &Tensor) -> tcat_core::Result<()> {
        let rows: Vec<u32> = rows.to_vec1()?;
        self.rows = rows.iter().map(|&r| self.rows[r as usize].clone()).collect();
        Ok(())
    }
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits.iter().map(|&l| l as f64 - max - sum.ln()).collect()
}

/// Every complete hypothesis after `prefix` (ending at EOS, or at `max_new` tokens) whose
/// tokens respect no-repeat `n`-gram blocking, with its length-penalised score
/// `Σ log p / generated_len ^ lp`, the best first.
fn exhaustive(prefix: &[u32], max_new: usize, lp: f64, n: usize, seed: u64) -> Vec<(f64, Vec<u32>)> {
    fn walk(seq: &mut Vec<u32>, start: usize, sum: f64, ctx: (usize, f64, usize, u64), out: &mut Vec<(f64, Vec<u32>)>) {
        let (max_new, lp, n, seed) = ctx;
        let logp = log_softmax(&table(seq, seed));
        for t in 0..VOCAB as u32 {
            // The rule written out: the n-gram this token completes must not end anywhere earlier.
            if n > 0 && seq.len() + 1 >= n {
                seq.push(t);
                let last = &seq[seq.len() - n..];
                let repeated = (n..seq.len()).any(|end| &seq[end - n..end] == last);
                seq.pop();
                if repeated {
                    continue;
                }
            }
            seq.push(t);
            let s = sum + logp[t as usize];
            let generated = seq.len() - start;
            if t == 0 || generated == max_new {
                out.push((s / (generated as f64).powf(lp), seq.clone()));
            } else {
                walk(seq, start, s, ctx, out);
            }
            seq.pop();
        }
    }
    let mut out = vec![];
    walk(&mut prefix.to_vec(), prefix.len(), 0.0, (max_new, lp, n, seed), &mut out);
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out
}

fn first_ids(prefixes: &[Vec<u32>], k: usize) -> Tensor {
    let rows: Vec<u32> = prefixes.iter().flat_map(|p| std::iter::repeat_n(p.clone(), k).flatten()).collect();
    Tensor::from_vec(rows, (prefixes.len() * k, prefixes[0].len()), &Device::Cpu).unwrap()
}

fn search(prefixes: &[Vec<u32>], settings: &BeamSettings, limits: &SearchLimits, seed: u64) -> Vec<Vec<u32>> {
    let mut decoder = Synthetic { rows: vec![], seed };
    beam_search(&mut decoder, prefixes, &first_ids(prefixes, settings.num_beams), settings, limits).unwrap()
}

#[test]
fn wide_beams_find_the_exhaustive_optimum() {
    let max_new = 3;
    // K ≥ vocab^steps: every hypothesis stays in the beam, and fewer than K can finish, so no
    // stopping rule fires early: the search is exhaustive.
    let k = VOCAB.pow(max_new as u32);
    let mut checked = 0;
    for seed in 0..40u64 {
        for (lp, early, n) in [
            (1.0, EarlyStopping::Heuristic, 0),
            (0.0, EarlyStopping::Never, 0),
            (2.0, EarlyStopping::Never, 0),
            (-1.0, EarlyStopping::OnBeamsDone, 0),
            (1.0, EarlyStopping::Heuristic, 2),
            (0.5, EarlyStopping::Never, 1),
        ] {
            let prefixes = [vec![1, 2], vec![2, 2]];
            let settings =
                BeamSettings { num_beams: k, length_penalty: lp, early_stopping: early, no_repeat_ngram_size: n };
            let got = search(&prefixes, &settings, &SearchLimits::new(max_new, vec![0], 0), seed);
            for (prefix, got) in prefixes.iter().zip(&got) {
                let all = exhaustive(prefix, max_new, lp, n, seed);
                // f32 search vs f64 reference: only compare clear winners.
                if all.len() > 1 && all[0].0 - all[1].0 < 1e-4 {
                    continue;
                }
                assert_eq!(got, &all[0].1, "seed {seed}, lp {lp}, {early:?}, n {n}: {:?}", &all[..2.min(all.len())]);
                checked += 1;
            }
        }
    }
    assert!(checked > 400, "only {checked} clear cases");
}

#[test]
fn one_beam_is_greedy() {
    for seed in 0..50u64 {
        let prefix = vec![1u32, 2, 1];
        let max_new = 8;
        // Greedy by hand: argmax until EOS or max_new.
        let mut want = prefix.clone();
        for _ in 0..max_new {
            let l = table(&want, seed);
            let t = (0..VOCAB).fold(0, |b, v| if l[v] > l[b] { v } else { b }) as u32;
            want.push(t);
            if t == 0 {
                break;
            }
        }
        let got =
            search(std::slice::from_ref(&prefix), &BeamSettings::new(1), &SearchLimits::new(max_new, vec![0], 0), seed);
        assert_eq!(got[0], want, "seed {seed}");
    }
}

#[test]
fn beam_outputs_respect_ngram_blocking_and_stops() {
    for seed in 0..30u64 {
        let prefixes = [vec![1, 1, 2, 0], vec![2, 1, 2, 1]];
        let settings = BeamSettings { no_repeat_ngram_size: 2, ..BeamSettings::new(2) };
        for row in search(&prefixes, &settings, &SearchLimits::new(6, vec![0], 0), seed) {
            let generated = row.len() - 4;
            assert!((1..=6).contains(&generated), "{row:?}");
            // No generated token was banned when it was chosen.
            for end in 5..=row.len() {
                let banned = no_repeat_ngram_bans(&row[..end - 1], 2);
                assert!(!banned.contains(&row[end - 1]), "{row:?}: token at {} was banned", end - 1);
            }
            // EOS only last.
            assert!(!row[4..row.len() - 1].contains(&0), "{row:?}");
        }
    }
}

#[test]
fn min_new_tokens_and_forced_tokens_shape_the_output() {
    for seed in 0..20u64 {
        let limits = SearchLimits {
            min_new_tokens: 3,
            forced_bos_token_id: Some(2),
            forced_eos_token_id: Some(vec![0]),
            ..SearchLimits::new(5, vec![0], 0)
        };
        // A one-token prefix (a decoder start): the first generated token is forced.
        let got = search(&[vec![1]], &BeamSettings::new(3), &limits, seed);
        let row = &got[0];
        assert_eq!(row[1], 2, "{row:?}");
        assert!(row.len() > 3 && !row[1..4].contains(&0), "{row:?}: EOS before 3 tokens");
        // Ends with EOS: either chosen, or forced at the last position.
        assert_eq!(*row.last().unwrap(), 0, "{row:?}");
    }
}

#[test]
fn bad_settings_are_errors() {
    let prefixes = [vec![1u32]];
    let limits = SearchLimits::new(3, vec![0], 0);
    let mut d = Synthetic { rows: vec![], seed: 0 };
    assert!(beam_search(&mut d, &prefixes, &first_ids(&prefixes, 1), &BeamSettings::new(0), &limits).is_err());
    // first_ids must hold batch × K rows.
    assert!(beam_search(&mut d, &prefixes, &first_ids(&prefixes, 1), &BeamSettings::new(2), &limits).is_err());
    let ragged = [vec![1u32], vec![1, 2]];
    let ids = Tensor::zeros((2, 2), DType::U32, &Device::Cpu).unwrap();
    assert!(beam_search(&mut d, &ragged, &ids, &BeamSettings::new(1), &limits).is_err());
    // More candidates than beams × vocab.
    let mut d = Synthetic { rows: vec![], seed: 0 };
    let limits = SearchLimits::new(3, vec![0, 1, 2], 0);
    assert!(beam_search(&mut d, &prefixes, &first_ids(&prefixes, 1), &BeamSettings::new(1), &limits).is_err());
}

// ---- transformers fixtures ----

/// The decoder fixtures with generation cases.
const FOLDERS: [&str; 4] = ["gpt2", "llama", "bloom", "opt"];

fn load(name: &str) -> Model {
    let source = ModelSource::resolve(fixture(name).to_str().unwrap()).unwrap();
    Model::load(&source, &device(), DType::F32).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    match v {
        Value::Number(n) => vec![n.as_u64().unwrap() as u32],
        v => v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect(),
    }
}

/// The fixture's generation cases (`{"cases": [...]}` or a bare list); a listed folder without
/// them fails.
fn cases(name: &str) -> Vec<Value> {
    let root = std::env::var_os("TCAT_GENERATION_CASES").map(std::path::PathBuf::from).unwrap_or_else(fixtures_dir);
    let path = root.join(name).join("generation.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases = json.get("cases").unwrap_or(&json);
    cases.as_array().unwrap_or_else(|| panic!("{}: no list of cases", path.display())).clone()
}

/// Checks tcat's unpadded `got` rows against transformers' padded `want` rows: left padding to
/// the longest prompt, then the row, then `fill` to the longest output.
fn compare_padded(what: &str, prompts: &[Vec<u32>], got: &[Vec<u32>], want: &[Vec<u32>], pad: u32, fill: u32) {
    let longest = prompts.iter().map(Vec::len).max().unwrap();
    let generated = got.iter().zip(prompts).map(|(g, p)| g.len() - p.len()).max().unwrap();
    let padded: Vec<Vec<u32>> = got
        .iter()
        .zip(prompts)
        .map(|(g, p)| {
            let mut row = vec![pad; longest - p.len()];
            row.extend(g);
            row.resize(longest + generated, fill);
            row
        })
        .collect();
    assert_eq!(padded, want, "{what}");
}

#[test]
fn generation_matches_transformers() {
    for name in FOLDERS {
        let (mut greedy, mut beams) = (0, 0);
        let model = load(name);
        let decoder = model.as_decoder().unwrap();
        for case in cases(name) {
            let label = format!("{name}/{}", case["name"].as_str().unwrap());
            let prompts: Vec<Vec<u32>> = case["prompts"].as_array().unwrap().iter().map(ids_of).collect();
            let want: Vec<Vec<u32>> = case["ids"].as_array().unwrap().iter().map(ids_of).collect();
            let max_new_tokens = case["max_new_tokens"].as_u64().unwrap() as usize;
            let num_beams = case["num_beams"].as_u64().unwrap() as usize;
            let ngram = case["no_repeat_ngram_size"].as_u64().unwrap_or(0) as usize;
            let pad = decoder.pad_token_id();
            // Left padding takes part in n-gram blocking: it must be the model's pad id.
            let longest = prompts.iter().map(Vec::len).max().unwrap();
            for (p, w) in prompts.iter().zip(&want) {
                assert!(w[..longest - p.len()].iter().all(|&t| t == pad), "{label}: left padding is not {pad}: {w:?}");
            }
            // Optional fields: generate's overrides of the model's generation config.
            let eos = case.get("eos_token_id").map(ids_of).unwrap_or_else(|| decoder.eos_token_ids().to_vec());
            let limits = SearchLimits {
                min_new_tokens: case.get("min_new_tokens").map_or(0, |v| v.as_u64().unwrap() as usize),
                forced_bos_token_id: case.get("forced_bos_token_id").map(|v| v.as_u64().unwrap() as u32),
                forced_eos_token_id: case.get("forced_eos_token_id").map(ids_of),
                ..SearchLimits::new(max_new_tokens, eos.clone(), pad)
            };
            let got = if num_beams == 1 {
                let config = GenerationConfig {
                    max_new_tokens,
                    stop_tokens: Some(eos),
                    no_repeat_ngram_size: ngram,
                    min_new_tokens: limits.min_new_tokens,
                    forced_bos_token_id: limits.forced_bos_token_id,
                    forced_eos_token_id: limits.forced_eos_token_id.clone(),
                    ..Default::default()
                };
                generate(decoder, &prompts, &config, |_, _| {}).unwrap()
            } else {
                let early_stopping = match &case["early_stopping"] {
                    Value::Bool(false) => EarlyStopping::Heuristic,
                    Value::Bool(true) => EarlyStopping::OnBeamsDone,
                    Value::String(s) if s == "never" => EarlyStopping::Never,
                    other => panic!("{label}: early_stopping {other}"),
                };
                let settings = BeamSettings {
                    num_beams,
                    length_penalty: case["length_penalty"].as_f64().unwrap(),
                    early_stopping,
                    no_repeat_ngram_size: ngram,
                };
                generate_beam(decoder, &prompts, &settings, &limits).unwrap()
            };
            // Greedy pads finished rows with the pad id; beam search with `pad or eos[0]`.
            let fill = if num_beams == 1 { pad } else { limits.fill_token_id().unwrap() };
            compare_padded(&label, &prompts, &got, &want, pad, fill);
            *if num_beams == 1 { &mut greedy } else { &mut beams } += 1;
        }
        eprintln!("{name}: {greedy} greedy and {beams} beam-search cases match transformers");
        assert!(greedy > 0 && beams > 0, "{name}: generation.json needs greedy and beam cases");
    }
}

/// Cases where transformers' three stopping rules return three different sequences, on the gpt2
/// fixture with an EOS the tiny model produces, computed by transformers 5.23:
/// `model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=…, num_beams=…,
/// length_penalty=…, early_stopping=False | True | "never", eos_token_id=eos, pad_token_id=0,
/// do_sample=False)`.
#[test]
fn early_stopping_rules_match_transformers() {
    type Case = (&'static [u32], u32, usize, f64, usize, [&'static [u32]; 3]);
    let cases: [Case; 3] = [
        (
            &[66, 75, 204, 100],
            55,
            2,
            2.0,
            11,
            [
                &[66, 75, 204, 100, 100, 100, 198, 198, 198, 55],
                &[66, 75, 204, 100, 100, 55],
                &[66, 75, 204, 100, 100, 100, 198, 198, 198, 209, 209, 209, 209, 209, 209],
            ],
        ),
        (
            &[205, 225, 191],
            136,
            2,
            2.0,
            9,
            [
                &[205, 225, 191, 22, 22, 22, 22, 136],
                &[205, 225, 191, 191, 136],
                &[205, 225, 191, 191, 182, 182, 221, 221, 221, 221, 221, 221],
            ],
        ),
        (
            &[128, 40, 223, 22],
            136,
            2,
            3.0,
            11,
            [
                &[128, 40, 223, 22, 22, 22, 22, 136],
                &[128, 40, 223, 22, 22, 136],
                &[128, 40, 223, 22, 22, 209, 209, 209, 209, 209, 209, 209, 209, 209, 209],
            ],
        ),
    ];
    let model = load("gpt2");
    let decoder = model.as_decoder().unwrap();
    for (prompt, eos, num_beams, length_penalty, max_new_tokens, want) in cases {
        let modes = [EarlyStopping::Heuristic, EarlyStopping::OnBeamsDone, EarlyStopping::Never];
        for (early_stopping, want) in modes.into_iter().zip(want) {
            let settings = BeamSettings { num_beams, length_penalty, early_stopping, no_repeat_ngram_size: 0 };
            let limits = SearchLimits::new(max_new_tokens, vec![eos], decoder.pad_token_id());
            let got = generate_beam(decoder, &[prompt.to_vec()], &settings, &limits).unwrap();
            assert_eq!(got[0], want, "{prompt:?} {early_stopping:?}");
        }
    }
}
