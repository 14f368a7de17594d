//! tcat: the Transformer catalog made executable, on candle.
//!
//! This crate re-exports the workspace under one name:
//! - [`attention`]: one scaled dot-product attention with typed masks, multi-head /
//!   grouped-query modules, KV caches;
//! - [`position`]: positional schemes;
//! - [`blocks`]: norms, feed-forward, embeddings, layers, stacks, heads;
//! - [`models`]: the catalogued families, checkpoint loading and generation;
//! - [`core`]: errors, linear layers, device and dtype parsing.
//!
//! ```
//! use tcat::attention::{AttentionMask, scaled_dot_product_attention};
//! let dev = candle_core::Device::Cpu;
//! let q = candle_core::Tensor::randn(0f32, 1., (1, 2, 4, 8), &dev).unwrap();
//! let y = scaled_dot_product_attention(&q, &q, &q, &AttentionMask::causal(), 0.35).unwrap();
//! assert_eq!(y.dims(), q.dims());
//! ```

pub use tcat_attention as attention;
pub use tcat_blocks as blocks;
pub use tcat_core as core;
pub use tcat_models as models;
pub use tcat_position as position;
