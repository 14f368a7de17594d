//! The error type shared by every tcat crate.
//!
//! Each variant names the thing that was wrong (file, field, tensor, token) and what was
//! expected, so that a user reading it can fix their input without reading tcat's source.

use std::path::PathBuf;

/// Errors returned by tcat's library crates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration file is malformed or has a value tcat cannot use.
    #[error("{}: {message}", file.display())]
    Config {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// `config.json` names a `model_type` tcat does not implement.
    #[error("{}: unknown model_type `{found}`; supported: {supported}", file.display())]
    UnknownModelType {
        /// The configuration file.
        file: PathBuf,
        /// The `model_type` found.
        found: String,
        /// The supported model types, comma-separated.
        supported: String,
    },
    /// A checkpoint lacks a tensor the model needs.
    #[error("{location}: missing tensor `{name}`")]
    MissingTensor {
        /// The tensor's name.
        name: String,
        /// The checkpoint (file or folder).
        location: String,
    },
    /// A checkpoint tensor has a shape other than the config implies.
    #[error("{location}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The checkpoint (file or folder).
        location: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape stored in the checkpoint.
        found: Vec<usize>,
    },
    /// An input sequence is longer than the model can position.
    #[error("sequence of {len} tokens is longer than {limit} ({max} positions)")]
    SequenceTooLong {
        /// The sequence length asked for.
        len: usize,
        /// The longest supported length.
        max: usize,
        /// What sets the limit (a config field or a cache size).
        limit: String,
    },
    /// A token id does not index the vocabulary.
    #[error("token id {id} is outside the vocabulary (vocab_size {vocab_size})")]
    TokenOutOfVocab {
        /// The offending id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// An argument or input is not usable, with the reason.
    #[error("{0}")]
    InvalidInput(String),
    /// The tokenizer failed or is missing.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A hub download or lookup failed.
    #[error("hub: {0}")]
    Hub(String),
    /// A part of an architecture that tcat's blocks cannot build yet.
    #[error("{what} is not implemented yet")]
    NotImplemented {
        /// The part, named as the spec or config names it.
        what: String,
    },
    /// A device could not be opened.
    #[error("device `{name}`: {message}")]
    Device {
        /// The device string asked for.
        name: String,
        /// Why it is unavailable.
        message: String,
    },
}

/// Result type of tcat's library crates.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Turns candle's weight-loading errors into [`Error::MissingTensor`] or
    /// [`Error::ShapeMismatch`] naming `location`; other errors pass through.
    pub fn from_weights(err: candle_core::Error, location: &str) -> Self {
        match err {
            candle_core::Error::CannotFindTensor { path } => {
                Error::MissingTensor { name: path, location: location.to_string() }
            }
            candle_core::Error::WithBacktrace { inner, .. } => Self::from_weights(*inner, location),
            candle_core::Error::UnexpectedShape { msg, expected, got } => Error::ShapeMismatch {
                name: msg.strip_prefix("shape mismatch for ").unwrap_or(&msg).to_string(),
                location: location.to_string(),
                expected: expected.dims().to_vec(),
                found: got.dims().to_vec(),
            },
            other => Error::Candle(other),
        }
    }
}
