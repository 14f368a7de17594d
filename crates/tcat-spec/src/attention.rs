//! Attention as data: head counts and grouping (Vaswani et al. 2017 multi-head; Shazeer 2019
//! multi-query; Ainslie et al. 2023 grouped-query), the score scale, causality, and the
//! per-layer schedule of dense, local and sparse patterns (Child et al. 2019; Brown et al.
//! 2020, §2.1; Ramesh et al. 2021, Fig. 11), and multi-head latent attention (DeepSeek-AI 2024,
//! "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model", arXiv
//! 2405.04434, §2.1).

use serde::{Deserialize, Serialize};

/// How the scores `q·k` are scaled before the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum ScaleRule {
    /// `1/√head_dim` (Vaswani et al. 2017, eq. 1).
    InverseSqrtHeadDim,
    /// No scaling: T5 folds it into the initialisation; GPT-2 with `scale_attn_weights: false`.
    One,
    /// `1/√head_dim`, further divided by `layer + 1` (GPT-2's `scale_attn_by_inverse_layer_idx`).
    InverseSqrtHeadDimOverLayer,
    /// A fixed factor.
    Fixed {
        /// The factor.
        scale: f64,
    },
}

/// Which keys a query may see before any pattern applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    /// Every key (encoders).
    Bidirectional,
    /// Earlier keys and itself (decoders).
    Causal,
}

/// What one layer's self-attention sees, on top of the [`Masking`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "pattern")]
pub enum AttentionPattern {
    /// Every key the masking allows.
    Dense,
    /// The `window` most recent keys, itself included (GPT-Neo local layers, Mistral, GPT-3's
    /// locally banded layers).
    Local {
        /// Keys visible to each query.
        window: usize,
    },
    /// A symmetric window: the keys within `radius` positions before and after the query,
    /// itself included (`|i − j| ≤ radius`): the bidirectional local attention of Longformer
    /// (Beltagy et al. 2020, §3.1) and of ModernBERT's local layers (Warner et al. 2024, §2.1.1;
    /// `local_attention` 128 is a radius of 64). In a causal tower it keeps the `radius + 1`
    /// most recent keys.
    Band {
        /// Keys visible on each side of the query.
        radius: usize,
    },
    /// The Sparse Transformer's strided pattern (Child et al. 2019, §4.2).
    Strided {
        /// `l`, about √n.
        stride: usize,
    },
    /// The Sparse Transformer's fixed pattern (Child et al. 2019, §4.2).
    Fixed {
        /// `l`: positions per block.
        block: usize,
        /// `c`: summary positions at the end of each block.
        summary: usize,
    },
    /// DALL-E's row attention over an image of `cols` columns (Ramesh et al. 2021, Fig. 11).
    DalleRow {
        /// Image tokens per row.
        cols: usize,
    },
    /// DALL-E's column attention.
    DalleColumn {
        /// Image tokens per row.
        cols: usize,
    },
    /// DALL-E's convolutional attention with a `kernel × kernel` neighbourhood.
    DalleConv {
        /// Image tokens per row.
        cols: usize,
        /// Side of the neighbourhood (11 in DALL-E's last layer).
        kernel: usize,
    },
}

impl AttentionPattern {
    /// Whether the pattern is a local window ([`Local`](Self::Local) or [`Band`](Self::Band)):
    /// the layers that take [`AttentionSpec::local_rotary`] when it is set.
    ///
    /// ```
    /// use tcat_spec::AttentionPattern;
    /// assert!(AttentionPattern::Band { radius: 64 }.is_local());
    /// assert!(AttentionPattern::Local { window: 4096 }.is_local());
    /// assert!(!AttentionPattern::Dense.is_local());
    /// ```
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local { .. } | Self::Band { .. })
    }
}

/// One layer kind's attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionSpec {
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads: `num_heads` for multi-head, 1 for multi-query, between for grouped.
    pub num_kv_heads: usize,
    /// Width of one head (`hidden / num_heads` in most models, not in mT5 or Gemma).
    pub head_dim: usize,
    /// Whether the query, key and value projections have biases.
    pub qkv_bias: bool,
    /// Whether the output projection has a bias.
    pub out_bias: bool,
    /// How scores are scaled.
    pub scale: ScaleRule,
    /// Causal or bidirectional.
    pub masking: Masking,
    /// Pattern of layer `i`: `schedule[i % len]`; empty means dense everywhere.
    #[serde(default)]
    pub schedule: Vec<AttentionPattern>,
    /// RMS normalisation of queries and keys before positions (OLMoE, Qwen3, Gemma 3), if any.
    #[serde(default)]
    pub qk_norm: Option<QkNormSpec>,
    /// Soft-capping of the scaled scores, `cap · tanh(s / cap)` before masking and biases
    /// (Gemma 2's `attn_logit_softcapping`; Gemma Team 2024, "Gemma 2", §2), if any.
    #[serde(default)]
    pub logit_softcap: Option<f64>,
    /// Rotary settings of the local layers ([`AttentionPattern::is_local`]: a
    /// [`Local`](AttentionPattern::Local) or [`Band`](AttentionPattern::Band) pattern), when they
    /// differ from the tower's [`PositionSpec::Rotary`](crate::PositionSpec) (Gemma 3's local
    /// layers: `rope_local_base_freq` 10,000 and no scaling, while its global layers use
    /// `rope_theta` 1,000,000 with linear scaling); `None`: every layer uses the tower's.
    #[serde(default)]
    pub local_rotary: Option<crate::RotarySpec>,
    /// Multi-head latent attention's low-rank projections, if the layer is one (DeepSeek-V2,
    /// V3). `head_dim` is then the rotated width `rope_dim`, `num_kv_heads` equals `num_heads`,
    /// and the score scale applies to `nope_dim + rope_dim` features.
    #[serde(default)]
    pub latent: Option<LatentSpec>,
}

/// Multi-head latent attention's widths (DeepSeek-AI 2024, §2.1.1–2.1.3): keys and values from
/// one normalised latent of `kv_rank` per token, queries directly or through a normalised
/// latent of `q_rank`, and a decoupled rotary part of `rope_dim` per query head shared by the keys.
///
/// ```
/// use tcat_spec::LatentSpec;
/// // DeepSeek-V2-Lite: no query compression, a 512-wide latent and 64 rotated features.
/// let lite = LatentSpec { q_rank: None, kv_rank: 512, nope_dim: 128, rope_dim: 64, value_dim: 128, norm_eps: 1e-6 };
/// assert_eq!(lite.qk_dim(), 192);
/// assert_eq!(lite.cached_per_token(), 576);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatentSpec {
    /// Width of the query latent (`q_lora_rank`); `None` projects queries directly.
    pub q_rank: Option<usize>,
    /// Width of the key/value latent (`kv_lora_rank`).
    pub kv_rank: usize,
    /// Per-head query/key features without positions (`qk_nope_head_dim`).
    pub nope_dim: usize,
    /// Rotated per-head query features and shared key features (`qk_rope_head_dim`).
    pub rope_dim: usize,
    /// Per-head value width (`v_head_dim`).
    pub value_dim: usize,
    /// ε of the RMS norms of the latents (transformers: 1e-6 whatever `rms_norm_eps` is).
    pub norm_eps: f64,
}

impl LatentSpec {
    /// Width of one head's queries and keys, `nope_dim + rope_dim`.
    pub fn qk_dim(&self) -> usize {
        self.nope_dim + self.rope_dim
    }

    /// Numbers cached per token and layer, `kv_rank + rope_dim`.
    pub fn cached_per_token(&self) -> usize {
        self.kv_rank + self.rope_dim
    }
}

/// Over which features the query/key RMS norm of an [`AttentionSpec`] is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QkNormSpec {
    /// The whole projection, all heads together (OLMoE).
    Projection,
    /// Each head alone, one gain vector of `head_dim` shared by the heads (Qwen3).
    Head,
}

impl AttentionSpec {
    /// Multi-head attention over `hidden` split into `heads`, with biases and `1/√d` scaling.
    pub fn multi_head(hidden: usize, heads: usize, masking: Masking) -> Self {
        Self {
            num_heads: heads,
            num_kv_heads: heads,
            head_dim: hidden / heads.max(1),
            qkv_bias: true,
            out_bias: true,
            scale: ScaleRule::InverseSqrtHeadDim,
            masking,
            schedule: Vec::new(),
            qk_norm: None,
            logit_softcap: None,
            local_rotary: None,
            latent: None,
        }
    }

    /// The rotary settings of layer `layer`: [`local_rotary`](Self::local_rotary) for a local
    /// layer when set, else `tower` (the tower's own).
    ///
    /// ```
    /// use tcat_spec::*;
    /// let mut a = AttentionSpec::multi_head(64, 4, Masking::Causal);
    /// a.schedule = vec![AttentionPattern::Local { window: 4 }, AttentionPattern::Dense];
    /// a.local_rotary = Some(RotarySpec::full(10_000.0));
    /// let global = RotarySpec::full(1e6);
    /// assert_eq!(a.rotary_for_layer(0, global).base, 10_000.0);
    /// assert_eq!(a.rotary_for_layer(1, global).base, 1e6);
    /// ```
    pub fn rotary_for_layer(&self, layer: usize, tower: crate::RotarySpec) -> crate::RotarySpec {
        match (self.pattern(layer), self.local_rotary) {
            (pattern, Some(local)) if pattern.is_local() => local,
            _ => tower,
        }
    }

    /// Width of all query heads together.
    pub fn q_width(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_width(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// The pattern of layer `layer`.
    pub fn pattern(&self, layer: usize) -> AttentionPattern {
        if self.schedule.is_empty() { AttentionPattern::Dense } else { self.schedule[layer % self.schedule.len()] }
    }

    /// The score scale of layer `layer` (over `nope_dim + rope_dim` features for latent
    /// attention).
    pub fn scale_for_layer(&self, layer: usize) -> f64 {
        let width = self.latent.map_or(self.head_dim, |l| l.qk_dim());
        let inv_sqrt = 1.0 / (width as f64).sqrt();
        match self.scale {
            ScaleRule::InverseSqrtHeadDim => inv_sqrt,
            ScaleRule::One => 1.0,
            ScaleRule::InverseSqrtHeadDimOverLayer => inv_sqrt / (layer + 1) as f64,
            ScaleRule::Fixed { scale } => scale,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.head_dim == 0 {
            return Err(format!(
                "attention needs positive heads, kv heads and head_dim (found {}, {}, {})",
                self.num_heads, self.num_kv_heads, self.head_dim
            ));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "attention: num_heads ({}) must be a multiple of num_kv_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if let Some(cap) = self.logit_softcap
            && !(cap > 0.0 && cap.is_finite())
        {
            return Err(format!("attention: logit_softcap must be positive and finite (found {cap})"));
        }
        if let Some(l) = self.latent {
            if l.kv_rank == 0 || l.rope_dim == 0 || l.value_dim == 0 || l.q_rank == Some(0) {
                return Err(format!("latent attention needs positive widths, found {l:?}"));
            }
            if self.head_dim != l.rope_dim || self.num_kv_heads != self.num_heads {
                return Err(format!(
                    "latent attention: head_dim ({}) must be rope_dim ({}) and num_kv_heads ({}) num_heads ({})",
                    self.head_dim, l.rope_dim, self.num_kv_heads, self.num_heads
                ));
            }
            if self.qk_norm.is_some() || self.schedule.iter().any(|p| *p != AttentionPattern::Dense) {
                return Err("latent attention takes no query/key norm and no sparse or local pattern".into());
            }
        }
        for pattern in &self.schedule {
            let zero = match *pattern {
                AttentionPattern::Dense => false,
                AttentionPattern::Local { window } => window == 0,
                // Radius 0 is legal: each query sees itself.
                AttentionPattern::Band { .. } => false,
                AttentionPattern::Strided { stride } => stride == 0,
                AttentionPattern::Fixed { block, summary } => block == 0 || summary == 0 || summary > block,
                AttentionPattern::DalleRow { cols } | AttentionPattern::DalleColumn { cols } => cols == 0,
                AttentionPattern::DalleConv { cols, kernel } => cols == 0 || kernel == 0,
            };
            if zero {
                return Err(format!("attention schedule: {pattern:?} needs positive sizes"));
            }
        }
        Ok(())
    }
}
