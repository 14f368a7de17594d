//! Per-layer attention kinds: models that mix dense and local layers, as GPT-3 alternates dense
//! and locally banded sparse layers (Brown et al. 2020, "Language Models are Few-Shot
//! Learners", §2.1) and GPT-Neo alternates global and local (window 256) layers.

use crate::{AttentionMask, MultiHeadAttention, SparsePattern};

/// What one layer's self-attention sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerAttention {
    /// Every earlier key (the mask the caller passes).
    Dense,
    /// Only the `window` most recent keys: a locally banded layer.
    Local {
        /// Keys visible to each query, itself included.
        window: usize,
    },
    /// Only the keys a [`SparsePattern`] allows (ANDed with the caller's mask): the Sparse
    /// Transformer's strided or fixed layers (Child et al. 2019, §4.2), DALL-E's row, column and
    /// convolutional layers (Ramesh et al. 2021, Fig. 11), GPT-3's locally banded layers.
    Sparse {
        /// The layer's pattern.
        pattern: SparsePattern,
    },
}

impl LayerAttention {
    /// Restricts `mask` to this kind: unchanged for [`Dense`](Self::Dense), a sliding window
    /// for [`Local`](Self::Local) (for code that calls the attention function directly).
    pub fn restrict(self, mask: AttentionMask) -> AttentionMask {
        match self {
            Self::Dense => mask,
            Self::Local { window } => mask.with_sliding_window(window),
            Self::Sparse { pattern } => mask.with_pattern(pattern),
        }
    }

    /// Sets this kind on an attention module.
    pub fn apply(self, attention: MultiHeadAttention) -> MultiHeadAttention {
        match self {
            Self::Dense => attention,
            Self::Local { window } => attention.with_sliding_window(window),
            Self::Sparse { pattern } => attention.with_pattern(pattern),
        }
    }
}

/// A cycle of [`LayerAttention`] kinds: layer `i` gets kind `i mod period`.
///
/// ```
/// use tcat_attention::{AttentionSchedule, LayerAttention};
/// // GPT-3: dense and locally banded layers alternate.
/// let gpt3 = AttentionSchedule::alternating(LayerAttention::Dense, LayerAttention::Local { window: 256 });
/// assert_eq!(gpt3.for_layer(0), LayerAttention::Dense);
/// assert_eq!(gpt3.for_layer(3), LayerAttention::Local { window: 256 });
/// ```
///
/// What each layer sees, over 5 tokens, with GPT-Neo's `["global", "local"]` list and a window
/// of 2: the even layers are causal, the odd ones a band of two keys.
///
/// ```
/// use tcat_attention::{AttentionMask, AttentionSchedule, LayerAttention};
/// let neo = AttentionSchedule::cycle(vec![LayerAttention::Dense, LayerAttention::Local { window: 2 }]).unwrap();
/// let grids: Vec<String> =
///     (0..3).map(|layer| neo.for_layer(layer).restrict(AttentionMask::causal()).grid(5, 5).unwrap()).collect();
/// let dense = "■····\n■■···\n■■■··\n■■■■·\n■■■■■\n";
/// let local = "■····\n■■···\n·■■··\n··■■·\n···■■\n";
/// assert_eq!(grids, [dense, local, dense]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionSchedule {
    cycle: Vec<LayerAttention>,
}

impl AttentionSchedule {
    /// The same kind in every layer.
    pub fn uniform(kind: LayerAttention) -> Self {
        Self { cycle: vec![kind] }
    }

    /// `first` in even layers, `second` in odd ones.
    pub fn alternating(first: LayerAttention, second: LayerAttention) -> Self {
        Self { cycle: vec![first, second] }
    }

    /// An explicit cycle (a whole model's list, as GPT-Neo's `attention_layers`); fails when empty.
    pub fn cycle(kinds: Vec<LayerAttention>) -> candle_core::Result<Self> {
        if kinds.is_empty() {
            candle_core::bail!("an attention schedule needs at least one layer kind");
        }
        Ok(Self { cycle: kinds })
    }

    /// The kind of layer `layer`.
    pub fn for_layer(&self, layer: usize) -> LayerAttention {
        self.cycle[layer % self.cycle.len()]
    }
}
