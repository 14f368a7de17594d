//! One attention for the whole Transformer catalog.
//!
//! Scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need", eq. 1):
//! `softmax(Q Kᵀ · scale + bias, masked) V`. Every model in tcat calls one contract: `q`, `k`,
//! `v` checked once ([`AttentionShape`]) and a typed [`AttentionMask`] (none, causal aligned to
//! the end of the keys, sliding window, key padding, packed segments, sparse patterns, explicit
//! masks, additive biases) whose meaning for the lengths at hand is one [`VisibilityPlan`].
//! Two kernels consume that plan: [`scaled_dot_product_attention`] materialises the scores,
//! [`fused_attention`] streams tiles with an online softmax and skips the hidden ones; an
//! [`AttentionKernel`] chooses between them, by default the fused one, with one documented
//! fallback rule ([`AttentionKernel::resolve`]).
//!
//! [`MultiHeadAttention`] wraps the kernels with the projections; multi-head, grouped-query and
//! multi-query attention are one `num_kv_heads` setting of that one module, configured by name
//! with [`AttentionConfig`] and loaded from a `VarBuilder` with [`MultiHeadAttention::load`]; it
//! is a candle `Module`. Position schemes enter it one way, a [`PositionTerm`]: a rotation
//! (rotary), an additive bias (ALiBi, T5 buckets) or a query-dependent [`ScoreTerm`]
//! (Transformer-XL's [`XlRelativePosition`], DeBERTa's [`DisentangledPosition`], yours). Each
//! layer may carry its own sliding window or [`SparsePattern`]. [`KvCache`] preallocates the
//! keys and values for incremental decoding.
//!
//! [`reference`](mod@reference) holds the plain, loop-by-loop version that the fast paths are tested against.
//!
//! Grouped-query attention with rotary positions and a sliding window, from a `VarBuilder`:
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use tcat_attention::{AttentionConfig, AttentionMask, MultiHeadAttention};
//! let vars = VarMap::new(); // or VarBuilder::from_mmaped_safetensors(&["model.safetensors"], ..)
//! let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
//! let config = AttentionConfig::new(512, 8).with_kv_heads(2).with_rotary(4096).with_sliding_window(256);
//! let attention = MultiHeadAttention::load(vb.pp("model.layers.0.self_attn"), &config).unwrap();
//! let x = Tensor::randn(0f32, 1., (1, 16, 512), &Device::Cpu).unwrap();
//! let y = attention.forward(&x, &AttentionMask::causal(), None, None).unwrap();
//! assert_eq!(y.dims(), &[1, 16, 512]);
//! ```
//!
//! The attention function alone:
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

#![deny(missing_docs)]

mod config;
mod fused;
mod kv_cache;
mod latent;
mod linear_attention;
mod mask;
mod multi_head;
mod pattern;
mod plan;
mod position_term;
mod qk_norm;
pub mod reference;
mod relative_segments;
mod schedule;
mod sdpa;
mod two_stream;

pub use config::{AttentionConfig, AttentionNames, ProjectionBias, QkvLayout, ScoreScale, Switch};
pub use fused::fused_attention;
pub use kv_cache::{KvCache, Retention};
pub use latent::{LatentAttention, LatentDims, LatentQuery};
pub use linear_attention::{LinearAttentionState, elu_feature_map, linear_attention};
pub use mask::{AttentionMask, Causality};
pub use multi_head::{AttentionKernel, MultiHeadAttention, QkvProjection};
pub use pattern::{GridAxis, SparsePattern};
pub use plan::{AttentionShape, TileCover, VisibilityPlan};
pub use position_term::{DisentangledPosition, PositionTerm, ScoreTerm, XlRelativePosition};
pub use qk_norm::{QkNorm, QkNormScope};
pub use relative_segments::RelativeSegments;
pub use schedule::{AttentionSchedule, LayerAttention};
pub use sdpa::{scaled_dot_product_attention, split_grouped_shape};
pub use two_stream::{permutation_masks, two_stream_attention};
