//! Finding and opening checkpoints: a local folder, a weights file, a GGUF file or a hub id
//! ([`ModelSource`]); `config.json` with errors naming the field ([`ConfigFile`]); safetensors,
//! shards and PyTorch weights ([`Checkpoint`]); GGUF metadata, tensors and tokenizers
//! ([`gguf`]); tokenizers and sentence-transformers folders.

pub(crate) mod checkpoint;
pub(crate) mod config;
pub(crate) mod generation_defaults;
pub mod gguf;
pub(crate) mod gguf_header;
pub(crate) mod safetensors_header;
pub(crate) mod sentence;
pub(crate) mod source;
pub(crate) mod tokenizer;

pub use checkpoint::Checkpoint;
pub use config::ConfigFile;
pub use generation_defaults::GenerationDefaults;
pub use sentence::{SentenceConfig, SentenceDense};
pub use source::{Format, ModelSource};
pub use tokenizer::load_tokenizer;
