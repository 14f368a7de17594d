//! The catalogue's models, wired from tcat's blocks.
//!
//! Architectures are data: a family module (`bert`, `roberta`, `distilbert`, `gpt2` with
//! `gpt_bigcode`, `openai_gpt`, `ctrl`, `gpt_neo`, `gpt_neox`, `gptj`, `opt`, `bloom`, `llama`
//! with `mistral`) maps a Hugging Face `config.json` to a [`spec::ArchSpec`] and names its
//! weights with a [`build::WeightNames`] table; GGUF files map their metadata to the same spec
//! ([`gguf`]); one builder, [`build::build`], turns any spec and any [`build::WeightSource`]
//! (a checkpoint, a GGUF file, or seeded random weights for presets, [`Model::preset`]) into an
//! [`EncoderModel`] or a [`DecoderModel`]. Around them: [`ModelSource`] finds a checkpoint in a
//! folder, a file or on the hub, [`Model::load`] dispatches on `model_type` through the family
//! registry, [`Batch`] pads rows of token ids, and [`generate`] decodes with the KV cache.
//!
//! ```no_run
//! use tcat_models::{Batch, Model, ModelSource};
//! let device = candle_core::Device::Cpu;
//! let source = ModelSource::resolve("sentence-transformers/all-MiniLM-L6-v2")?;
//! let model = Model::load(&source, &device, candle_core::DType::F32)?;
//! let batch = Batch::right_padded(&[vec![101, 7592, 102]], None, 0, &device)?;
//! let hidden = model.as_encoder().unwrap().hidden_states(&batch)?;
//! # Ok::<(), tcat_core::Error>(())
//! ```

mod batch;
pub mod build;
mod decoder;
mod encoder;
pub mod families;
pub mod generation;
pub mod image_processor;
pub mod loading;
mod model;
mod seq2seq;
mod vision;
mod vision_language;

pub use batch::Batch;
pub use decoder::{DecoderModel, RouterReport};
pub use encoder::{EncoderModel, KnowledgeEncoder, KnowledgeLayer, PositionRule};
pub use families::spec_of;
pub use families::{
    albert, bart, bert, bloom, ctrl, deberta_v2, distilbert, electra, gpt_neo, gpt_neox, gpt2, gptj, llama, mixtral,
    modernbert, openai_gpt, opt, qwen2, roberta, t5, xlm, xlnet,
};
pub use families::{clip, vit};
pub use generation::{ChatMessage, ChatTemplate, GenerationConfig, Sampling, generate, generate_seq2seq};
pub use loading::{
    Checkpoint, ConfigFile, Format, GenerationDefaults, ModelSource, SentenceConfig, SentenceDense, gguf,
    load_tokenizer,
};
pub use model::{Model, SUPPORTED_MODEL_TYPES};
pub use seq2seq::{Seq2seqModel, Seq2seqRouterReport, Seq2seqTokens, Seq2seqTower};
/// The architecture spec types (re-exported from `tcat-spec`).
pub use tcat_spec as spec;
pub use vision::{ClassPooling, DualEncoderModel, EosPooling, TextTower, VisionModel};
pub use vision_language::{ImageConnection, VisionLanguageModel};

use families::rope_config;
use generation::sampler;
use loading::{config, source};
