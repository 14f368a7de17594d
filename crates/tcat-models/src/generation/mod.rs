//! Generation: decoding with the KV cache ([`generate`]), token choice on the device
//! ([`Sampling`]), and chat templates ([`ChatTemplate`]).

pub(crate) mod chat;
pub(crate) mod decode;
pub(crate) mod sampler;

pub use chat::{ChatMessage, ChatTemplate};
pub use decode::{GenerationConfig, Sampling, generate};
