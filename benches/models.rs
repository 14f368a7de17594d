//! tcat against candle-transformers, side by side: the same random weights, in the same process,
//! on the CPU in f32.
//!
//! - `bert_base_forward_8x128`: BERT-base encoder forward over 8 × 128 token ids (no padding),
//!   tcat's `EncoderModel::hidden_states` against `candle_transformers::models::bert::BertModel`.
//! - `gpt2_124m_decode_64`: greedy decoding of 64 tokens after a 16-token prompt, batch 1,
//!   reported in tokens/s. candle-transformers has no GPT-2; its nearest model is GPT-BigCode
//!   (`models::bigcode`, GPT-2 plus optional multi-query attention), but its multi-head path
//!   (`multi_query: false`) does not run in 0.11.1: it reshapes the fused QKV output to
//!   `[batch, seq, hidden, 3 · head_dim]` (hidden where the head count belongs), which fails for
//!   any shape. So the group holds three variants:
//!   - `tcat`: GPT-2 124M (multi-head), loaded by `tcat::models` from GPT-2 names;
//!   - `tcat-mqa`: the same shapes with one key/value head, loaded by tcat's `gpt_bigcode`
//!     family from exactly the peer's tensors and decoded by tcat's `generate`;
//!   - `candle-transformers-mqa`: `bigcode::GPTBigCode` with `multi_query: true`.
//!
//!   `tcat-mqa` against `candle-transformers-mqa` is the like-for-like ratio; `tcat` against
//!   `tcat-mqa` is what the 11 extra key/value heads cost (≈ 10% more weights per token).
//!
//! - `t5_base_generate_64`: T5-base (relu, tied head) greedy generation of 64 tokens from a
//!   16-token encoder prompt, batch 1, reported in tokens/s: tcat's `generate_seq2seq` against
//!   `candle_transformers::models::t5::T5ForConditionalGeneration` driven as its example does
//!   (encode once, then one token per step with the self-attention KV cache). The two are not
//!   the same function: candle-transformers buckets the decoder's relative positions with the
//!   encoder's bidirectional rule (16 buckets per side, 8 exact) where transformers and tcat
//!   use the causal one (32 buckets, 16 exact), so the decoder's logits part from the step whose
//!   keys reach 9 positions back; it also scales the tied head's input by `√d_model` instead
//!   of `d_model^-0.5` (logits × `d_model`, same argmax), and recomputes the cross-attention
//!   keys and values from the encoder states at every step. `check` in `bench_t5` shows the
//!   bucket rule is the only difference in what is computed.
//! - `smollm2_135m_decode_64` / `smollm2_135m_prefill_128`: the real SmolLM2-135M-Instruct GGUF
//!   (Q4_1) when scripts/fetch_smollm2.sh has fetched it: tcat quantized and dequantized to f32
//!   beside candle-transformers' `quantized_llama` on the same file and its f32 `llama` on the
//!   same weights dequantized and renamed to the Hugging Face layout.
//!
//! - `vit_b16_forward_8x224`: ViT-B/16 class logits of 8 images of 224 × 224, tcat's
//!   `VisionModel` against `candle_transformers::models::vit::Model`.
//!
//! Before timing, each pair is checked to compute the same thing (see `check_*`).
//!
//! ```text
//! cargo bench --bench models
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::{bert, bigcode, llama, quantized_llama, t5, vit};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group};
use tcat::models::gguf::GgufFile;
use tcat::models::{
    Batch, Checkpoint, ConfigFile, DecoderModel, GenerationConfig, Model, Sampling, Seq2seqModel, generate,
    generate_seq2seq,
};

// Faulting in fresh pages for every intermediate tensor costs up to 2× with the system allocator
// on the benchmark machine; both sides allocate through this one.
#[global_allocator]
static GLOBAL: tcat_bench::huge_pages::HugePages<mimalloc::MiMalloc> =
    tcat_bench::huge_pages::HugePages::new(mimalloc::MiMalloc);

/// Standard deviation of the random weights (GPT-2's and BERT's `initializer_range`).
const INIT_STD: f32 = 0.02;

// BERT-base.
const BERT_VOCAB: usize = 30522;
const BERT_HIDDEN: usize = 768;
const BERT_LAYERS: usize = 12;
const BERT_HEADS: usize = 12;
const BERT_INTERMEDIATE: usize = 3072;
const BERT_POSITIONS: usize = 512;
const BERT_TYPES: usize = 2;
const BERT_BATCH: usize = 8;
const BERT_SEQ: usize = 128;

// GPT-2 124M.
// ViT-B/16 over a batch of 8 224-pixel images (Dosovitskiy et al. 2020, Table 1).
const VIT_HIDDEN: usize = 768;
const VIT_LAYERS: usize = 12;
const VIT_HEADS: usize = 12;
const VIT_INTERMEDIATE: usize = 3072;
const VIT_IMAGE: usize = 224;
const VIT_PATCH: usize = 16;
const VIT_LABELS: usize = 1000;
const VIT_BATCH: usize = 8;

const GPT2_VOCAB: usize = 50257;
const GPT2_POSITIONS: usize = 1024;
const GPT2_HIDDEN: usize = 768;
const GPT2_LAYERS: usize = 12;
const GPT2_HEADS: usize = 12;
const GPT2_HEAD_DIM: usize = GPT2_HIDDEN / GPT2_HEADS;
const GPT2_EPS: f64 = 1e-5;
const PROMPT_LEN: usize = 16;
const NEW_TOKENS: usize = 64;
/// Greedy tokens compared between implementations before timing.
const CHECKED_TOKENS: usize = 8;

/// SplitMix64 with Box–Muller normals: fixed seeds give the same weights and ids on every run.
struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Self { state: seed, spare: None }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * self.uniform()).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    fn token_ids(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n).map(|_| (self.next_u64() % vocab as u64) as u32).collect()
    }
}

/// A map of named random tensors, as a checkpoint would hold them.
struct Weights {
    map: HashMap<String, Tensor>,
    rng: Rng,
    device: Device,
}

impl Weights {
    fn new(seed: u64, device: &Device) -> Self {
        Self { map: HashMap::new(), rng: Rng::new(seed), device: device.clone() }
    }

    /// `mean + INIT_STD · N(0, 1)` of shape `dims`, stored under `name`.
    fn normal(&mut self, name: impl Into<String>, dims: &[usize], mean: f32) -> Result<()> {
        self.normal_std(name, dims, mean, INIT_STD)
    }

    /// `mean + std · N(0, 1)` of shape `dims`, stored under `name`.
    fn normal_std(&mut self, name: impl Into<String>, dims: &[usize], mean: f32, std: f32) -> Result<()> {
        let n = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| mean + std * self.rng.normal() as f32).collect();
        self.map.insert(name.into(), Tensor::from_vec(data, dims, &self.device)?);
        Ok(())
    }

    /// `{prefix}.weight` of shape `dims` and `{prefix}.bias` of `out` features.
    fn linear(&mut self, prefix: &str, dims: [usize; 2], out: usize) -> Result<()> {
        self.normal(format!("{prefix}.weight"), &dims, 0.0)?;
        self.normal(format!("{prefix}.bias"), &[out], 0.0)
    }

    fn layer_norm(&mut self, prefix: &str, dim: usize) -> Result<()> {
        self.normal(format!("{prefix}.weight"), &[dim], 1.0)?;
        self.normal(format!("{prefix}.bias"), &[dim], 0.0)
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

// ---------------------------------------------------------------------------------------------
// BERT-base forward
// ---------------------------------------------------------------------------------------------

/// The `config.json` both sides read (candle-transformers' `bert::Config` needs the dropout and
/// initializer fields; tcat ignores them).
fn bert_config_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "bert",
        "vocab_size": BERT_VOCAB,
        "hidden_size": BERT_HIDDEN,
        "num_hidden_layers": BERT_LAYERS,
        "num_attention_heads": BERT_HEADS,
        "intermediate_size": BERT_INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "max_position_embeddings": BERT_POSITIONS,
        "type_vocab_size": BERT_TYPES,
        "initializer_range": INIT_STD,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    })
}

/// BERT weights under Hugging Face `BertModel` names (no `bert.` prefix, no pooler, no head).
fn bert_weights(device: &Device) -> Result<HashMap<String, Tensor>> {
    let (h, i) = (BERT_HIDDEN, BERT_INTERMEDIATE);
    let mut w = Weights::new(0xbe27, device);
    w.normal("embeddings.word_embeddings.weight", &[BERT_VOCAB, h], 0.0)?;
    w.normal("embeddings.position_embeddings.weight", &[BERT_POSITIONS, h], 0.0)?;
    w.normal("embeddings.token_type_embeddings.weight", &[BERT_TYPES, h], 0.0)?;
    w.layer_norm("embeddings.LayerNorm", h)?;
    for layer in 0..BERT_LAYERS {
        let p = format!("encoder.layer.{layer}");
        for proj in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            w.linear(&format!("{p}.{proj}"), [h, h], h)?;
        }
        w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h)?;
        w.linear(&format!("{p}.intermediate.dense"), [i, h], i)?;
        w.linear(&format!("{p}.output.dense"), [h, i], h)?;
        w.layer_norm(&format!("{p}.output.LayerNorm"), h)?;
    }
    Ok(w.map)
}

fn bench_bert(c: &mut Criterion) {
    let device = Device::Cpu;
    let weights = timed("bert: random weights", || bert_weights(&device)).expect("BERT weights");
    let json = bert_config_json();

    let config = ConfigFile { path: "bench".into(), json: json.clone() };
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &device);
    let model = Model::from_checkpoint(&config, &Checkpoint::from_var_builder(vb, "random")).expect("tcat BERT");
    let tcat = model.as_encoder().expect("BERT is an encoder");

    let peer_config: bert::Config = serde_json::from_value(json).expect("candle-transformers BERT config");
    let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
    let peer = bert::BertModel::load(vb, &peer_config).expect("candle-transformers BERT");

    let mut rng = Rng::new(0x1d5);
    let rows: Vec<Vec<u32>> = (0..BERT_BATCH).map(|_| rng.token_ids(BERT_SEQ, BERT_VOCAB)).collect();
    let batch = Batch::right_padded(&rows, None, 0, &device).expect("batch");
    let input_ids = batch.input_ids().clone();
    let token_type_ids = input_ids.zeros_like().expect("token types");

    // Same computation: the last hidden states agree.
    let ours = tcat.hidden_states(&batch).expect("tcat forward");
    let theirs = peer.forward(&input_ids, &token_type_ids, None).expect("candle-transformers forward");
    let diff = max_abs_diff(&ours, &theirs).expect("diff");
    eprintln!("check bert: max |tcat - candle-transformers| over hidden states {:?} = {diff:.2e}", ours.dims());
    assert!(diff < 1e-3, "BERT outputs differ by {diff}");

    let mut group = c.benchmark_group("bert_base_forward_8x128");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(25));
    group.bench_function("tcat", |b| b.iter(|| tcat.hidden_states(&batch).unwrap()));
    group
        .bench_function("candle-transformers", |b| b.iter(|| peer.forward(&input_ids, &token_type_ids, None).unwrap()));
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// GPT-2 124M greedy decoding
// ---------------------------------------------------------------------------------------------

fn gpt2_config_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "gpt2",
        "vocab_size": GPT2_VOCAB,
        "n_positions": GPT2_POSITIONS,
        "n_embd": GPT2_HIDDEN,
        "n_layer": GPT2_LAYERS,
        "n_head": GPT2_HEADS,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": GPT2_EPS,
    })
}

/// GPT-2 weights under Hugging Face `GPT2Model` names, projections in `Conv1D` layout
/// (`[in, out]`), LM head tied to `wte`.
fn gpt2_weights(device: &Device) -> Result<HashMap<String, Tensor>> {
    let h = GPT2_HIDDEN;
    let mut w = Weights::new(0x6e72, device);
    w.normal("wte.weight", &[GPT2_VOCAB, h], 0.0)?;
    w.normal("wpe.weight", &[GPT2_POSITIONS, h], 0.0)?;
    for layer in 0..GPT2_LAYERS {
        let p = format!("h.{layer}");
        w.layer_norm(&format!("{p}.ln_1"), h)?;
        w.linear(&format!("{p}.attn.c_attn"), [h, 3 * h], 3 * h)?;
        w.linear(&format!("{p}.attn.c_proj"), [h, h], h)?;
        w.layer_norm(&format!("{p}.ln_2"), h)?;
        w.linear(&format!("{p}.mlp.c_fc"), [h, 4 * h], 4 * h)?;
        w.linear(&format!("{p}.mlp.c_proj"), [4 * h, h], h)?;
    }
    w.layer_norm("ln_f", h)?;
    Ok(w.map)
}

/// The GPT-BigCode multi-query checkpoint derived from the GPT-2 one: names under
/// `transformer.`, projections transposed to `nn.Linear` layout (`[out, in]`, contiguous, as a
/// checkpoint stores them), and `c_attn` keeping all query heads but only the first key and
/// value head (`[q | k₀ | v₀]`, the order GPT-BigCode splits it in).
fn bigcode_mqa_weights(gpt2: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let (h, d) = (GPT2_HIDDEN, GPT2_HEAD_DIM);
    let mut map = HashMap::new();
    for (name, t) in gpt2 {
        let t = if name.ends_with("attn.c_attn.weight") {
            Tensor::cat(&[t.narrow(1, 0, h)?, t.narrow(1, h, d)?, t.narrow(1, 2 * h, d)?], 1)?.t()?.contiguous()?
        } else if name.ends_with("attn.c_attn.bias") {
            Tensor::cat(&[t.narrow(0, 0, h)?, t.narrow(0, h, d)?, t.narrow(0, 2 * h, d)?], 0)?
        } else if name.contains(".c_") && name.ends_with(".weight") {
            t.t()?.contiguous()?
        } else {
            t.clone()
        };
        map.insert(format!("transformer.{name}"), t);
    }
    Ok(map)
}

/// GPT-2 124M shapes with multi-query attention. GPT-BigCode's MLP applies `Tensor::gelu`, the
/// tanh approximation, i.e. GPT-2's `gelu_new`: the same activation as tcat's GPT-2.
fn bigcode_mqa_config() -> bigcode::Config {
    bigcode::Config {
        vocab_size: GPT2_VOCAB,
        max_position_embeddings: GPT2_POSITIONS,
        num_hidden_layers: GPT2_LAYERS,
        hidden_size: GPT2_HIDDEN,
        layer_norm_epsilon: GPT2_EPS,
        n_inner: Some(4 * GPT2_HIDDEN),
        num_attention_heads: GPT2_HEADS,
        multi_query: true,
        use_cache: true,
    }
}

/// GPT-BigCode (multi-query) loaded by tcat's `gpt_bigcode` family from the peer's checkpoint.
fn tcat_bigcode_mqa(vb: VarBuilder<'static>) -> tcat::core::Result<Model> {
    let json = serde_json::json!({
        "model_type": "gpt_bigcode",
        "vocab_size": GPT2_VOCAB,
        "n_positions": GPT2_POSITIONS,
        "n_embd": GPT2_HIDDEN,
        "n_layer": GPT2_LAYERS,
        "n_head": GPT2_HEADS,
        "n_inner": 4 * GPT2_HIDDEN,
        "activation_function": "gelu_pytorch_tanh",
        "layer_norm_epsilon": GPT2_EPS,
        "multi_query": true,
    });
    Model::from_checkpoint(&ConfigFile { path: "bench".into(), json }, &Checkpoint::from_var_builder(vb, "random"))
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens, sampling: Sampling::Greedy, stop_tokens: Some(vec![]), ..Default::default() }
}

/// tcat's decoding: prompt followed by `n` greedy tokens.
fn tcat_decode(model: &DecoderModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut out = generate(model, &[prompt.to_vec()], &greedy(n), |_, _| {}).unwrap();
    out.pop().unwrap()
}

/// candle-transformers' decoding, as its bigcode example does it: the whole prompt first, then
/// one token per step against the model's own KV cache, argmax of the last logits through
/// `LogitsProcessor` (no temperature). Returns the prompt followed by `n` tokens.
fn bigcode_decode(model: &mut bigcode::GPTBigCode, prompt: &[u32], n: usize, device: &Device) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    let mut sampler = LogitsProcessor::new(0, None, None);
    for step in 0..n {
        let (past, context) =
            if step == 0 { (0, &tokens[..]) } else { (tokens.len() - 1, &tokens[tokens.len() - 1..]) };
        let input = Tensor::new(context, device).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&input, past).unwrap().squeeze(0).unwrap();
        tokens.push(sampler.sample(&logits).unwrap());
    }
    tokens
}

/// GPT-2 has no peer to agree with, so tcat checks itself: the cached greedy tokens are the
/// argmax of one uncached forward pass over prompt + generated tokens.
fn check_gpt2(model: &DecoderModel, prompt: &[u32], device: &Device) -> Result<()> {
    let tokens = tcat_decode(model, prompt, CHECKED_TOKENS);
    let context = &tokens[..PROMPT_LEN + CHECKED_TOKENS - 1];
    let logits = model.logits(&Batch::right_padded(&[context.to_vec()], None, 0, device)?)?;
    let uncached = logits.i((0, PROMPT_LEN - 1..))?.argmax(D::Minus1)?.to_vec1::<u32>()?;
    eprintln!("check gpt2: cached greedy {:?}, uncached argmax {uncached:?}", &tokens[PROMPT_LEN..]);
    ensure!(uncached == tokens[PROMPT_LEN..], "tcat GPT-2: cached decoding differs from the uncached forward");
    Ok(())
}

/// tcat's multi-query decoder and GPT-BigCode agree on the prompt's last logits and on the first
/// greedy tokens.
fn check_mqa(tcat: &DecoderModel, vb: &VarBuilder<'static>, prompt: &[u32], device: &Device) -> Result<()> {
    let ours = tcat.logits(&Batch::right_padded(&[prompt.to_vec()], None, 0, device)?)?.i((0, PROMPT_LEN - 1))?;
    let mut peer = bigcode::GPTBigCode::load(vb.clone(), bigcode_mqa_config())?;
    let theirs = peer.forward(&Tensor::new(prompt, device)?.unsqueeze(0)?, 0)?.squeeze(0)?;
    let diff = max_abs_diff(&ours, &theirs)?;
    let ours = tcat_decode(tcat, prompt, CHECKED_TOKENS);
    let mut peer = bigcode::GPTBigCode::load(vb.clone(), bigcode_mqa_config())?;
    let theirs = bigcode_decode(&mut peer, prompt, CHECKED_TOKENS, device);
    eprintln!(
        "check gpt2 mqa: max |tcat - candle-transformers| over prompt logits = {diff:.2e}; greedy tokens tcat {:?}, \
         candle-transformers {:?}",
        &ours[PROMPT_LEN..],
        &theirs[PROMPT_LEN..]
    );
    ensure!(diff < 1e-3, "multi-query logits differ by {diff}");
    ensure!(ours == theirs, "multi-query greedy tokens differ");
    Ok(())
}

fn bench_gpt2(c: &mut Criterion) {
    let device = Device::Cpu;
    let gpt2 = timed("gpt2: random weights", || gpt2_weights(&device)).expect("GPT-2 weights");
    let mqa = bigcode_mqa_weights(&gpt2).expect("GPT-BigCode weights");
    let prompt = Rng::new(0x9e7).token_ids(PROMPT_LEN, GPT2_VOCAB);

    let config = ConfigFile { path: "bench".into(), json: gpt2_config_json() };
    let vb = VarBuilder::from_tensors(gpt2, DType::F32, &device);
    let model = Model::from_checkpoint(&config, &Checkpoint::from_var_builder(vb, "random")).expect("tcat GPT-2");
    let tcat = model.as_decoder().expect("GPT-2 is a decoder");

    let mqa_vb = VarBuilder::from_tensors(mqa, DType::F32, &device);
    let tcat_mqa = tcat_bigcode_mqa(mqa_vb.clone()).expect("tcat GPT-BigCode");
    let tcat_mqa = tcat_mqa.as_decoder().expect("GPT-BigCode is a decoder");

    check_gpt2(tcat, &prompt, &device).expect("GPT-2 check");
    check_mqa(tcat_mqa, &mqa_vb, &prompt, &device).expect("multi-query check");

    let mut group = c.benchmark_group("gpt2_124m_decode_64");
    group
        .throughput(Throughput::Elements(NEW_TOKENS as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("tcat", |b| b.iter(|| tcat_decode(tcat, &prompt, NEW_TOKENS)));
    group.bench_function("tcat-mqa", |b| b.iter(|| tcat_decode(tcat_mqa, &prompt, NEW_TOKENS)));
    // The model owns its KV cache and has no reset, so each run loads a fresh one (untimed; the
    // tensors are shared, loading only builds the causal-mask table).
    group.bench_function("candle-transformers-mqa", |b| {
        b.iter_batched(
            || bigcode::GPTBigCode::load(mqa_vb.clone(), bigcode_mqa_config()).unwrap(),
            |mut peer| bigcode_decode(&mut peer, &prompt, NEW_TOKENS, &device),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// T5-base greedy generation (encoder-decoder)
// ---------------------------------------------------------------------------------------------

// T5-base (`t5-base`'s config.json).
const T5_VOCAB: usize = 32128;
const T5_D_MODEL: usize = 768;
const T5_D_KV: usize = 64;
const T5_D_FF: usize = 3072;
const T5_LAYERS: usize = 12;
const T5_HEADS: usize = 12;
const T5_BUCKETS: usize = 32;
const T5_MAX_DISTANCE: usize = 128;
/// Standard deviation of T5's random weights (and of its norm gains around 1).
const T5_STD: f32 = 0.05;
/// The decoder start id (T5's pad id).
const T5_START: u32 = 0;
/// Largest `max |tcat − candle-transformers| / max |logit|` over one step's logits that counts
/// as the same computation. With these weights the attention is sharp (unscaled scores of
/// standard deviation ≈ 15) and f32 rounding alone leaves ≈ 2e-4 (encoder states: ≈ 2e-4
/// absolute); the relative-bias rule, where it applies, gives ≈ 5e-3 and more.
const T5_LOGITS_TOL: f32 = 1e-3;

/// `t5-base`'s config.json as transformers writes it (candle-transformers' `t5::Config` needs
/// the dropout and initializer fields; tcat ignores them).
fn t5_config_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "t5",
        "architectures": ["T5ForConditionalGeneration"],
        "vocab_size": T5_VOCAB,
        "d_model": T5_D_MODEL,
        "d_kv": T5_D_KV,
        "d_ff": T5_D_FF,
        "num_layers": T5_LAYERS,
        "num_decoder_layers": T5_LAYERS,
        "num_heads": T5_HEADS,
        "relative_attention_num_buckets": T5_BUCKETS,
        "relative_attention_max_distance": T5_MAX_DISTANCE,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "feed_forward_proj": "relu",
        "is_encoder_decoder": true,
        "tie_word_embeddings": true,
        "use_cache": true,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": T5_START,
    })
}

/// T5 weights under Hugging Face `T5ForConditionalGeneration` names: the shared token table
/// (tied head, no `lm_head.weight`), projections in `nn.Linear` layout (`[out, in]`, no biases),
/// RMS norm gains near 1, and one relative-bias table per stack (in its first block).
fn t5_weights(device: &Device) -> Result<HashMap<String, Tensor>> {
    let (d, inner, ff) = (T5_D_MODEL, T5_HEADS * T5_D_KV, T5_D_FF);
    let mut w = Weights::new(0x75, device);
    let s = T5_STD;
    w.normal_std("shared.weight", &[T5_VOCAB, d], 0.0, s)?;
    for stack in ["encoder", "decoder"] {
        // The decoder's feed-forward is `layer.2`, after the cross-attention `layer.1`.
        let attentions: &[&str] = if stack == "encoder" {
            &["layer.0.SelfAttention"]
        } else {
            &["layer.0.SelfAttention", "layer.1.EncDecAttention"]
        };
        for layer in 0..T5_LAYERS {
            let p = format!("{stack}.block.{layer}");
            for (sub, attention) in attentions.iter().enumerate() {
                for proj in ["q", "k", "v"] {
                    w.normal_std(format!("{p}.{attention}.{proj}.weight"), &[inner, d], 0.0, s)?;
                }
                w.normal_std(format!("{p}.{attention}.o.weight"), &[d, inner], 0.0, s)?;
                w.normal_std(format!("{p}.layer.{sub}.layer_norm.weight"), &[d], 1.0, s)?;
            }
            let f = format!("{p}.layer.{}", attentions.len());
            w.normal_std(format!("{f}.DenseReluDense.wi.weight"), &[ff, d], 0.0, s)?;
            w.normal_std(format!("{f}.DenseReluDense.wo.weight"), &[d, ff], 0.0, s)?;
            w.normal_std(format!("{f}.layer_norm.weight"), &[d], 1.0, s)?;
        }
        let bias = format!("{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        w.normal_std(bias, &[T5_BUCKETS, T5_HEADS], 0.0, s)?;
        w.normal_std(format!("{stack}.final_layer_norm.weight"), &[d], 1.0, s)?;
    }
    Ok(w.map)
}

/// tcat's T5, loaded through its checkpoint path from `weights`.
fn tcat_t5(weights: &HashMap<String, Tensor>, device: &Device) -> Model {
    let config = ConfigFile { path: "bench".into(), json: t5_config_json() };
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, device);
    Model::from_checkpoint(&config, &Checkpoint::from_var_builder(vb, "random")).expect("tcat T5")
}

/// candle-transformers' T5 on `weights`.
fn peer_t5(weights: &HashMap<String, Tensor>, device: &Device) -> t5::T5ForConditionalGeneration {
    let config: t5::Config = serde_json::from_value(t5_config_json()).expect("candle-transformers T5 config");
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, device);
    t5::T5ForConditionalGeneration::load(vb, &config).expect("candle-transformers T5")
}

/// tcat's greedy generation: the decoder sequence, start token first, then `n` tokens.
fn tcat_generate_t5(model: &Seq2seqModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut out = generate_seq2seq(model, &[prompt.to_vec()], &greedy(n), |_, _| {}).unwrap();
    out.pop().unwrap()
}

/// candle-transformers' greedy generation, as its t5 example runs it: encode once, then the
/// start token and one token per step against the decoder's self-attention KV cache (its
/// cross-attention keys and values are recomputed from the encoder states every step), argmax
/// through `LogitsProcessor` (no temperature). `on_logits` sees each step's logits `[vocab]`.
/// Returns the decoder sequence, start token first.
fn peer_generate_t5(
    model: &mut t5::T5ForConditionalGeneration,
    prompt: &[u32],
    n: usize,
    device: &Device,
    mut on_logits: impl FnMut(&Tensor),
) -> Vec<u32> {
    model.clear_kv_cache();
    let encoded = model.encode(&Tensor::new(prompt, device).unwrap().unsqueeze(0).unwrap()).unwrap();
    let mut tokens = vec![T5_START];
    let mut sampler = LogitsProcessor::new(0, None, None);
    for _ in 0..n {
        let input = Tensor::new(&tokens[tokens.len() - 1..], device).unwrap().unsqueeze(0).unwrap();
        let logits = model.decode(&input, &encoded).unwrap().squeeze(0).unwrap();
        on_logits(&logits);
        tokens.push(sampler.sample(&logits).unwrap());
    }
    tokens
}

/// What one comparison of tcat's and candle-transformers' T5 found.
struct T5Comparison {
    /// `max |tcat − candle-transformers|` over the encoder's final states.
    encoder_diff: f32,
    /// Per decoder step, `max |tcat − candle-transformers / d_model| / max |tcat|` over the
    /// logits, tcat teacher-forced on candle-transformers' sequence.
    step_diffs: Vec<f32>,
    tcat_ids: Vec<u32>,
    peer_ids: Vec<u32>,
}

impl T5Comparison {
    /// The first decoder step whose logits differ beyond [`T5_LOGITS_TOL`].
    fn first_divergent_step(&self) -> Option<usize> {
        self.step_diffs.iter().position(|&d| d > T5_LOGITS_TOL)
    }

    /// The first generated token (0-based) where the greedy ids differ.
    fn first_divergent_token(&self) -> Option<usize> {
        self.tcat_ids.iter().zip(&self.peer_ids).skip(1).position(|(a, b)| a != b)
    }

    fn report(&self, label: &str) {
        let max_step = self.step_diffs.iter().copied().fold(0f32, f32::max);
        eprintln!(
            "check t5 {label}: encoder states max |diff| = {:.2e}; decoder logits max relative diff = {max_step:.2e} \
             (first step above {T5_LOGITS_TOL:.0e}: {:?}, steps before it: max {:.2e}); greedy ids equal: {} (first differing token: {:?})",
            self.encoder_diff,
            self.first_divergent_step(),
            self.step_diffs[..self.first_divergent_step().unwrap_or(self.step_diffs.len())]
                .iter()
                .copied()
                .fold(0f32, f32::max),
            self.tcat_ids == self.peer_ids,
            self.first_divergent_token(),
        );
        eprintln!("  tcat                {:?}", &self.tcat_ids[1..]);
        eprintln!("  candle-transformers {:?}", &self.peer_ids[1..]);
    }
}

/// Runs both implementations on `prompt` for `n` greedy tokens and compares encoder states,
/// per-step logits and ids. candle-transformers multiplies the tied head's input by
/// `√d_model`, transformers (and tcat) by `d_model^-0.5`: the logits differ by the factor
/// `d_model`, which is divided out (argmax is unaffected).
fn compare_t5(
    tcat: &Seq2seqModel,
    peer: &mut t5::T5ForConditionalGeneration,
    prompt: &[u32],
    n: usize,
    device: &Device,
) -> Result<T5Comparison> {
    let encoder_batch = Batch::right_padded(&[prompt.to_vec()], None, 0, device)?;
    let ours = tcat.encode(&encoder_batch)?;
    peer.clear_kv_cache();
    let theirs = peer.encode(&Tensor::new(prompt, device)?.unsqueeze(0)?)?;
    let encoder_diff = max_abs_diff(&ours, &theirs)?;

    let mut peer_logits = Vec::new();
    let peer_ids = peer_generate_t5(peer, prompt, n, device, |l| peer_logits.push(l.clone()));
    let decoder_batch = Batch::right_padded(&[peer_ids[..n].to_vec()], None, 0, device)?;
    let ours = tcat.logits(&encoder_batch, &decoder_batch)?.squeeze(0)?;
    let mut step_diffs = Vec::with_capacity(n);
    for (step, theirs) in peer_logits.iter().enumerate() {
        let ours = ours.i(step)?;
        let scale = ours.abs()?.max(0)?.to_scalar::<f32>()?;
        step_diffs.push(max_abs_diff(&ours, &(theirs / T5_D_MODEL as f64)?)? / scale);
    }
    let tcat_ids = tcat_generate_t5(tcat, prompt, n);
    Ok(T5Comparison { encoder_diff, step_diffs, tcat_ids, peer_ids })
}

/// The decoder's relative-bias table with every row from `PEER_EXACT` on replaced by row
/// `PEER_EXACT`: on it, transformers' causal bucketing (32 buckets for keys at or before the
/// query: distances 0–15 exact, then logarithmic up to 128) and candle-transformers'
/// bidirectional one (16 buckets per side: distances 0–7 exact, then buckets 8–15) give every
/// distance the same bias.
fn t5_tail_equalised(weights: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    const PEER_EXACT: usize = T5_BUCKETS / 4;
    let name = "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
    let table = &weights[name];
    let tail = table.narrow(0, PEER_EXACT, 1)?.broadcast_as((T5_BUCKETS - PEER_EXACT, T5_HEADS))?;
    let mut out = weights.clone();
    out.insert(name.to_string(), Tensor::cat(&[&table.narrow(0, 0, PEER_EXACT)?, &tail.contiguous()?], 0)?);
    Ok(out)
}

fn bench_t5(c: &mut Criterion) {
    let device = Device::Cpu;
    let weights = timed("t5: random weights", || t5_weights(&device)).expect("T5 weights");
    let prompt = Rng::new(0x75e).token_ids(PROMPT_LEN, T5_VOCAB);

    let model = timed("t5: tcat load", || tcat_t5(&weights, &device));
    let tcat = model.as_seq2seq().expect("T5 is an encoder-decoder");
    let mut peer = timed("t5: candle-transformers load", || peer_t5(&weights, &device));

    // 1. The benchmark's weights. candle-transformers' T5 buckets the decoder's relative
    //    positions with the encoder's bidirectional rule ("This only handles the bidirectional
    //    case", t5.rs), transformers with the causal one, so from the first decoder step whose
    //    keys include one 9 positions back (distance 9: bucket 8 there, 9 here) the decoder
    //    biases, hence the logits, differ; the steps before must agree. (The greedy ids may
    //    still agree: with random weights the continuation repeats one token.)
    let real = compare_t5(tcat, &mut peer, &prompt, NEW_TOKENS, &device).expect("T5 comparison");
    real.report("(benchmark weights)");
    assert!(real.encoder_diff < 1e-3, "T5 encoder states differ by {}", real.encoder_diff);
    const FIRST_BUCKET_DIFFERENCE: usize = 9;
    let first = real.first_divergent_step().unwrap_or(NEW_TOKENS);
    assert!(
        first >= FIRST_BUCKET_DIFFERENCE,
        "T5 decoder logits differ from step {first}, before the bucket rules do (step {FIRST_BUCKET_DIFFERENCE})"
    );
    // 2. The same weights with the decoder's bias table equal from bucket 8 on, where both rules
    //    give every distance the same bias: everything must agree, ids included.
    let equalised = t5_tail_equalised(&weights).expect("equalised weights");
    let diagnostic = {
        let model = tcat_t5(&equalised, &device);
        let mut peer = peer_t5(&equalised, &device);
        compare_t5(model.as_seq2seq().unwrap(), &mut peer, &prompt, NEW_TOKENS, &device).expect("T5 comparison")
    };
    diagnostic.report("(decoder bias equal from bucket 8 on)");
    assert_eq!(diagnostic.first_divergent_step(), None, "T5 logits differ beyond the relative-bias rule");
    assert_eq!(diagnostic.tcat_ids, diagnostic.peer_ids, "T5 greedy ids differ beyond the relative-bias rule");
    drop((diagnostic, equalised));

    let mut group = c.benchmark_group("t5_base_generate_64");
    group
        .throughput(Throughput::Elements(NEW_TOKENS as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("tcat", |b| b.iter(|| tcat_generate_t5(tcat, &prompt, NEW_TOKENS)));
    group.bench_function("candle-transformers", |b| {
        b.iter(|| peer_generate_t5(&mut peer, &prompt, NEW_TOKENS, &device, |_| {}))
    });
    group.finish();
}

/// Times one untimed-by-criterion call (building weights, loading), for the log.
fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!("{label}: {:.2?}", start.elapsed());
    out
}

// ---------------------------------------------------------------------------------------------
// SmolLM2-135M (LLaMA architecture) from its GGUF Q4_1 file
// ---------------------------------------------------------------------------------------------

/// The real GGUF file fetched by scripts/fetch_smollm2.sh, if present.
fn smollm2_path() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("TCAT_SMOLLM2").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("TCAT_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tcat")
            })
            .join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    path.is_file().then_some(path)
}

fn quantized_llama(path: &std::path::Path, device: &Device) -> quantized_llama::ModelWeights {
    let mut file = std::fs::File::open(path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    quantized_llama::ModelWeights::from_gguf(content, &mut file, device).unwrap()
}

/// candle-transformers' decoding loop for `quantized_llama`, as its example runs it.
fn quantized_llama_decode(
    model: &mut quantized_llama::ModelWeights,
    prompt: &[u32],
    n: usize,
    device: &Device,
) -> Vec<u32> {
    model.clear_kv_cache();
    let mut tokens = prompt.to_vec();
    let mut sampler = LogitsProcessor::new(0, None, None);
    for step in 0..n {
        let (past, context) =
            if step == 0 { (0, &tokens[..]) } else { (tokens.len() - 1, &tokens[tokens.len() - 1..]) };
        let input = Tensor::new(context, device).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&input, past).unwrap().squeeze(0).unwrap();
        tokens.push(sampler.sample(&logits).unwrap());
    }
    tokens
}

/// candle-transformers' f32 `llama` on the GGUF's weights: every tensor dequantized to f32 and
/// renamed to the Hugging Face layout, with the query and key rows put back in Hugging Face's
/// order (llama.cpp's converter stores row `h·D + 2i + j` of Hugging Face's row `h·D + j·D/2 + i`).
fn llama_f32_from_gguf(path: &std::path::Path, device: &Device) -> Result<(llama::Llama, llama::Config)> {
    let mut file = std::fs::File::open(path)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let meta = |k: &str| -> Result<u32> { Ok(content.metadata[&format!("llama.{k}")].to_u32()?) };
    let (layers, heads, kv_heads) = (
        meta("block_count")? as usize,
        meta("attention.head_count")? as usize,
        meta("attention.head_count_kv")? as usize,
    );
    let hidden = meta("embedding_length")? as usize;
    let head_dim = hidden / heads;
    let unpermute = |w: Tensor, n: usize| -> Result<Tensor> {
        let cols = w.dim(1)?;
        Ok(w.reshape((n, head_dim / 2, 2, cols))?.transpose(1, 2)?.reshape((n * head_dim, cols))?)
    };
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let w = content.tensor(&mut file, name, device)?.dequantize(device)?;
        let (hf, w) = match name.split('.').collect::<Vec<_>>()[..] {
            ["token_embd", "weight"] => ("model.embed_tokens.weight".to_string(), w),
            ["output_norm", "weight"] => ("model.norm.weight".to_string(), w),
            ["output", "weight"] => ("lm_head.weight".to_string(), w),
            ["blk", i, part, "weight"] => {
                let (hf_part, w) = match part {
                    "attn_q" => ("self_attn.q_proj", unpermute(w, heads)?),
                    "attn_k" => ("self_attn.k_proj", unpermute(w, kv_heads)?),
                    "attn_v" => ("self_attn.v_proj", w),
                    "attn_output" => ("self_attn.o_proj", w),
                    "ffn_gate" => ("mlp.gate_proj", w),
                    "ffn_up" => ("mlp.up_proj", w),
                    "ffn_down" => ("mlp.down_proj", w),
                    "attn_norm" => ("input_layernorm", w),
                    "ffn_norm" => ("post_attention_layernorm", w),
                    other => anyhow::bail!("unexpected GGUF tensor part {other}"),
                };
                (format!("model.layers.{i}.{hf_part}.weight"), w)
            }
            _ => anyhow::bail!("unexpected GGUF tensor {name}"),
        };
        tensors.insert(hf, w);
    }
    let config = llama::Config {
        hidden_size: hidden,
        intermediate_size: tensors["model.layers.0.mlp.gate_proj.weight"].dim(0)?,
        vocab_size: tensors["model.embed_tokens.weight"].dim(0)?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        use_flash_attn: false,
        rms_norm_eps: content.metadata["llama.attention.layer_norm_rms_epsilon"].to_f32()? as f64,
        rope_theta: content.metadata["llama.rope.freq_base"].to_f32()?,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: None,
        max_position_embeddings: meta("context_length")? as usize,
        tie_word_embeddings: !tensors.contains_key("lm_head.weight"),
    };
    let model = llama::Llama::load(VarBuilder::from_tensors(tensors, DType::F32, device), &config)?;
    Ok((model, config))
}

/// candle-transformers' decoding loop for `llama`, as its example runs it (a fresh cache per
/// sequence, the whole prompt first, then one token per step).
fn llama_decode(model: &llama::Llama, config: &llama::Config, prompt: &[u32], n: usize, device: &Device) -> Vec<u32> {
    let mut cache = llama::Cache::new(true, DType::F32, config, device).unwrap();
    let mut tokens = prompt.to_vec();
    let mut sampler = LogitsProcessor::new(0, None, None);
    for step in 0..n {
        let (past, context) =
            if step == 0 { (0, &tokens[..]) } else { (tokens.len() - 1, &tokens[tokens.len() - 1..]) };
        let input = Tensor::new(context, device).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&input, past, &mut cache).unwrap().squeeze(0).unwrap();
        tokens.push(sampler.sample(&logits).unwrap());
    }
    tokens
}

/// SmolLM2-135M-Instruct, Q4_1: prompt processing (128 tokens) and decoding (64 tokens after a
/// 16-token prompt), tcat (quantized and dequantized to f32) beside candle-transformers'
/// `quantized_llama` on the same file.
fn bench_smollm2(c: &mut Criterion) {
    let Some(path) = smollm2_path() else {
        eprintln!("smollm2: GGUF not found, skipped (run scripts/fetch_smollm2.sh)");
        return;
    };
    let device = Device::Cpu;
    let load = |dtype| GgufFile::open(&path).unwrap().load_llama(&device, dtype).unwrap();
    let (tcat_q, tcat_f32) = (load(None), load(Some(DType::F32)));
    let mut peer = quantized_llama(&path, &device);
    let vocab = tcat_q.vocab_size();
    let prompt = Rng::new(0x5e1).token_ids(PROMPT_LEN, vocab);
    let long_prompt = Rng::new(0x5e2).token_ids(128, vocab);
    // Both quantize activations to Q8_1 inside the same kernels but round differently elsewhere
    // (last logits differ by ~0.5 on real text, against 4e-5 for tcat's f32 path vs
    // transformers), so random prompts, whose next-token distribution is flat, can decode
    // differently. The check uses real text: "The capital of France is" must continue with
    // the same token.
    let capital = [504u32, 3575, 282, 4649, 314];
    let ours = tcat_decode(&tcat_q, &capital, 1);
    let theirs = quantized_llama_decode(&mut peer, &capital, 1, &device);
    eprintln!("check smollm2 q4_1: next token tcat {:?}, candle-transformers {:?}", &ours[5..], &theirs[5..]);
    assert_eq!(ours, theirs, "quantized models disagree on the next token of real text");
    // The f32 pair is near-exact (both within ~1e-4 of transformers), so it must agree on the
    // random prompt's greedy continuation too.
    let (peer_f32, peer_config) = llama_f32_from_gguf(&path, &device).unwrap();
    let ours = tcat_decode(&tcat_f32, &prompt, CHECKED_TOKENS);
    let theirs = llama_decode(&peer_f32, &peer_config, &prompt, CHECKED_TOKENS, &device);
    eprintln!("check smollm2 f32: tcat {:?}, candle-transformers {:?}", &ours[PROMPT_LEN..], &theirs[PROMPT_LEN..]);
    assert_eq!(ours, theirs, "f32 models disagree on greedy tokens");

    let mut group = c.benchmark_group("smollm2_135m_decode_64");
    group
        .throughput(Throughput::Elements(NEW_TOKENS as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    group.bench_function("tcat-q4_1", |b| b.iter(|| tcat_decode(&tcat_q, &prompt, NEW_TOKENS)));
    group.bench_function("tcat-f32", |b| b.iter(|| tcat_decode(&tcat_f32, &prompt, NEW_TOKENS)));
    group.bench_function("candle-transformers-q4_1", |b| {
        b.iter(|| quantized_llama_decode(&mut peer, &prompt, NEW_TOKENS, &device))
    });
    group.bench_function("candle-transformers-f32", |b| {
        b.iter(|| llama_decode(&peer_f32, &peer_config, &prompt, NEW_TOKENS, &device))
    });
    group.finish();

    let mut group = c.benchmark_group("smollm2_135m_prefill_128");
    group.throughput(Throughput::Elements(128)).sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("tcat-q4_1", |b| b.iter(|| tcat_decode(&tcat_q, &long_prompt, 1)));
    group.bench_function("tcat-f32", |b| b.iter(|| tcat_decode(&tcat_f32, &long_prompt, 1)));
    group.bench_function("candle-transformers-q4_1", |b| {
        b.iter(|| quantized_llama_decode(&mut peer, &long_prompt, 1, &device))
    });
    group.bench_function("candle-transformers-f32", |b| {
        b.iter(|| llama_decode(&peer_f32, &peer_config, &long_prompt, 1, &device))
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// ViT-B/16 forward
// ---------------------------------------------------------------------------------------------

/// ViT-B/16 (`google/vit-base-patch16-224`'s shapes) as `ViTForImageClassification` with 1000
/// classes: both sides read this `config.json` (candle-transformers' `vit::Config` takes the
/// shape fields; tcat the whole file).
fn vit_config_json() -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..VIT_LABELS).map(|i| (i.to_string(), serde_json::Value::from(format!("class {i}")))).collect();
    serde_json::json!({
        "model_type": "vit",
        "architectures": ["ViTForImageClassification"],
        "hidden_size": VIT_HIDDEN,
        "num_hidden_layers": VIT_LAYERS,
        "num_attention_heads": VIT_HEADS,
        "intermediate_size": VIT_INTERMEDIATE,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "image_size": VIT_IMAGE,
        "patch_size": VIT_PATCH,
        "num_channels": 3,
        "qkv_bias": true,
        "id2label": labels,
    })
}

/// ViT weights under Hugging Face `ViTForImageClassification` names.
fn vit_weights(device: &Device) -> Result<HashMap<String, Tensor>> {
    let (h, i) = (VIT_HIDDEN, VIT_INTERMEDIATE);
    let tokens = (VIT_IMAGE / VIT_PATCH).pow(2) + 1;
    let mut w = Weights::new(0x717, device);
    w.normal("vit.embeddings.cls_token", &[1, 1, h], 0.0)?;
    w.normal("vit.embeddings.position_embeddings", &[1, tokens, h], 0.0)?;
    w.normal("vit.embeddings.patch_embeddings.projection.weight", &[h, 3, VIT_PATCH, VIT_PATCH], 0.0)?;
    w.normal("vit.embeddings.patch_embeddings.projection.bias", &[h], 0.0)?;
    for layer in 0..VIT_LAYERS {
        let p = format!("vit.encoder.layer.{layer}");
        for proj in ["attention.attention.query", "attention.attention.key", "attention.attention.value"] {
            w.linear(&format!("{p}.{proj}"), [h, h], h)?;
        }
        w.linear(&format!("{p}.attention.output.dense"), [h, h], h)?;
        w.linear(&format!("{p}.intermediate.dense"), [i, h], i)?;
        w.linear(&format!("{p}.output.dense"), [h, i], h)?;
        w.layer_norm(&format!("{p}.layernorm_before"), h)?;
        w.layer_norm(&format!("{p}.layernorm_after"), h)?;
    }
    w.layer_norm("vit.layernorm", h)?;
    w.linear("classifier", [VIT_LABELS, h], VIT_LABELS)?;
    Ok(w.map)
}

/// Class logits of 8 images: tcat's `VisionModel` (hidden states, then the classifier on the
/// class token) against `candle_transformers::models::vit::Model::forward`. tcat's final norm
/// covers every token (what `ViTModel` returns), the peer's only the class token: 197 rows of
/// one LayerNorm, well under 0.1% of the forward.
fn bench_vit(c: &mut Criterion) {
    let device = Device::Cpu;
    let weights = timed("vit: random weights", || vit_weights(&device)).expect("ViT weights");
    let json = vit_config_json();

    let config = ConfigFile { path: "bench".into(), json: json.clone() };
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &device);
    let model = Model::from_checkpoint(&config, &Checkpoint::from_var_builder(vb, "random")).expect("tcat ViT");
    let tcat = model.as_vision().expect("ViT is an image encoder");
    let tcat_logits = |pixels: &Tensor| tcat.logits(&tcat.hidden_states(pixels)?);

    let peer_config: vit::Config = serde_json::from_value(json).expect("candle-transformers ViT config");
    let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
    let peer = vit::Model::new(&peer_config, VIT_LABELS, vb).expect("candle-transformers ViT");

    // Deterministic pixel values in [-1, 1), as a preprocessed image holds.
    let mut rng = Rng::new(0x91c);
    let count = VIT_BATCH * 3 * VIT_IMAGE * VIT_IMAGE;
    let values: Vec<f32> = (0..count).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect();
    let pixels = Tensor::from_vec(values, (VIT_BATCH, 3, VIT_IMAGE, VIT_IMAGE), &device).expect("pixels");

    // Same computation: the class logits agree.
    let ours = tcat_logits(&pixels).expect("tcat forward");
    let theirs = peer.forward(&pixels).expect("candle-transformers forward");
    let diff = max_abs_diff(&ours, &theirs).expect("diff");
    eprintln!("check vit: max |tcat - candle-transformers| over logits {:?} = {diff:.2e}", ours.dims());
    assert!(diff < 1e-3, "ViT logits differ by {diff}");

    let mut group = c.benchmark_group("vit_b16_forward_8x224");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(30));
    group.bench_function("tcat", |b| b.iter(|| tcat_logits(&pixels).unwrap()));
    group.bench_function("candle-transformers", |b| b.iter(|| peer.forward(&pixels).unwrap()));
    group.finish();
}

criterion_group!(benches, bench_bert, bench_gpt2, bench_t5, bench_smollm2, bench_vit);
fn main() {
    // SAFETY: first thing in `main`, before any thread exists. Both sides of every comparison
    // run with it.
    unsafe { tcat::core::pin_cpu_thread_count() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
