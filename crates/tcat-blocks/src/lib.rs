//! Transformer building blocks, each written once and shared by every model in the catalog:
//! [`Norm`] (LayerNorm, RMSNorm), [`Activation`], [`FeedForward`], [`Embeddings`],
//! the mixture-of-experts [`MoeFeedForward`] with its [`Router`] (Shazeer et al. 2017; Switch,
//! Fedus et al. 2021; GLaM, Du et al. 2021; Mixtral, Jiang et al. 2024),
//! [`TransformerLayer`] with its [`Residual`] placement, the [`Stack`] of layers, and the
//! heads ([`LmHead`], [`MlmHead`], [`Pooler`], [`SentencePooling`]), and ERNIE's
//! [`EntityFusion`] layer (Zhang et al. 2019, §3.3, eq. 4–5), which mixes aligned entity
//! embeddings into the token states, CoCa's [`AttentionalPooler`] and the diffusion models'
//! [`TextConditioning`]. [`PatchEmbeddings`] is a Vision Transformer's image input
//! (Dosovitskiy et al. 2020, §3.1).
//!
//! [`Stack::with_relative_bias`] shares T5's bucketed bias between the layers (computed once per
//! forward, also when decoding with a cache), and [`Stack::forward_with_memory`] runs
//! Transformer-XL's segment-level recurrence over a `tcat_position::SegmentMemory`.
//!
//! Each block has a named configuration with documented defaults and a `load(vb, &config)`
//! constructor reading configurable weight names under a `VarBuilder` prefix ([`NormConfig`],
//! [`FeedForwardConfig`], [`EmbeddingsConfig`], [`LayerConfig`]; attention's is
//! `tcat_attention::AttentionConfig`), and every single-input block is a candle `Module`, so it
//! composes with `candle_nn::Sequential` and your own modules.
//!
//! Attention comes from `tcat-attention` and positions from `tcat-position`; this crate
//! assembles them.

#![deny(missing_docs)]

mod activation;
mod conditioning;
mod config;
mod convolution;
mod embeddings;
mod entity_fusion;
mod feed_forward;
mod heads;
mod layer;
mod moe;
mod norm;
mod patches;
mod stack;

pub use activation::Activation;
pub use conditioning::{AttentionalPooler, ConditioningKind, TextConditioning};
pub use config::{
    EmbeddingNames, EmbeddingsConfig, FeedForwardBias, FeedForwardConfig, FeedForwardKind, FeedForwardNames,
    LayerConfig, LayerNames, NormConfig, NormKind,
};
pub use convolution::TokenConvolution;
pub use embeddings::Embeddings;
pub use entity_fusion::{EntityFusion, FusionOutput};
pub use feed_forward::FeedForward;
pub use heads::{LmHead, MlmHead, Pooler, ReplacedTokenHead, SentencePooling};
pub use layer::{CrossMemory, FeedForwardBlock, Residual, SelfAttention, TransformerLayer};
pub use moe::{
    ExpertCapacity, LogitsPrecision, MoeConfig, MoeFeedForward, MoeNames, Router, RouterOutput, Routing, RoutingRule,
    load_balancing_loss, masked_load_balancing_loss,
};
pub use norm::Norm;
pub use patches::PatchEmbeddings;
pub use stack::{EncoderMemory, Stack};
