//! Transformer building blocks, each written once and shared by every model in the catalog:
//! [`Norm`] (LayerNorm, RMSNorm), [`Activation`], [`FeedForward`], [`Embeddings`],
//! [`TransformerLayer`] with its [`Residual`] placement, the [`Stack`] of layers, and the
//! heads ([`LmHead`], [`MlmHead`], [`Pooler`], [`SentencePooling`]).
//!
//! Attention comes from `tcat-attention` and positions from `tcat-position`; this crate
//! assembles them.

mod activation;
mod embeddings;
mod feed_forward;
mod heads;
mod layer;
mod norm;
mod stack;

pub use activation::Activation;
pub use embeddings::Embeddings;
pub use feed_forward::FeedForward;
pub use heads::{LmHead, MlmHead, Pooler, SentencePooling};
pub use layer::{Residual, TransformerLayer};
pub use norm::Norm;
pub use stack::Stack;
