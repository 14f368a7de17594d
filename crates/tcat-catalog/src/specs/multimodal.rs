//! Vision and vision-language models: ViT, CLIP, CoCa and PaLM-E (DALL-E, a decoder over text
//! and image tokens, sits with the decoders).

use tcat_spec::{
    ActivationKind, ArchSpec, AttentionSpec, FeedForwardSpec, HeadSpec, Masking, NormSpec, Stacks, TowerSpec,
    VisionConnection,
};

use super::{decoders, vit_tower};

/// ViT-B/16 (Dosovitskiy et al. 2020, Table 1, 86M; `google/vit-base-patch16-224` config): 12
/// pre-LN layers, 768 wide, 12 heads, 3072 GELU FFN over 224-pixel images in 16-pixel patches
/// (196 + a class token), LayerNorm ε 1e-12, a 1000-class head.
pub(crate) fn vit_b16() -> ArchSpec {
    let tower = vit_tower(224, 16, 768, 12, 12, 3072, ActivationKind::Gelu, 1e-12);
    ArchSpec::encoder(tower, vec![HeadSpec::Classification { labels: 1000 }])
}

/// CLIP ViT-B/32 (Radford et al. 2021, §2.4 and Table 19; `openai/clip-vit-base-patch32` config):
/// a ViT-B/32 image tower (12 layers, 768 wide, 224-pixel images in 32-pixel patches) and a
/// causal text tower (12 layers, 512 wide, 8 heads, 77 positions, BPE 49408), both pre-LN with
/// `quick_gelu`, projected to a 512-wide joint space.
pub(crate) fn clip_b32() -> ArchSpec {
    let vision = vit_tower(224, 32, 768, 12, 12, 3072, ActivationKind::QuickGelu, 1e-5);
    let text = TowerSpec::decoder(49408, 512, 12, 8, 77)
        .with_feed_forward(FeedForwardSpec::plain(2048, ActivationKind::QuickGelu));
    ArchSpec {
        stacks: Stacks::DualEncoder { text, vision, projection_dim: 512 },
        heads: Vec::new(),
        tokens: tcat_spec::SpecialTokens { eos: vec![49407], pad: 49407, decoder_start: None },
    }
}

/// CoCa-Base (Yu et al. 2022, Table 1, 383M): a ViT image encoder (12 layers, 768 wide, 12
/// heads, 3072 FFN; 288-pixel images in 18-pixel patches) and a 768-wide text decoder of 12
/// unimodal then 12 multimodal layers (cross-attention to 256 attentionally pooled image
/// tokens), 64k SentencePiece vocabulary, an untied output layer. Text positions and the text
/// length (64) follow the paper's pretraining setup; norm placement is pre-LN.
pub(crate) fn coca_base() -> ArchSpec {
    let vision = vit_tower(288, 18, 768, 12, 12, 3072, ActivationKind::Gelu, 1e-6);
    let mut decoder = TowerSpec::decoder(64000, 768, 24, 12, 64)
        .with_norm(NormSpec::LayerNorm { eps: 1e-6, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(3072, ActivationKind::Gelu));
    decoder.cross_attention = Some(AttentionSpec::multi_head(768, 12, Masking::Bidirectional));
    ArchSpec {
        stacks: Stacks::VisionLanguage {
            vision,
            decoder,
            connection: VisionConnection::AttentionalPooling { queries: 256, unimodal_layers: 12 },
        },
        heads: vec![HeadSpec::Lm { tied: false, bias: false }],
        tokens: Default::default(),
    }
}

/// PaLM-E-12B (Driess et al. 2023, §6): ViT-4B (PaLI's ViT-e: 56 layers, 1792 wide, 16 heads,
/// 15360 FFN, 224-pixel images in 14-pixel patches; Chen et al. 2022, Table 1) whose tokens,
/// projected to 4096, are prefixed to PaLM-8B's input. The 562B model pairs PaLM-540B with
/// ViT-22B, whose query/key normalisation a spec cannot say yet.
pub(crate) fn palm_e_12b() -> ArchSpec {
    let vision = vit_tower(224, 14, 1792, 56, 16, 15360, ActivationKind::Gelu, 1e-6);
    let palm = decoders::palm_8b();
    let decoder = match palm.stacks {
        Stacks::Decoder { tower } => tower,
        _ => unreachable!("PaLM is a decoder"),
    };
    ArchSpec {
        stacks: Stacks::VisionLanguage { vision, decoder, connection: VisionConnection::PrefixEmbeddings },
        heads: palm.heads,
        tokens: palm.tokens,
    }
}
