//! Encoder-decoders: the original Transformer (and Marian), T5 and its descendants (mT5,
//! Flan-T5, Switch), BART and mBART; and the text encoders that condition GLIDE, Latent
//! Diffusion and Imagen (the diffusion U-Nets themselves are out of scope).

use tcat_spec::{
    ActivationKind, ArchSpec, AttentionSpec, ConditioningSpec, EmbeddingScale, EmbeddingSpec, FeedForwardKind,
    FeedForwardSpec, HeadSpec, Masking, MoeSpec, NormSpec, PositionIdRule, PositionSpec, ResidualSpec, RouterSpec,
    RoutingRule, SinusoidalLayoutSpec, SpecialTokens, Stacks, TowerSpec,
};

use super::t5_tower;

fn seq2seq(encoder: TowerSpec, decoder: TowerSpec, head: HeadSpec, tokens: SpecialTokens) -> ArchSpec {
    ArchSpec { stacks: Stacks::EncoderDecoder { encoder, decoder, shared_embeddings: true }, heads: vec![head], tokens }
}

fn t5_tokens() -> SpecialTokens {
    SpecialTokens { eos: vec![1], pad: 0, decoder_start: Some(0) }
}

/// The Transformer (big) (Vaswani et al. 2017, Table 3, 213M): 6 + 6 post-LN layers, 1024 wide,
/// 16 heads, 4096 ReLU FFN, interleaved sinusoids, word vectors scaled by √d, one 37000-token
/// BPE table shared by both stacks and the output layer. (The base model, 65M, is the same at
/// 512 wide, 8 heads, FFN 2048; Marian's OPUS models are base-sized.)
pub(crate) fn transformer_big() -> ArchSpec {
    let tower = |masking: Masking| {
        let mut tower = TowerSpec::decoder(37000, 1024, 6, 16, 1024)
            .with_positions(PositionSpec::Sinusoidal { layout: SinusoidalLayoutSpec::Interleaved })
            .with_residual(ResidualSpec::Post)
            .with_norm(NormSpec::LayerNorm { eps: 1e-6, bias: true })
            .with_feed_forward(FeedForwardSpec::plain(4096, ActivationKind::Relu))
            .with_attention(AttentionSpec::multi_head(1024, 16, masking));
        tower.embeddings.scale = EmbeddingScale::SqrtHidden;
        tower.final_norm = false;
        tower
    };
    let mut decoder = tower(Masking::Causal);
    decoder.cross_attention = Some(AttentionSpec::multi_head(1024, 16, Masking::Bidirectional));
    seq2seq(
        tower(Masking::Bidirectional),
        decoder,
        HeadSpec::Lm { tied: true, bias: false },
        SpecialTokens { eos: vec![0], pad: 1, decoder_start: Some(1) },
    )
}

/// T5-base (Raffel et al. 2020, §3.7, "220M"; `t5-base` config, v1.0): 12 + 12 layers, 768 wide,
/// 12 heads of 64, 3072 ReLU FFN, no biases, RMS norm, bucketed relative bias, unscaled scores,
/// SentencePiece 32128 shared by both stacks and the head (scaled by 768^-½ when tied).
pub(crate) fn t5_base() -> ArchSpec {
    let ff = FeedForwardSpec { bias: false, ..FeedForwardSpec::plain(3072, ActivationKind::Relu) };
    seq2seq(
        t5_tower(32128, 768, 12, 12, 64, ff, Masking::Bidirectional),
        t5_tower(32128, 768, 12, 12, 64, ff, Masking::Causal),
        HeadSpec::ScaledLm { tied: true, scale: 1.0 / (768f64).sqrt() },
        t5_tokens(),
    )
}

fn t5_v1_1(vocab: usize, hidden: usize, layers: usize, heads: usize, inner: usize) -> ArchSpec {
    let ff = FeedForwardSpec::gated(inner, ActivationKind::GeluTanh);
    seq2seq(
        t5_tower(vocab, hidden, layers, heads, 64, ff, Masking::Bidirectional),
        t5_tower(vocab, hidden, layers, heads, 64, ff, Masking::Causal),
        HeadSpec::Lm { tied: false, bias: false },
        t5_tokens(),
    )
}

/// mT5-base (Xue et al. 2021, Table 2 / §2, 580M; `google/mt5-base` config): T5 v1.1 (gated-GELU
/// FFN of 2048, untied head) at 12 + 12 layers, 768 wide, 12 heads, SentencePiece 250112.
pub(crate) fn mt5_base() -> ArchSpec {
    t5_v1_1(250112, 768, 12, 12, 2048)
}

/// Flan-T5-base (Chung et al. 2022; `google/flan-t5-base` config): T5 v1.1 base (12 + 12
/// layers, 768 wide, 12 heads, gated-GELU FFN of 2048, untied head, vocabulary 32128),
/// instruction-tuned.
pub(crate) fn flan_t5_base() -> ArchSpec {
    t5_v1_1(32128, 768, 12, 12, 2048)
}

/// Switch-Base-8 (Fedus et al. 2021; `google/switch-base-8` config): T5-base (ReLU, 12 + 12
/// layers) whose every other FFN (the second, fourth, … of each stack) is a mixture of 8 experts
/// with top-1 routing, capacity factor 1.25, a bias-free router run in float32, and jitter 0.01
/// in training.
pub(crate) fn switch_base_8() -> ArchSpec {
    let moe = MoeSpec {
        num_experts: 8,
        expert_kind: FeedForwardKind::Plain,
        expert_inner: 3072,
        router: RouterSpec {
            rule: RoutingRule::Top1Capacity { capacity_factor: 1.25 },
            bias: false,
            float32: true,
            jitter: 0.01,
        },
        every: 2,
        offset: 1,
        shared_expert: None,
        first_dense: 0,
    };
    let ff = FeedForwardSpec { bias: false, experts: Some(moe), ..FeedForwardSpec::plain(3072, ActivationKind::Relu) };
    seq2seq(
        t5_tower(32128, 768, 12, 12, 64, ff, Masking::Bidirectional),
        t5_tower(32128, 768, 12, 12, 64, ff, Masking::Causal),
        HeadSpec::ScaledLm { tied: true, scale: 1.0 / (768f64).sqrt() },
        t5_tokens(),
    )
}

fn bart(vocab: usize, hidden: usize, layers: usize, heads: usize, residual: ResidualSpec, scale: bool) -> ArchSpec {
    let tower = |masking: Masking| {
        let mut tower = TowerSpec::decoder(vocab, hidden, layers, heads, 1024)
            .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 2 } })
            .with_residual(residual)
            .with_feed_forward(FeedForwardSpec::plain(4 * hidden, ActivationKind::Gelu))
            .with_attention(AttentionSpec::multi_head(hidden, heads, masking));
        tower.embeddings = EmbeddingSpec {
            norm: true,
            scale: if scale { EmbeddingScale::SqrtHidden } else { EmbeddingScale::None },
            ..EmbeddingSpec::tokens()
        };
        tower.final_norm = residual == ResidualSpec::Pre;
        tower
    };
    let mut decoder = tower(Masking::Causal);
    decoder.cross_attention = Some(AttentionSpec::multi_head(hidden, heads, Masking::Bidirectional));
    seq2seq(
        tower(Masking::Bidirectional),
        decoder,
        HeadSpec::Lm { tied: true, bias: true },
        SpecialTokens { eos: vec![2], pad: 1, decoder_start: Some(2) },
    )
}

/// BART-base (Lewis et al. 2019; fairseq's `bart.base`, 140M; `facebook/bart-base` config): 6 + 6
/// post-LN layers, 768 wide, 12 heads, 3072 GELU FFN, learned positions offset by 2, a LayerNorm
/// on the embeddings, byte-level BPE 50265 shared by both stacks and the head (with
/// `final_logits_bias`).
pub(crate) fn bart_base() -> ArchSpec {
    bart(50265, 768, 6, 12, ResidualSpec::Post, false)
}

/// mBART-large-cc25 (Liu et al. 2020, §2.2, 610M in fairseq's README; `facebook/mbart-large-cc25`
/// config): BART-large with pre-LN layers and a final norm on each stack, 12 + 12 layers, 1024
/// wide, 16 heads, 4096 FFN, word vectors scaled by √d, SentencePiece 250027.
pub(crate) fn mbart_large_cc25() -> ArchSpec {
    bart(250027, 1024, 12, 16, ResidualSpec::Pre, true)
}

/// GLIDE's text encoder (Nichol et al. 2021, §4): "24 residual blocks of width 2048, resulting in
/// roughly 1.2B parameters", over GPT-2's 50257 BPE tokens and a 128-token context; the released
/// `glide-text2im` code makes it a bidirectional pre-LN encoder with learned positions and a
/// final norm. Heads are not published; the spec takes 32 heads of 64 as the released small
/// model does (512 wide, 8 heads). The diffusion U-Net that reads it is out of scope; one of its
/// attention layers' text conditioning is the head: the released 64×64 model's first attention
/// level (192 channels × 2 = 384, 64-channel heads) with the text states projected by
/// `encoder_kv` into keys and values before the image tokens' own. GLIDE normalises the feature
/// map with GroupNorm; the block normalises each token (LayerNorm), a stated simplification.
pub(crate) fn glide_text_encoder() -> ArchSpec {
    let mut tower = TowerSpec::encoder(50257, 2048, 24, 32, 128)
        .with_residual(ResidualSpec::Pre)
        .with_norm(NormSpec::LayerNorm { eps: 1e-5, bias: true });
    tower.embeddings = EmbeddingSpec::tokens();
    tower.final_norm = true;
    let conditioning =
        HeadSpec::TextConditioning { kind: ConditioningSpec::ConcatenatedKeys, image_width: 384, heads: 6, bias: true };
    ArchSpec::encoder(tower, vec![conditioning])
}

/// Latent Diffusion's text encoder (Rombach et al. 2022, §4.3 and the `txt2img-1p4B` config):
/// a 32-layer pre-LN encoder, 1280 wide, with 8 heads of 64 (x-transformers' defaults, so the
/// heads are narrower than the model), bias-free q/k/v, 4× GELU FFN, 77 learned positions,
/// BERT's 30522 WordPiece tokens. The U-Net is out of scope; the head is its first
/// spatial transformer's cross-attention (320 channels, 8 heads, bias-free q/k/v; the
/// `txt2img-1p4B` config).
pub(crate) fn ldm_text_encoder() -> ArchSpec {
    let mut tower = TowerSpec::encoder(30522, 1280, 32, 8, 77)
        .with_residual(ResidualSpec::Pre)
        .with_norm(NormSpec::LayerNorm { eps: 1e-5, bias: true });
    tower.attention.head_dim = 64;
    tower.attention.qkv_bias = false;
    tower.embeddings = EmbeddingSpec::tokens();
    tower.final_norm = true;
    let conditioning =
        HeadSpec::TextConditioning { kind: ConditioningSpec::CrossAttention, image_width: 320, heads: 8, bias: false };
    ArchSpec::encoder(tower, vec![conditioning])
}

/// Imagen's frozen text encoder (Saharia et al. 2022, §2.1): the encoder of T5-XXL (v1.1):
/// 24 layers, 4096 wide, 64 heads of 64, gated-GELU FFN of 10240, SentencePiece 32128. The
/// cascaded diffusion U-Nets are out of scope; the head is one of their text cross-attention
/// layers at the 64×64 base model's 512 channels (the 8 heads of 64 are an assumption: the
/// paper gives channels, not heads).
pub(crate) fn imagen_text_encoder() -> ArchSpec {
    let ff = FeedForwardSpec::gated(10240, ActivationKind::GeluTanh);
    let conditioning =
        HeadSpec::TextConditioning { kind: ConditioningSpec::CrossAttention, image_width: 512, heads: 8, bias: false };
    ArchSpec::encoder(t5_tower(32128, 4096, 24, 64, 64, ff, Masking::Bidirectional), vec![conditioning])
}
