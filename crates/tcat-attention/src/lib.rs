//! One attention for the whole Transformer catalog.
//!
//! Scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need", eq. 1):
//! `softmax(Q Kᵀ · scale + bias, masked) V`. Every model in tcat calls the same entry point,
//! [`scaled_dot_product_attention`], with a typed [`AttentionMask`] (none, causal aligned to the
//! end of the keys, key padding, or both) and an optional additive bias from a position scheme.
//! [`MultiHeadAttention`] wraps it with the projections; multi-head, grouped-query and
//! multi-query attention are one `num_kv_heads` setting of that one module, which calls either
//! that function or the tiled [`fused_attention`] as its [`AttentionKernel`] says. [`KvCache`]
//! preallocates the keys and values for incremental decoding.
//!
//! [`reference`](mod@reference) holds the plain, loop-by-loop version that the fast paths are tested against.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use tcat_attention::{scaled_dot_product_attention, AttentionMask};
//! let dev = Device::Cpu;
//! // batch 1, 4 query heads sharing 2 key/value heads, 3 tokens, head_dim 8
//! let q = Tensor::randn(0f32, 1., (1, 4, 3, 8), &dev).unwrap();
//! let k = Tensor::randn(0f32, 1., (1, 2, 3, 8), &dev).unwrap();
//! let v = Tensor::randn(0f32, 1., (1, 2, 3, 8), &dev).unwrap();
//! let out = scaled_dot_product_attention(&q, &k, &v, &AttentionMask::causal(), 8f64.powf(-0.5)).unwrap();
//! assert_eq!(out.dims(), &[1, 4, 3, 8]);
//! ```

mod config;
mod fused;
mod kv_cache;
mod linear_attention;
mod mask;
mod multi_head;
mod pattern;
mod plan;
mod position_term;
pub mod reference;
mod schedule;
mod sdpa;
mod two_stream;

pub use config::{AttentionConfig, AttentionNames, ProjectionBias, QkvLayout, ScoreScale, Switch};
pub use fused::fused_attention;
pub use kv_cache::{KvCache, Retention};
pub use linear_attention::{LinearAttentionState, elu_feature_map, linear_attention};
pub use mask::{AttentionMask, Causality};
pub use multi_head::{AttentionKernel, MultiHeadAttention, QkvProjection};
pub use pattern::{GridAxis, SparsePattern};
pub use plan::{AttentionShape, TileCover, VisibilityPlan};
pub use position_term::{DisentangledPosition, PositionTerm, ScoreTerm, XlRelativePosition};
pub use schedule::{AttentionSchedule, LayerAttention};
pub use sdpa::{scaled_dot_product_attention, split_grouped_shape};
pub use two_stream::{permutation_masks, two_stream_attention};
