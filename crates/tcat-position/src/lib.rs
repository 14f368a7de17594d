//! Positional schemes of the Transformer catalog.
//!
//! - [`AbsolutePositions`]: a table of absolute position vectors (learned: BERT, GPT-2), with the
//!   index offset some families add (OPT and BART offset by 2).
//! - [`sinusoidal_table`]: the fixed sin/cos encoding of Vaswani et al. 2017, §3.5, in the two
//!   layouts implementations use.
//! - [`RotaryEmbedding`]: RoPE (Su et al. 2021) in the half-split and interleaved layouts, with
//!   partial rotary dimensions and linear / NTK-aware scaling.
//! - [`Alibi`]: linear biases on attention scores (Press et al. 2022), with the slopes of head
//!   counts that are not powers of two.
//! - Position-id rules: [`sequential_position_ids`], [`padding_aware_position_ids`] (RoBERTa)
//!   and [`positions_from_attention_mask`] (left-padded decoding).
//! - [`RelativePositionBias`]: T5's bucketed relative position bias (Raffel et al. 2020, §2.1).
//! - [`disentangled_bias`]: DeBERTa's content-to-position and position-to-content terms (He et
//!   al. 2021), with v2's [`log_bucket_position`].
//! - [`xl_position_bias`], [`xl_sinusoids`] and [`SegmentMemory`]: Transformer-XL's relative
//!   encoding with global biases and segment-level recurrence (Dai et al. 2019).

#![deny(missing_docs)]

mod absolute;
mod alibi;
mod deberta;
mod image_grid;
mod position_ids;
mod rotary;
mod sinusoidal;
mod t5_bias;
mod transformer_xl;

pub use absolute::AbsolutePositions;
pub use alibi::{Alibi, alibi_slopes};
pub use deberta::{LogBuckets, deberta_relative_positions, disentangled_bias, log_bucket_position};
pub use image_grid::image_grid_table;
pub use position_ids::{padding_aware_position_ids, positions_from_attention_mask, sequential_position_ids};
pub use rotary::{RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout, apply_frequency_factors, yarn_mscale};
pub use sinusoidal::{SinusoidalLayout, sinusoidal_table};
pub use t5_bias::{BucketDirection, RelativePositionBias, relative_position_bucket};
pub use transformer_xl::{SegmentMemory, xl_distance_range, xl_position_bias, xl_sinusoids};
