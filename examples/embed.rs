//! Sentence embeddings with a BERT-family model, the way sentence-transformers computes them.
//!
//! ```sh
//! cargo run --release --example embed -- ~/.cache/tcat/all-MiniLM-L6-v2 "A cat sits on the mat." "A kitten rests."
//! ```
//!
//! `--device cuda:0` (or `TCAT_DEVICE=cuda:0`) runs it on a GPU of a `--features cuda` build.

use anyhow::{Context, Result};
use candle_core::DType;
use tcat::blocks::SentencePooling;
use tcat::models::{Batch, Model, ModelSource, SentenceConfig, load_tokenizer};

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let device = tcat::core::take_device_arg(&mut args)?;
    let mut args = args.into_iter();
    let model_name = args.next().context("usage: embed [--device D] <MODEL_DIR|HUB_ID> TEXT...")?;
    let texts: Vec<String> = args.collect();

    let source = ModelSource::resolve(&model_name)?;
    let model = Model::load(&source, &device, DType::F32)?;
    let encoder = model.as_encoder().context("an encoder model is needed")?;
    let tokenizer = load_tokenizer(source.tokenizer.as_ref().context("no tokenizer.json")?)?;
    let sentence = SentenceConfig::read(&source.root)?.unwrap_or(SentenceConfig {
        pooling: SentencePooling::Mean,
        dense: Vec::new(),
        normalize: true,
    });

    let ids = texts
        .iter()
        .map(|t| Ok(tokenizer.encode(t.as_str(), true).map_err(anyhow::Error::msg)?.get_ids().to_vec()))
        .collect::<Result<Vec<_>>>()?;
    let batch = Batch::right_padded(&ids, None, encoder.pad_token_id(), &device)?;
    let hidden = encoder.hidden_states(&batch)?;
    let mut pooled = sentence.pooling.pool(&hidden, batch.attention_mask())?;
    if sentence.normalize {
        pooled = SentencePooling::l2_normalize(&pooled)?;
    }
    for (text, v) in texts.iter().zip(pooled.to_vec2::<f32>()?) {
        println!("{text:?}: {:?}…", &v[..4.min(v.len())]);
    }
    Ok(())
}
