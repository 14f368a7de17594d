//! Position schemes as data: learned tables (Devlin et al. 2018), sinusoids (Vaswani et al.
//! 2017, §3.5), rotary (Su et al. 2021), ALiBi (Press et al. 2022), T5's bucketed bias (Raffel
//! et al. 2020, §2.1), DeBERTa's disentangled relative positions (He et al. 2021), and
//! Transformer-XL's relative sinusoids with segment memory (Dai et al. 2019).

use serde::{Deserialize, Serialize};

/// How position ids are numbered for a learned table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum PositionIdRule {
    /// `offset, offset + 1, …` in every row (BERT: offset 0; OPT and BART: offset 2).
    Sequential {
        /// Added to every position id (OPT's and BART's 2).
        offset: usize,
    },
    /// RoBERTa: real tokens count from `padding_idx + 1`, padding sits at `padding_idx`.
    PaddingAware {
        /// The padding token id, which is also the padding position.
        padding_idx: u32,
    },
}

/// Where a sinusoidal table puts its sines and cosines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinusoidalLayoutSpec {
    /// `sin` at even, `cos` at odd features (the paper, XLM).
    Interleaved,
    /// All sines, then all cosines (CTRL, Marian).
    HalfSplit,
}

/// Which features of a head form the rotated pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotaryLayoutSpec {
    /// Feature `i` with `i + d/2` (GPT-NeoX, LLaMA).
    HalfSplit,
    /// Feature `2i` with `2i + 1` (GPT-J, RoFormer).
    Interleaved,
}

/// Rotary frequency scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RopeScalingSpec {
    /// Base frequencies.
    None,
    /// Position interpolation: positions divided by `factor`.
    Linear {
        /// Interpolation factor.
        factor: f64,
    },
    /// NTK-aware base scaling.
    NtkAware {
        /// Extension factor.
        factor: f64,
    },
    /// Dynamic NTK (exact within `original_max_positions`).
    DynamicNtk {
        /// Extension factor.
        factor: f64,
        /// Length up to which the base frequencies apply.
        original_max_positions: usize,
    },
    /// Llama 3.1's frequency-dependent interpolation.
    Llama3 {
        /// Interpolation factor of the low frequencies.
        factor: f64,
        /// Wavelengths above `L / low_freq_factor` are fully interpolated.
        low_freq_factor: f64,
        /// Wavelengths below `L / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// Pretraining context `L`.
        original_max_positions: usize,
    },
    /// YaRN's "NTK-by-parts" interpolation with its attention factor on the cos/sin tables
    /// (Peng et al. 2023, arXiv 2309.00071; DeepSeek-V2 and V3).
    Yarn {
        /// Extension factor.
        factor: f64,
        /// Pretraining context.
        original_max_positions: usize,
        /// Rotations above which a frequency is kept.
        beta_fast: f64,
        /// Rotations below which a frequency is fully interpolated.
        beta_slow: f64,
        /// Factor on the cos/sin tables.
        attention_factor: f64,
        /// Whether the ramp's ends are rounded to whole features.
        truncate: bool,
    },
    /// Each inverse frequency divided by a factor stored with the weights (llama.cpp's
    /// `rope_freqs.weight`, which its converter writes for Llama 3.1 scaling).
    StoredFactors,
    /// LongRoPE (Ding et al. 2024, "LongRoPE: Extending LLM Context Window Beyond 2 Million
    /// Tokens"; Phi-3's `longrope`): each inverse frequency divided by a per-frequency factor,
    /// from the short list for sequences up to `original_max_positions` and from the long list
    /// beyond, the cos/sin tables scaled by `attention_factor`. The two lists are tensors of
    /// the weights (llama.cpp's `rope_factors_short.weight` / `rope_factors_long.weight`; a
    /// `config.json` family supplies them from `short_factor` / `long_factor`).
    LongRope {
        /// The pretraining context: longer sequences use the long factors.
        original_max_positions: usize,
        /// Factor on the cos/sin tables (`√(1 + ln s / ln L)` by default, `s` the extension).
        attention_factor: f64,
    },
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RotarySpec {
    /// Fraction of each head's features that rotate (1 for LLaMA, 0.25 for GPT-NeoX).
    pub fraction: f64,
    /// The base θ.
    pub base: f64,
    /// Pairing of the features.
    pub layout: RotaryLayoutSpec,
    /// Frequency scaling.
    pub scaling: RopeScalingSpec,
}

impl RotarySpec {
    /// Every feature rotates, half-split, unscaled.
    pub fn full(base: f64) -> Self {
        Self { fraction: 1.0, base, layout: RotaryLayoutSpec::HalfSplit, scaling: RopeScalingSpec::None }
    }

    /// Rotated features of a `head_dim`-wide head as transformers computes them: the fraction
    /// of `head_dim`, rounded down, then up to an even number (an odd count rotates one more).
    pub fn rotary_dim(&self, head_dim: usize) -> usize {
        let d = (head_dim as f64 * self.fraction) as usize;
        d + d % 2
    }
}

/// The position terms of DeBERTa's disentangled attention besides content-to-content (He et
/// al. 2021, eq. 4: `pos_att_type`). Each term adds one factor to the score scale
/// `1/√(head_dim · (1 + terms))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisentangledTerms {
    /// Content-to-position and position-to-content (`["c2p", "p2c"]`, every released model).
    #[default]
    Both,
    /// Content-to-position only (`["c2p"]`).
    ContentToPosition,
    /// Position-to-content only (`["p2c"]`).
    PositionToContent,
}

impl DisentangledTerms {
    /// How many position terms join the content term.
    pub fn count(self) -> usize {
        match self {
            Self::Both => 2,
            Self::ContentToPosition | Self::PositionToContent => 1,
        }
    }

    /// Whether content-to-position (`q_i · K^r_δ`) is on.
    pub fn content_to_position(self) -> bool {
        self != Self::PositionToContent
    }

    /// Whether position-to-content (`k_j · Q^r_δ`) is on.
    pub fn position_to_content(self) -> bool {
        self != Self::ContentToPosition
    }
}

/// Where Transformer-XL's global content and position biases (`u`, `v`; Dai et al. 2019,
/// §3.3) live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XlBiases {
    /// One pair for the whole tower (the paper, Gopher).
    #[default]
    Shared,
    /// A pair per layer (XLNet's `untie_r`).
    PerLayer,
}

/// The position scheme of a tower.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scheme")]
pub enum PositionSpec {
    /// No positions (the order comes from elsewhere, e.g. ALiBi is listed separately).
    None,
    /// A learned table of `max_positions` rows added to the embeddings.
    Learned {
        /// How ids are numbered.
        ids: PositionIdRule,
    },
    /// Fixed sinusoids added to the embeddings.
    Sinusoidal {
        /// Where the sines and cosines go.
        layout: SinusoidalLayoutSpec,
    },
    /// Rotary embedding of queries and keys.
    Rotary(RotarySpec),
    /// Linear biases per head.
    Alibi,
    /// T5's bucketed relative bias, computed once per stack and shared by its layers.
    T5Bias {
        /// Buckets.
        num_buckets: usize,
        /// Distances beyond this share the last bucket.
        max_distance: usize,
    },
    /// DeBERTa's disentangled attention (content-to-position and position-to-content terms
    /// with shared relative embeddings); v2 log buckets and shared keys.
    Deberta {
        /// Relative distances kept (`max_relative_positions`).
        max_relative: usize,
        /// Log buckets (v2), or none.
        buckets: Option<usize>,
        /// Whether positions are projected by the content key/query projections (v2).
        share_keys: bool,
        /// Whether a learned absolute table is added too (`position_biased_input`).
        absolute: bool,
        /// Which position terms join content-to-content (`pos_att_type`).
        #[serde(default)]
        terms: DisentangledTerms,
        /// Whether the relative embeddings pass through a LayerNorm first (v2's
        /// `norm_rel_ebd: layer_norm`).
        #[serde(default)]
        normalised: bool,
    },
    /// Transformer-XL's relative sinusoids with global biases `u`, `v`, and a memory of the
    /// previous segment's hidden states.
    TransformerXl {
        /// States kept from the previous segment.
        mem_len: usize,
        /// Distances clamped to this (0: no clamp).
        clamp_len: usize,
        /// Where the global biases `u` and `v` live.
        #[serde(default)]
        biases: XlBiases,
    },
    /// Row and column tables for the image tokens (DALL-E), a learned table for the text.
    ImageGrid {
        /// Text positions.
        text_len: usize,
        /// Image rows.
        rows: usize,
        /// Image columns.
        cols: usize,
    },
}
