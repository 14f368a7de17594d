//! Real weights from GGUF: SmolLM2-135M-Instruct (Q4_1) against `transformers`, which
//! dequantizes the same file to f32 (tests/fixtures/smollm2/make_expected.py). The file is
//! fetched by scripts/fetch_smollm2.sh; the test fails (not skips) when it is missing.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{device, fixture, host};
use tcat_models::gguf::{GgufFile, chat_template, tokenizer};
use tcat_models::{Batch, ChatMessage, GenerationConfig, generate};

fn gguf_path() -> PathBuf {
    tcat_testkit::cached_file("TCAT_SMOLLM2", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "fetch_smollm2.sh")
}

#[derive(serde::Deserialize)]
struct TokenizerCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Expected {
    prompt: String,
    prompt_ids: Vec<u32>,
    logits_prefix16: Vec<Vec<f32>>,
    logits_last_top100: Vec<(u32, f32)>,
    greedy_ids: Vec<u32>,
    chat_text: String,
    chat_ids: Vec<u32>,
    chat_greedy_ids: Vec<u32>,
    tokenizer_cases: Vec<TokenizerCase>,
}

fn expected() -> Expected {
    serde_json::from_str(&std::fs::read_to_string(fixture("smollm2/expected.json")).unwrap()).unwrap()
}

#[test]
fn smollm2_tokenizer_and_chat_template_match_transformers() {
    let path = gguf_path();
    let exp = expected();
    let tok = tokenizer(&path).unwrap();
    for case in &exp.tokenizer_cases {
        let ids = tok.encode(case.text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ids, case.ids, "{:?}", case.text);
    }
    assert_eq!(tok.encode(exp.prompt.as_str(), true).unwrap().get_ids(), exp.prompt_ids.as_slice());
    let template = chat_template(&path).unwrap().expect("SmolLM2 ships a chat template");
    let text = template.render(&[ChatMessage::user("What is 2+2?")], true).unwrap();
    assert_eq!(text, exp.chat_text);
    assert_eq!(tok.encode(text.as_str(), false).unwrap().get_ids(), exp.chat_ids.as_slice());
}

#[test]
fn smollm2_dequantized_matches_transformers() {
    let exp = expected();
    let model = GgufFile::open(&gguf_path()).unwrap().load_llama(&device(), Some(DType::F32)).unwrap();
    let batch = Batch::right_padded(std::slice::from_ref(&exp.prompt_ids), None, 0, &device()).unwrap();
    let logits = model.logits(&batch).unwrap().squeeze(0).unwrap();
    let prefix: Vec<Vec<f32>> = logits.narrow(1, 0, 16).unwrap().to_vec2().unwrap();
    let mut worst = 0f32;
    for (got, want) in prefix.iter().zip(&exp.logits_prefix16) {
        for (g, w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs());
        }
    }
    let last = logits.get(logits.dim(0).unwrap() - 1).unwrap();
    for &(id, want) in &exp.logits_last_top100 {
        let got = last.get(id as usize).unwrap().to_scalar::<f32>().unwrap();
        worst = worst.max((got - want).abs());
    }
    eprintln!("SmolLM2 f32 logits: max abs difference {worst:e}");
    assert!(worst <= 1e-4, "logits differ by {worst}");

    let greedy = |prompt: &[u32], want: &[u32]| {
        let config = GenerationConfig {
            max_new_tokens: want.len() - prompt.len(),
            stop_tokens: Some(vec![]),
            ..Default::default()
        };
        let got = generate(&model, &[prompt.to_vec()], &config, |_, _| {}).unwrap();
        assert_eq!(got[0], want);
    };
    greedy(&exp.prompt_ids, &exp.greedy_ids);
    greedy(&exp.chat_ids, &exp.chat_greedy_ids);
}

#[test]
fn smollm2_quantized_stays_close_to_the_dequantized_model() {
    // Q4_1 weights times Q8_1-quantized activations: the logits move a little, the answer
    // must not.
    let exp = expected();
    let path = gguf_path();
    let model = GgufFile::open(&path).unwrap().load_llama(&device(), None).unwrap();
    let batch = Batch::right_padded(std::slice::from_ref(&exp.prompt_ids), None, 0, &device()).unwrap();
    let logits = model.logits(&batch).unwrap().squeeze(0).unwrap();
    let last = logits.get(logits.dim(0).unwrap() - 1).unwrap();
    let top_want = exp.logits_last_top100[0].0;
    let top_got = last.argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(top_got, top_want, "quantized model's next token");
    let want: Vec<f32> = exp.logits_last_top100.iter().map(|&(_, v)| v).collect();
    let got: Vec<f32> =
        exp.logits_last_top100.iter().map(|&(i, _)| last.get(i as usize).unwrap().to_scalar().unwrap()).collect();
    let (want, got) = (Tensor::new(want, &Device::Cpu).unwrap(), Tensor::new(got, &Device::Cpu).unwrap());
    let rel = ((&got - &want).unwrap().sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap())
        / want.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
    assert!(rel < 0.05, "quantized top-100 logits off by {rel} relative");
    // Decoding runs the one-row path (8-bit inputs to the quantized projections): chat replies
    // start as transformers' f32 reply does, and as the dequantized model's (which matches
    // transformers). The second prompt is the demo's, where a Q8_0 LM head with 8-bit inputs
    // answered "L'Étoile, la Marseillaise, …" instead of "The capital of France is Paris."
    let config = GenerationConfig { max_new_tokens: 8, stop_tokens: Some(vec![]), ..Default::default() };
    let reply = |model: &tcat_models::DecoderModel, ids: &[u32]| {
        generate(model, &[ids.to_vec()], &config, |_, _| {}).unwrap().remove(0)
    };
    let n = exp.chat_ids.len() + 8;
    assert_eq!(reply(&model, &exp.chat_ids)[..n], exp.chat_greedy_ids[..n], "quantized chat reply");
    let template = chat_template(&path).unwrap().expect("SmolLM2 ships a chat template");
    let text = template.render(&[ChatMessage::user("What is the capital of France?")], true).unwrap();
    let ids = tokenizer(&path).unwrap().encode(text.as_str(), false).unwrap().get_ids().to_vec();
    let dense = GgufFile::open(&path).unwrap().load_llama(&device(), Some(DType::F32)).unwrap();
    assert_eq!(reply(&model, &ids), reply(&dense, &ids), "quantized and dequantized replies to the demo's question");
}

#[test]
fn smollm2_f16_stays_close_to_f32() {
    // The same file dequantized to f16 instead of f32: ‖f16 − f32‖ / ‖f32‖ over the logits of
    // every prompt position within 1e-2 (DESIGN.md's half-precision bar), and the same next token.
    let exp = expected();
    let path = gguf_path();
    // The logits of the prompt (f32, on the host) and the one greedy token `generate` picks.
    let run = |dtype| -> (Tensor, u32) {
        let model = GgufFile::open(&path).unwrap().load_llama(&device(), Some(dtype)).unwrap();
        let batch = Batch::right_padded(std::slice::from_ref(&exp.prompt_ids), None, 0, &device()).unwrap();
        let logits = model.logits(&batch).unwrap();
        assert_eq!(logits.dtype(), dtype);
        let config = GenerationConfig { max_new_tokens: 1, stop_tokens: Some(vec![]), ..Default::default() };
        let ids = generate(&model, std::slice::from_ref(&exp.prompt_ids), &config, |_, _| {}).unwrap();
        (host(&logits).to_dtype(DType::F32).unwrap().squeeze(0).unwrap(), ids[0][exp.prompt_ids.len()])
    };
    let ((full, full_token), (half, half_token)) = (run(DType::F32), run(DType::F16));
    assert_eq!(half.dims(), full.dims());
    let norm = |t: &Tensor| -> f32 { t.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar().unwrap() };
    let rel = norm(&(&half - &full).unwrap()) / norm(&full);
    eprintln!("SmolLM2 f16 logits: relative error {rel:.2e} against f32");
    assert!(rel <= 1e-2, "f16 logits off by {rel:.3e} relative");
    let next = |t: &Tensor| t.get(t.dim(0).unwrap() - 1).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(next(&full), exp.logits_last_top100[0].0, "f32 next token");
    assert_eq!(next(&half), next(&full), "f16 next token");
    assert_eq!((full_token, half_token), (next(&full), next(&full)), "greedy generate in f32 and f16");
}
