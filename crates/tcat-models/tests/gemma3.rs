//! Real weights from GGUF: Gemma 3 270M (google/gemma-3-270m, Q4_K_M) against `transformers`,
//! which dequantizes the same file to f32 and undoes llama.cpp's `1 + w` norm gains
//! (tests/fixtures/gemma3-270m/make_expected.py). The file is fetched by scripts/fetch_gemma3.sh;
//! the tests fail (not skip) when it is missing.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use common::{device, fixture};
use tcat_models::gguf::{GgufFile, tokenizer};
use tcat_models::{Batch, DecoderModel, GenerationConfig, generate};

/// The largest |tcat − transformers| allowed on the chat prompt's f32 logits (see
/// `gemma3_dequantized_matches_transformers`).
const D32_CHAT: f32 = 2.5e-4;
/// A greedy step transformers decides by at least this logit margin must not flip in the
/// quantized model.
const MARGIN: f32 = 0.1;
/// The fewest decided greedy steps a fixture continuation must have for the quantized check.
const DECIDED: usize = 8;

fn gguf_path() -> PathBuf {
    tcat_testkit::cached_file("TCAT_GEMMA3", "gemma3/gemma-3-270m-q4_k_m.gguf", "fetch_gemma3.sh")
}

#[derive(serde::Deserialize)]
struct TokenizerCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Fingerprint {
    vocab: usize,
    merges: usize,
    merges_fnv1a64: u64,
    merges_sample: Vec<(usize, (String, String))>,
    added: usize,
    added_special: usize,
    added_fnv1a64: u64,
}

#[derive(serde::Deserialize)]
struct Logits {
    logits_prefix8: Vec<Vec<f32>>,
    logits_last_top64: Vec<(u32, f32)>,
    logits_last_spread: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct Expected {
    prompt: String,
    prompt_ids: Vec<u32>,
    prompt_logits: Logits,
    prompt_logits_f64: Logits,
    prompt_f32_vs_f64: f32,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    greedy_margins: Vec<f32>,
    chat_text: String,
    chat_ids: Vec<u32>,
    chat_logits: Logits,
    chat_logits_f64: Logits,
    chat_f32_vs_f64: f32,
    chat_greedy_ids: Vec<u32>,
    chat_greedy_text: String,
    chat_greedy_margins: Vec<f32>,
    spread_ids: Vec<u32>,
    tokenizer_fingerprint: Fingerprint,
    tokenizer_cases: Vec<TokenizerCase>,
}

fn expected() -> Expected {
    serde_json::from_str(&std::fs::read_to_string(fixture("gemma3-270m/expected.json")).unwrap()).unwrap()
}

/// FNV-1a, 64 bits (make_expected.py's `fnv1a64`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn gemma3_tokenizer_matches_transformers() {
    let path = gguf_path();
    let exp = expected();
    let tok = tokenizer(&path).unwrap();
    // The whole tokenizer: merges recovered from the vocabulary in transformers' order, and the
    // same added tokens.
    let fp = &exp.tokenizer_fingerprint;
    assert_eq!(tok.get_vocab_size(false), fp.vocab);
    let model = serde_json::to_value(tok.get_model()).unwrap();
    let merges: Vec<(String, String)> = serde_json::from_value(model["merges"].clone()).unwrap();
    assert_eq!(merges.len(), fp.merges);
    for (rank, pair) in &fp.merges_sample {
        assert_eq!(&merges[*rank], pair, "merge {rank}");
    }
    let text: String = merges.iter().map(|(a, b)| format!("{a}\x1f{b}\x1e")).collect();
    assert_eq!(fnv1a64(text.as_bytes()), fp.merges_fnv1a64, "merges differ from transformers'");
    let mut added: Vec<_> = tok.get_added_tokens_decoder().into_iter().collect();
    added.sort_by_key(|(id, _)| *id);
    assert_eq!(added.len(), fp.added);
    assert_eq!(added.iter().filter(|(_, t)| t.special).count(), fp.added_special);
    assert!(added.iter().all(|(_, t)| !t.normalized && !t.lstrip && !t.rstrip && !t.single_word));
    let text: String =
        added.iter().map(|(id, t)| format!("{id}\x1f{}\x1f{}\x1e", t.content, u8::from(t.special))).collect();
    assert_eq!(fnv1a64(text.as_bytes()), fp.added_fnv1a64, "added tokens differ from transformers'");

    for case in &exp.tokenizer_cases {
        let ids = tok.encode(case.text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ids, case.ids, "{:?}", case.text);
    }
    // `<bos>` in front of a plain prompt; the chat text writes its own.
    assert_eq!(tok.encode(exp.prompt.as_str(), true).unwrap().get_ids(), exp.prompt_ids.as_slice());
    assert_eq!(tok.encode(exp.chat_text.as_str(), false).unwrap().get_ids(), exp.chat_ids.as_slice());
    // Decoding: `▁` back to spaces, byte tokens to text.
    let decode = |ids: &[u32]| tok.decode(ids, false).unwrap();
    assert_eq!(decode(&exp.greedy_ids[exp.prompt_ids.len()..]), exp.greedy_text);
    assert_eq!(decode(&exp.chat_greedy_ids[exp.chat_ids.len()..]), exp.chat_greedy_text);
}

/// The logits of `ids` (one row, f32 on the host).
fn logits(model: &DecoderModel, ids: &[u32]) -> Tensor {
    let batch = Batch::right_padded(&[ids.to_vec()], None, 0, &device()).unwrap();
    let logits = model.logits(&batch).unwrap().squeeze(0).unwrap().to_dtype(DType::F32).unwrap();
    logits.to_device(&candle_core::Device::Cpu).unwrap()
}

/// The largest |tcat − reference| over the recorded logits: the first eight of every position,
/// and the top 64 and a spread of ids over the whole vocabulary at the last one.
fn worst_difference(logits: &Tensor, want: &Logits, spread: &[u32]) -> f32 {
    let prefix: Vec<Vec<f32>> = logits.narrow(1, 0, 8).unwrap().to_vec2().unwrap();
    assert_eq!(prefix.len(), want.logits_prefix8.len());
    let mut worst = 0f32;
    for (got, want) in prefix.iter().zip(&want.logits_prefix8) {
        for (g, w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs());
        }
    }
    let last: Vec<f32> = logits.get(prefix.len() - 1).unwrap().to_vec1().unwrap();
    for &(id, w) in &want.logits_last_top64 {
        worst = worst.max((last[id as usize] - w).abs());
    }
    assert_eq!(spread.len(), want.logits_last_spread.len());
    for (&id, &w) in spread.iter().zip(&want.logits_last_spread) {
        worst = worst.max((last[id as usize] - w).abs());
    }
    worst
}

fn greedy(model: &DecoderModel, prompt: &[u32], new_tokens: usize) -> Vec<u32> {
    let config = GenerationConfig { max_new_tokens: new_tokens, stop_tokens: Some(vec![]), ..Default::default() };
    generate(model, &[prompt.to_vec()], &config, |_, _| {}).unwrap().remove(0)
}

#[test]
fn gemma3_dequantized_matches_transformers() {
    let exp = expected();
    let model = GgufFile::open(&gguf_path()).unwrap().load(&device(), Some(DType::F32)).unwrap();
    // Against transformers' f32 logits and against the same model in float64: Gemma's residual
    // stream is wide (norm gains up to ~30, logits up to |97| on the chat prompt), so f32
    // rounding alone moves transformers' own logits by `*_f32_vs_f64` (1.5e-5 plain, 1.0e-4
    // chat). tcat's f32 logits must be about as close to the float64 ones (within three times
    // that, at least 1e-5; measured 3.2e-5 and 1.1e-4), and within 1e-4 (plain) and D32_CHAT
    // (chat; measured 2.7e-5 and 1.8e-4) of transformers' f32 ones: two f32 runs summing in
    // different orders, each about 1e-4 from the exact logits on the chat prompt.
    for (name, ids, want32, want64, noise) in [
        ("plain", &exp.prompt_ids, &exp.prompt_logits, &exp.prompt_logits_f64, exp.prompt_f32_vs_f64),
        ("chat", &exp.chat_ids, &exp.chat_logits, &exp.chat_logits_f64, exp.chat_f32_vs_f64),
    ] {
        let logits = logits(&model, ids);
        let (d32, d64) =
            (worst_difference(&logits, want32, &exp.spread_ids), worst_difference(&logits, want64, &exp.spread_ids));
        eprintln!(
            "Gemma 3 270M f32 logits, {name} prompt: max abs difference {d32:.2e} from transformers' f32, {d64:.2e} \
             from float64 (transformers' f32 from float64: {noise:.2e})"
        );
        assert!(d64 <= (3.0 * noise).max(1e-5), "{name}: {d64:e} from float64, transformers' f32 is {noise:e} away");
        let bound = if name == "plain" { 1e-4 } else { D32_CHAT };
        assert!(d32 <= bound, "{name}: logits differ from transformers' f32 by {d32:e}");
    }
    // 24 greedy tokens after each prompt, as transformers' `generate` (no EOS stop) picks them,
    // near-ties included (its plain continuation has steps won by 0.012).
    assert_eq!(greedy(&model, &exp.prompt_ids, exp.greedy_ids.len() - exp.prompt_ids.len()), exp.greedy_ids);
    assert_eq!(greedy(&model, &exp.chat_ids, exp.chat_greedy_ids.len() - exp.chat_ids.len()), exp.chat_greedy_ids);
}

#[test]
fn gemma3_quantized_stays_close_to_transformers() {
    // The Q4_K / Q5_0 / Q6_K / Q8_0 projections kept as blocks: the logits move a little, the
    // next token and the greedy continuations must not.
    let exp = expected();
    let model = GgufFile::open(&gguf_path()).unwrap().load(&device(), None).unwrap();
    for (ids, want) in [(&exp.prompt_ids, &exp.prompt_logits), (&exp.chat_ids, &exp.chat_logits)] {
        let batch = Batch::right_padded(std::slice::from_ref(ids), None, 0, &device()).unwrap();
        let logits = model.logits(&batch).unwrap().squeeze(0).unwrap();
        let last = logits.get(ids.len() - 1).unwrap();
        assert_eq!(last.argmax(0).unwrap().to_scalar::<u32>().unwrap(), want.logits_last_top64[0].0, "next token");
        let last: Vec<f32> = last.to_vec1().unwrap();
        let got: Vec<f32> = want.logits_last_top64.iter().map(|&(i, _)| last[i as usize]).collect();
        let reference: Vec<f32> = want.logits_last_top64.iter().map(|&(_, v)| v).collect();
        let (got, reference) = (
            Tensor::new(got, &candle_core::Device::Cpu).unwrap(),
            Tensor::new(reference, &candle_core::Device::Cpu).unwrap(),
        );
        let norm = |t: &Tensor| -> f32 { t.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar().unwrap() };
        let rel = norm(&(&got - &reference).unwrap()) / norm(&reference);
        eprintln!("Gemma 3 270M quantized top-64 logits: {rel:.2e} relative to transformers' f32");
        assert!(rel < 0.05, "quantized top-64 logits off by {rel} relative");
    }
    // Greedy decoding multiplies 8-bit activations with the blocks (candle's k-quant kernels):
    // the continuation is transformers' f32 one up to the first step where transformers' own
    // choice wins by less than MARGIN (a near-tie the quantized logits may flip), at least
    // DECIDED tokens; the first 12 of those are run.
    for (name, prompt, want, margins) in [
        ("plain", &exp.prompt_ids, &exp.greedy_ids, &exp.greedy_margins),
        ("chat", &exp.chat_ids, &exp.chat_greedy_ids, &exp.chat_greedy_margins),
    ] {
        let decided = margins.iter().position(|&m| m < MARGIN).unwrap_or(margins.len());
        assert!(decided >= DECIDED, "{name}: the fixture's continuation is decided for {decided} tokens only");
        let run = decided.min(12);
        let got = greedy(&model, prompt, run);
        let agree = got.iter().zip(want.iter()).take_while(|(a, b)| a == b).count() - prompt.len();
        eprintln!(
            "Gemma 3 270M quantized greedy, {name} prompt: {agree} of {run} tokens as transformers' ({decided} decided)"
        );
        assert_eq!(got[..], want[..prompt.len() + run], "{name}: quantized greedy continuation");
    }
}
