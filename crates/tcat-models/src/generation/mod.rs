//! Generation: decoding with the KV cache ([`generate`]), token choice on the device
//! ([`Sampling`]), beam search ([`beam_search`] over any [`StepDecoder`], [`generate_beam`]
//! for causal models), the logits processors both share ([`LogitsProcessors`]), and chat
//! templates ([`ChatTemplate`]).

pub(crate) mod beam;
pub(crate) mod chat;
pub(crate) mod decode;
pub(crate) mod processors;
pub(crate) mod sampler;
pub(crate) mod seq2seq;

pub use beam::{BeamSettings, EarlyStopping, StepDecoder, beam_search, generate_beam};
pub use chat::{ChatMessage, ChatTemplate};
pub use decode::{GenerationConfig, Sampling, generate};
pub(crate) use processors::check_decoding_memory;
pub use processors::{LogitsProcessors, SearchLimits, bad_words_bans, no_repeat_ngram_bans};
pub use seq2seq::{Seq2seqDecoding, generate_seq2seq, generate_seq2seq_beam};
