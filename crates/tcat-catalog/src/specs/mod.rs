//! The architecture of every catalogued model at a published size, written with `tcat-spec`
//! types. Each function returns one model (the size is in its name) and says in its doc where
//! the numbers come from: the paper's table, or the reference checkpoint's `config.json` in
//! Hugging Face `transformers` when weights are public. Where a paper leaves a choice open (head
//! tying, biases, norm kind), the doc says which reading the spec takes.

pub(crate) mod beyond;
pub(crate) mod decoders;
pub(crate) mod encoders;
pub(crate) mod multimodal;
pub(crate) mod seq2seq;

use tcat_spec::{
    ActivationKind, AttentionSpec, EmbeddingSpec, FeedForwardSpec, InputKind, LayerSharing, Masking, NormSpec,
    PositionIdRule, PositionSpec, ResidualSpec, ScaleRule, TowerSpec,
};

/// Attention with `heads` query heads of `head_dim`, `kv_heads` key/value heads, no biases and
/// `1/√d` scaling.
pub(crate) fn attention(heads: usize, kv_heads: usize, head_dim: usize, masking: Masking) -> AttentionSpec {
    AttentionSpec {
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        qkv_bias: false,
        out_bias: false,
        scale: ScaleRule::InverseSqrtHeadDim,
        masking,
        schedule: Vec::new(),
        qk_norm: None,
        logit_softcap: None,
        local_rotary: None,
        latent: None,
    }
}

/// A T5-style tower (Raffel et al. 2020, §2.1): RMS norm before each block and after the stack,
/// bias-free projections, unscaled scores, the bucketed relative bias (32 buckets up to distance
/// 128) in every stack, and cross-attention in decoders.
pub(crate) fn t5_tower(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    head_dim: usize,
    feed_forward: FeedForwardSpec,
    masking: Masking,
) -> TowerSpec {
    let attention = AttentionSpec { scale: ScaleRule::One, ..attention(heads, heads, head_dim, masking) };
    let cross_attention =
        (masking == Masking::Causal).then(|| AttentionSpec { masking: Masking::Bidirectional, ..attention.clone() });
    TowerSpec {
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers: layers,
        max_positions: 512,
        embeddings: EmbeddingSpec::tokens(),
        positions: PositionSpec::T5Bias { num_buckets: 32, max_distance: 128 },
        attention,
        cross_attention,
        feed_forward,
        norm: NormSpec::RmsNorm { eps: 1e-6 },
        residual: ResidualSpec::Pre,
        final_norm: true,
        sharing: LayerSharing::None,
        entity_fusion: None,
        convolution: None,
        skip_first_attention_norm: false,
    }
}

/// A pre-LayerNorm ViT tower over `image`-pixel RGB images cut into `patch`-pixel squares, with a
/// class token, learned positions and a final norm (Dosovitskiy et al. 2020, §3.1).
#[allow(clippy::too_many_arguments)]
pub(crate) fn vit_tower(
    image: usize,
    patch: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    inner: usize,
    activation: ActivationKind,
    eps: f64,
) -> TowerSpec {
    let mut tower = TowerSpec::encoder(0, hidden, layers, heads, (image / patch).pow(2) + 1)
        .with_residual(ResidualSpec::Pre)
        .with_norm(NormSpec::LayerNorm { eps, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(inner, activation))
        .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } });
    tower.embeddings = EmbeddingSpec {
        input: InputKind::Patches { image_size: image, patch_size: patch, channels: 3 },
        ..EmbeddingSpec::tokens()
    };
    tower.final_norm = true;
    tower
}
