//! The catalogue's models, wired from tcat's blocks.
//!
//! A family module (`bert`, `roberta`, `distilbert`, `gpt2`, `llama`) reads a Hugging Face
//! `config.json`, names the checkpoint's weights, and assembles an [`EncoderModel`] or a
//! [`DecoderModel`] from `tcat-blocks`; it computes nothing of its own. Around them:
//! [`ModelSource`] finds a checkpoint in a folder, a file or on the hub, [`Model::load`]
//! dispatches on `model_type`, [`Batch`] pads rows of token ids, and [`generate`] decodes with
//! the KV cache.
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
pub mod bert;
pub mod bloom;
mod chat;
mod checkpoint;
mod config;
pub mod ctrl;
mod decoder;
pub mod distilbert;
mod encoder;
mod generation;
pub mod gguf;
pub mod gpt2;
pub mod gpt_neo;
pub mod gpt_neox;
pub mod gptj;
pub mod llama;
mod model;
pub mod openai_gpt;
pub mod opt;
pub mod roberta;
mod rope_config;
mod sampler;
mod sentence;
mod source;
mod tokenizer;

pub use batch::Batch;
pub use chat::{ChatMessage, ChatTemplate};
pub use checkpoint::Checkpoint;
pub use config::ConfigFile;
pub use decoder::DecoderModel;
pub use encoder::{EncoderModel, PositionRule};
pub use generation::{GenerationConfig, Sampling, generate};
pub use model::{Model, SUPPORTED_MODEL_TYPES};
pub use sentence::SentenceConfig;
pub use source::{Format, ModelSource};
pub use tokenizer::load_tokenizer;
