//! Greedy or sampled continuation with a causal language model and the KV cache.
//!
//! ```sh
//! cargo run --release --example generate -- tests/fixtures/gpt2 "the cat"
//! ```
//!
//! `--device cuda:0` (or `TCAT_DEVICE=cuda:0`) runs it on a GPU of a `--features cuda` build.

use anyhow::{Context, Result};
use candle_core::DType;
use tcat::models::{GenerationConfig, Model, ModelSource, Sampling, generate, load_tokenizer};

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let device = tcat::core::take_device_arg(&mut args)?;
    let usage = "usage: generate [--device D] <MODEL_DIR|HUB_ID> PROMPT";
    let mut args = args.into_iter();
    let (model_name, prompt) = (args.next().context(usage)?, args.next().context(usage)?);

    let source = ModelSource::resolve(&model_name)?;
    let model = Model::load(&source, &device, DType::F32)?;
    let decoder = model.as_decoder().context("a causal language model is needed")?;
    let tokenizer = load_tokenizer(source.tokenizer.as_ref().context("no tokenizer.json")?)?;
    let ids = tokenizer.encode(prompt.as_str(), false).map_err(anyhow::Error::msg)?.get_ids().to_vec();

    let config = GenerationConfig {
        max_new_tokens: 20,
        sampling: Sampling::Sample { temperature: 0.8, top_k: Some(50), top_p: Some(0.95) },
        seed: 42,
        repetition_penalty: 1.1,
        ..Default::default() // stop at the model's EOS ids
    };
    let out = generate(decoder, &[ids], &config, |_, _| {})?;
    println!("{}", tokenizer.decode(&out[0], true).map_err(anyhow::Error::msg)?);
    Ok(())
}
