//! Heads as data: the outputs a model computes from its final hidden states.

use serde::{Deserialize, Serialize};

/// One head on the final hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "head")]
pub enum HeadSpec {
    /// Vocabulary logits: tied to the token table (Press & Wolf 2017) or a projection of its own.
    Lm {
        /// Whether the head is the token table.
        tied: bool,
        /// Whether a bias (Marian's `final_logits_bias`, an own head's bias) is added.
        bias: bool,
    },
    /// Vocabulary logits scaled first by `scale` (T5's `d_model^-0.5` on tied heads).
    ScaledLm {
        /// Whether the head is the token table.
        tied: bool,
        /// Factor applied to the hidden states.
        scale: f64,
    },
    /// Vocabulary logits soft-capped: `cap · tanh(logits / cap)` (Gemma 2's
    /// `final_logit_softcapping`; Gemma Team 2024, "Gemma 2: Improving Open Language Models at a
    /// Practical Size", §2).
    SoftcappedLm {
        /// Whether the head is the token table.
        tied: bool,
        /// The cap: logits stay within `(-cap, cap)`.
        cap: f64,
    },
    /// BERT's masked-LM head (dense, activation, norm, tied decoder with bias).
    Mlm,
    /// BERT's masked-LM head with its choices spelled out: `decoder(norm(act(dense(h))))` where
    /// the dense transform may lack a bias, the activation is its own, the norm is the tower's
    /// kind and the decoder may be untied or bias-free (ModernBERT's `head` and `decoder`:
    /// `classifier_bias`, `classifier_activation`, `tie_word_embeddings`, `decoder_bias`;
    /// Warner et al. 2024). [`Mlm`](Self::Mlm) is this head with biases, the tower's
    /// feed-forward activation and a tied decoder.
    MaskedLm {
        /// Whether the decoder is the token table.
        tied: bool,
        /// Whether the dense transform has a bias.
        transform_bias: bool,
        /// The activation after the transform.
        activation: crate::ActivationKind,
        /// Whether the decoder adds a vocabulary bias.
        decoder_bias: bool,
    },
    /// BERT's tanh pooler on the first token.
    Pooler,
    /// `labels` logits from the pooled first token.
    Classification {
        /// Classes.
        labels: usize,
    },
    /// One scalar per sequence from the last real token's state: the reward model and value
    /// head of RLHF (Ouyang et al. 2022, InstructGPT, §3.5).
    Reward,
    /// ALBERT's sentence-order head, ELECTRA's replaced-token head: `labels` logits per
    /// sequence or token from the pooled state.
    SentenceOrder,
    /// ELECTRA's discriminator: one logit per token.
    ReplacedToken,
    /// One text-conditioning layer of a diffusion U-Net reading the encoder's states (GLIDE,
    /// Latent Diffusion, Imagen); the U-Net itself is out of scope. Image tokens
    /// `image_width` wide, split into `heads`; the query, key and value projections have biases
    /// where `bias` says, the output projection always.
    TextConditioning {
        /// How the image tokens read the text.
        kind: ConditioningSpec,
        /// Width of the image tokens (the U-Net's channels at that layer).
        image_width: usize,
        /// Attention heads.
        heads: usize,
        /// Whether the query, key and value projections have biases.
        bias: bool,
    },
}

/// How a diffusion U-Net's image tokens read the text states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditioningSpec {
    /// Cross-attention to the text states (Latent Diffusion, Imagen).
    CrossAttention,
    /// The text projected to keys and values before the image tokens' own (GLIDE).
    ConcatenatedKeys,
}
