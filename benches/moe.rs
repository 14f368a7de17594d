//! Mixture of experts, measured side by side on the CPU in f32.
//!
//! - `moe_layer_vs_dense/{tokens}`: one Mixtral-shaped sparse layer (hidden 1024, 8 SwiGLU
//!   experts of inner width 2816, top 2, tcat's `MoeFeedForward` with its device-side dispatch)
//!   against a dense SwiGLU network with the same *active* parameters (inner width 2 × 2816),
//!   over 1 token (a decoding step) and 128 tokens (a prefill). The ratio is what routing,
//!   gathering and scattering cost beyond the matmuls a token needs anyway.
//! - `mixtral_decode_64`: a small Mixtral (hidden 1024, 4 layers, 16 query and 4 key/value heads,
//!   8 experts of 2816, top 2, vocab 32000) on random weights in the Hugging Face layout: greedy
//!   decoding of 64 tokens after a 16-token prompt, batch 1, reported in tokens/s, tcat's
//!   `generate` against `candle_transformers::models::mixtral::Model` driven as its example
//!   does (one token per step against its KV cache). The peer copies the router's logits to the
//!   host at every layer of every step to pick the experts; tcat keeps the routing on the device
//!   and reads back one count vector per layer (the experts' batch sizes are shapes).
//!
//! Before timing, the dense and sparse layers are checked against their references and the two
//! Mixtrals against each other (the same greedy tokens, logits within 1e-3).
//!
//! ```text
//! cargo bench --bench moe
//! ```

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::mixtral;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use tcat::blocks::{Activation, FeedForward, MoeFeedForward, Router, RoutingRule};
use tcat::core::Linear;
use tcat::models::{Checkpoint, ConfigFile, DecoderModel, GenerationConfig, Model, Sampling, generate};

#[global_allocator]
static GLOBAL: tcat_bench::huge_pages::HugePages<mimalloc::MiMalloc> =
    tcat_bench::huge_pages::HugePages::new(mimalloc::MiMalloc);

const HIDDEN: usize = 1024;
const EXPERTS: usize = 8;
const TOP_K: usize = 2;
const EXPERT_INNER: usize = 2816;
const LAYERS: usize = 4;
const HEADS: usize = 16;
const KV_HEADS: usize = 4;
const VOCAB: usize = 32000;
const PROMPT_LEN: usize = 16;
const NEW_TOKENS: usize = 64;

/// A projection `[out, in]` with weights `N(0, 1/in)`, so that activations keep their scale.
fn linear(out: usize, input: usize, device: &Device) -> Result<Linear> {
    Ok(Linear::new(Tensor::randn(0f32, (1.0 / input as f32).sqrt(), (out, input), device)?, None))
}

fn swiglu(inner: usize, device: &Device) -> Result<FeedForward> {
    Ok(FeedForward::gated(
        linear(inner, HIDDEN, device)?,
        linear(inner, HIDDEN, device)?,
        linear(HIDDEN, inner, device)?,
        Activation::Silu,
    ))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn bench_layer(c: &mut Criterion) {
    let device = Device::Cpu;
    // The router's weights are wide so that tokens spread over the experts.
    let gate = Linear::new(Tensor::randn(0f32, 1.0, (EXPERTS, HIDDEN), &device).unwrap(), None);
    let router = Router::new(gate, RoutingRule::TopK { k: TOP_K, renormalize: true }).unwrap();
    let experts = (0..EXPERTS).map(|_| swiglu(EXPERT_INNER, &device)).collect::<Result<Vec<_>>>().unwrap();
    let moe = MoeFeedForward::new(router, experts).unwrap();
    let dense = swiglu(TOP_K * EXPERT_INNER, &device).unwrap();

    let mut group = c.benchmark_group("moe_layer_vs_dense");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    for tokens in [1, 128] {
        let x = Tensor::randn(0f32, 1.0, (1, tokens, HIDDEN), &device).unwrap();
        let d = max_abs_diff(&moe.forward(&x).unwrap(), &moe.forward_reference(&x).unwrap()).unwrap();
        assert!(d < 1e-3, "the sparse layer differs from its reference by {d}");
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(BenchmarkId::new("tcat-moe", tokens), &x, |b, x| b.iter(|| moe.forward(x).unwrap()));
        group.bench_with_input(BenchmarkId::new("dense-same-active", tokens), &x, |b, x| {
            b.iter(|| dense.forward(x).unwrap())
        });
    }
    group.finish();
}

/// The small Mixtral's `config.json`, read by both sides (candle-transformers' `Config` needs
/// `rope_theta`, a numeric `sliding_window` and `use_flash_attn`; the window is longer than any
/// sequence here, so it changes nothing).
fn mixtral_config_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "mixtral",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": EXPERT_INNER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e6,
        "sliding_window": 4096,
        "num_experts_per_tok": TOP_K,
        "num_local_experts": EXPERTS,
        "use_flash_attn": false,
        "tie_word_embeddings": false,
        "eos_token_id": 2,
    })
}

/// Random weights under Hugging Face Mixtral's names.
fn mixtral_weights(device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut w = HashMap::new();
    // `N(0, std²)`; std 0 gives the ones of a norm gain.
    let mut put = |name: String, dims: &[usize], std: f32| -> Result<()> {
        let t =
            if std == 0.0 { Tensor::ones(dims, DType::F32, device)? } else { Tensor::randn(0f32, std, dims, device)? };
        w.insert(name, t);
        Ok(())
    };
    let head_dim = HIDDEN / HEADS;
    let inv = |n: usize| (1.0 / n as f32).sqrt();
    put("model.embed_tokens.weight".into(), &[VOCAB, HIDDEN], 1.0)?;
    put("lm_head.weight".into(), &[VOCAB, HIDDEN], inv(HIDDEN))?;
    for i in 0..LAYERS {
        let l = format!("model.layers.{i}");
        put(format!("{l}.self_attn.q_proj.weight"), &[HEADS * head_dim, HIDDEN], inv(HIDDEN))?;
        put(format!("{l}.self_attn.k_proj.weight"), &[KV_HEADS * head_dim, HIDDEN], inv(HIDDEN))?;
        put(format!("{l}.self_attn.v_proj.weight"), &[KV_HEADS * head_dim, HIDDEN], inv(HIDDEN))?;
        put(format!("{l}.self_attn.o_proj.weight"), &[HIDDEN, HEADS * head_dim], inv(HIDDEN))?;
        put(format!("{l}.block_sparse_moe.gate.weight"), &[EXPERTS, HIDDEN], 1.0)?;
        for e in 0..EXPERTS {
            let x = format!("{l}.block_sparse_moe.experts.{e}");
            put(format!("{x}.w1.weight"), &[EXPERT_INNER, HIDDEN], inv(HIDDEN))?;
            put(format!("{x}.w3.weight"), &[EXPERT_INNER, HIDDEN], inv(HIDDEN))?;
            put(format!("{x}.w2.weight"), &[HIDDEN, EXPERT_INNER], inv(EXPERT_INNER))?;
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            put(format!("{l}.{norm}.weight"), &[HIDDEN], 0.0)?;
        }
    }
    put("model.norm.weight".into(), &[HIDDEN], 0.0)?;
    Ok(w)
}

fn tcat_decode(model: &DecoderModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let config = GenerationConfig {
        max_new_tokens: n,
        sampling: Sampling::Greedy,
        stop_tokens: Some(vec![]),
        ..Default::default()
    };
    generate(model, &[prompt.to_vec()], &config, |_, _| {}).unwrap().pop().unwrap()
}

/// candle-transformers' loop: the prompt at once, then one token per step; `on_logits` sees
/// each step's logits `[vocab]`.
fn peer_decode(
    model: &mut mixtral::Model,
    prompt: &[u32],
    n: usize,
    device: &Device,
    mut on_logits: impl FnMut(&Tensor),
) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    for step in 0..n {
        let (past, context) =
            if step == 0 { (0, &tokens[..]) } else { (tokens.len() - 1, &tokens[tokens.len() - 1..]) };
        let input = Tensor::new(context, device).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&input, past).unwrap().flatten_all().unwrap();
        on_logits(&logits);
        tokens.push(logits.argmax(0).unwrap().to_scalar::<u32>().unwrap());
    }
    tokens
}

/// The same greedy tokens, and the first step's logits within 1e-3 of each other.
fn check_mixtral(tcat: &DecoderModel, peer: &mut mixtral::Model, prompt: &[u32], device: &Device) -> Result<()> {
    let mut first = None;
    let theirs = peer_decode(peer, prompt, 8, device, |l| {
        first.get_or_insert_with(|| l.clone());
    });
    let ours = tcat_decode(tcat, prompt, 8);
    ensure!(ours == theirs, "greedy tokens differ: tcat {ours:?}, candle-transformers {theirs:?}");
    let batch = tcat::models::Batch::right_padded(&[prompt.to_vec()], None, 0, device)?;
    let logits = tcat.logits(&batch)?.squeeze(0)?.narrow(0, prompt.len() - 1, 1)?.flatten_all()?;
    let d = max_abs_diff(&logits, first.as_ref().expect("one step ran"))?;
    eprintln!("mixtral: first-step logits differ by {d:.2e}; 8 greedy tokens equal");
    ensure!(d < 1e-3, "first-step logits differ by {d}");
    Ok(())
}

fn bench_mixtral(c: &mut Criterion) {
    let device = Device::Cpu;
    let weights = mixtral_weights(&device).expect("Mixtral weights");
    let config = ConfigFile { path: "bench".into(), json: mixtral_config_json() };
    let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
    let model = Model::from_checkpoint(&config, &Checkpoint::from_var_builder(vb.clone(), "random")).expect("tcat");
    let tcat = model.as_decoder().expect("Mixtral is a decoder");
    let peer_config: mixtral::Config = serde_json::from_value(mixtral_config_json()).expect("peer config");
    let prompt: Vec<u32> = (0..PROMPT_LEN as u32).map(|i| (i * 7919 + 13) % VOCAB as u32).collect();
    let mut peer = mixtral::Model::new(&peer_config, vb.clone()).expect("candle-transformers Mixtral");
    check_mixtral(tcat, &mut peer, &prompt, &device).expect("Mixtral check");

    let mut group = c.benchmark_group("mixtral_decode_64");
    group
        .throughput(Throughput::Elements(NEW_TOKENS as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("tcat", |b| b.iter(|| tcat_decode(tcat, &prompt, NEW_TOKENS)));
    // The peer owns its KV cache and has no reset: a fresh one per run (untimed).
    group.bench_function("candle-transformers", |b| {
        b.iter_batched(
            || mixtral::Model::new(&peer_config, vb.clone()).unwrap(),
            |mut peer| peer_decode(&mut peer, &prompt, NEW_TOKENS, &device, |_| {}),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_layer, bench_mixtral);
fn main() {
    // SAFETY: first thing in `main`, before any thread exists.
    unsafe { tcat::core::pin_cpu_thread_count() };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
