//! Bidirectional encoders: BERT and its descendants (RoBERTa, XLM, XLM-R, ERNIE-THU, ALBERT,
//! DistilBERT, LaBSE, ELECTRA, DeBERTa, MiniLM) and XLNet, each at the size its paper or
//! reference checkpoint publishes.

use tcat_spec::{
    ActivationKind, ArchSpec, DisentangledTerms, EmbeddingProjection, EntityFusionSpec, FeedForwardSpec, HeadSpec,
    LayerSharing, NormSpec, PositionIdRule, PositionSpec, ScaleRule, SegmentEncoding, SpecialTokens, TowerSpec,
    XlBiases,
};

fn tokens(pad: u32, eos: &[u32]) -> SpecialTokens {
    SpecialTokens { eos: eos.to_vec(), pad, decoder_start: None }
}

/// BERT-base (Devlin et al. 2018, §3): 12 layers, 768 wide, 12 heads, 3072 exact-GELU FFN,
/// 512 learned positions, 2 segments, WordPiece 30522 (`bert-base-uncased` config); pooler and
/// MLM head.
pub(crate) fn bert_base() -> ArchSpec {
    let tower = TowerSpec::encoder(30522, 768, 12, 12, 512);
    ArchSpec::encoder(tower, vec![HeadSpec::Pooler, HeadSpec::Mlm]).with_tokens(tokens(0, &[]))
}

/// RoBERTa-base (Liu et al. 2019; `roberta-base` config): BERT-base with byte-level BPE 50265,
/// one segment, LayerNorm ε 1e-5, and position ids counted from `padding_idx + 1 = 2` (a
/// 514-row table).
pub(crate) fn roberta_base() -> ArchSpec {
    let mut tower = TowerSpec::encoder(50265, 768, 12, 12, 512)
        .with_positions(PositionSpec::Learned { ids: PositionIdRule::PaddingAware { padding_idx: 1 } })
        .with_norm(NormSpec::LayerNorm { eps: 1e-5, bias: true });
    tower.embeddings.token_types = 1;
    ArchSpec::encoder(tower, vec![HeadSpec::Pooler, HeadSpec::Mlm]).with_tokens(tokens(1, &[2]))
}

/// XLM-100 (`xlm-mlm-100-1280`; Conneau & Lample 2019, sizes from Conneau et al. 2019, Table
/// 7): 16 post-LN layers, 1280 wide, 16 heads, 5120 GELU FFN, 200k BPE, 512 learned positions,
/// an embedding LayerNorm, and a tied output layer with a bias. The 17- and 100-language models
/// are trained without language embeddings (the English and XNLI-15 models have them), so the
/// language table is empty here.
pub(crate) fn xlm_100() -> ArchSpec {
    let mut tower = TowerSpec::encoder(200000, 1280, 16, 16, 512);
    tower.embeddings.token_types = 0;
    ArchSpec::encoder(tower, vec![HeadSpec::Lm { tied: true, bias: true }]).with_tokens(tokens(2, &[1]))
}

/// XLM-RoBERTa large (Conneau et al. 2019, Table 7; `xlm-roberta-large` config): the RoBERTa
/// architecture at 24 layers, 1024 wide, 16 heads, 4096 FFN, SentencePiece 250002.
pub(crate) fn xlm_roberta_large() -> ArchSpec {
    let mut tower = TowerSpec::encoder(250002, 1024, 24, 16, 512)
        .with_positions(PositionSpec::Learned { ids: PositionIdRule::PaddingAware { padding_idx: 1 } })
        .with_norm(NormSpec::LayerNorm { eps: 1e-5, bias: true });
    tower.embeddings.token_types = 1;
    ArchSpec::encoder(tower, vec![HeadSpec::Pooler, HeadSpec::Mlm]).with_tokens(tokens(1, &[2]))
}

/// ERNIE (THU) (Zhang et al. 2019, §4.2): a BERT-base-wide T-Encoder of N = 6 layers, then
/// M = 6 K-Encoder (fusion) layers mixing 100-wide TransE entity vectors (4 entity heads) into
/// the tokens. The entity table holds the 5,040,986 Wikidata entities of the paper's knowledge
/// graph; it is frozen during pre-training.
pub(crate) fn ernie_thu() -> ArchSpec {
    let mut tower = TowerSpec::encoder(30522, 768, 6, 12, 512);
    tower.entity_fusion =
        Some(EntityFusionSpec { layers: 6, entity_dim: 100, entity_vocab: 5_040_986, entity_heads: 4 });
    ArchSpec::encoder(tower, vec![HeadSpec::Pooler, HeadSpec::Mlm]).with_tokens(tokens(0, &[]))
}

/// ALBERT-base (Lan et al. 2019, Table 1; `albert-base-v2` config): 12 layers sharing one set of
/// weights, 768 wide, 12 heads, 3072 `gelu_new` FFN, 128-wide factorised embeddings projected to
/// 768, SentencePiece 30000; pooler, MLM and sentence-order heads.
pub(crate) fn albert_base() -> ArchSpec {
    let mut tower = TowerSpec::encoder(30000, 768, 12, 12, 512)
        .with_feed_forward(FeedForwardSpec::plain(3072, ActivationKind::GeluTanh));
    tower.embeddings.projection = EmbeddingProjection::Summed { width: 128 };
    tower.sharing = LayerSharing::Groups { groups: 1 };
    ArchSpec::encoder(tower, vec![HeadSpec::Pooler, HeadSpec::Mlm, HeadSpec::SentenceOrder])
        .with_tokens(tokens(0, &[3]))
}

/// DistilBERT (Sanh et al. 2019, §3): BERT-base halved to 6 layers, without segment embeddings
/// or pooler; MLM head.
pub(crate) fn distilbert() -> ArchSpec {
    let mut tower = TowerSpec::encoder(30522, 768, 6, 12, 512);
    tower.embeddings.token_types = 0;
    ArchSpec::encoder(tower, vec![HeadSpec::Mlm]).with_tokens(tokens(0, &[]))
}

/// LaBSE (Feng et al. 2020, §3): a BERT-base encoder over a 501,153-token vocabulary whose
/// pooled [CLS] state (the tanh pooler in `setu4993/LaBSE`) is L2-normalised.
pub(crate) fn labse() -> ArchSpec {
    let tower = TowerSpec::encoder(501153, 768, 12, 12, 512);
    ArchSpec::encoder(tower, vec![HeadSpec::Pooler]).with_tokens(tokens(0, &[]))
}

/// ELECTRA-base discriminator (Clark et al. 2020, Table 1 and Appendix; `electra-base-
/// discriminator` config): BERT-base shaped (embedding width 768 = hidden, so no projection)
/// with the replaced-token-detection head.
pub(crate) fn electra_base() -> ArchSpec {
    let tower = TowerSpec::encoder(30522, 768, 12, 12, 512);
    ArchSpec::encoder(tower, vec![HeadSpec::ReplacedToken]).with_tokens(tokens(0, &[]))
}

/// DeBERTaV3-base (He et al. 2021, "DeBERTaV3", Table 1 / the DeBERTa README; `deberta-v3-base`
/// config, `model_type: deberta-v2`): 12 layers, 768 wide, 12 heads, 128,100-token vocabulary,
/// disentangled attention with 256 log buckets over relative distances up to 512, keys shared with
/// the content projections, no absolute positions, LayerNorm ε 1e-7, no segments.
pub(crate) fn deberta_v3_base() -> ArchSpec {
    let mut tower = TowerSpec::encoder(128100, 768, 12, 12, 512)
        .with_positions(PositionSpec::Deberta {
            max_relative: 512,
            buckets: Some(256),
            share_keys: true,
            absolute: false,
            terms: DisentangledTerms::Both,
            normalised: true,
        })
        .with_norm(NormSpec::LayerNorm { eps: 1e-7, bias: true });
    tower.embeddings.token_types = 0;
    // One factor of the scale per score term: content, c2p and p2c.
    tower.attention.scale = ScaleRule::Fixed { scale: 1.0 / (64.0f64 * 3.0).sqrt() };
    ArchSpec::encoder(tower, vec![HeadSpec::Mlm]).with_tokens(tokens(0, &[2]))
}

/// MiniLM L12-H384 (Wang et al. 2020, Table 3; `microsoft/MiniLM-L12-H384-uncased`): BERT with
/// 12 layers, 384 wide, 12 heads, 1536 FFN, WordPiece 30522. Sentence-transformers' MiniLM
/// models mean-pool the final states and L2-normalise them.
pub(crate) fn minilm_l12_h384() -> ArchSpec {
    let tower = TowerSpec::encoder(30522, 384, 12, 12, 512)
        .with_feed_forward(FeedForwardSpec::plain(1536, ActivationKind::Gelu));
    ArchSpec::encoder(tower, vec![HeadSpec::Pooler]).with_tokens(tokens(0, &[]))
}

/// XLNet-large (Yang et al. 2019, §3; `xlnet-large-cased` config): a Transformer-XL backbone of
/// 24 post-LN layers, 1024 wide, 16 heads of 64, bias-free projections, 4096 GELU FFN,
/// SentencePiece 32000, relative sinusoids with a 384-state memory, and a tied output layer
/// with a bias. The content stream is bidirectional (the permutation mask decides what each
/// token sees), so the tower is an encoder.
pub(crate) fn xlnet_large() -> ArchSpec {
    let mut tower = TowerSpec::encoder(32000, 1024, 24, 16, 512)
        .with_positions(PositionSpec::TransformerXl { mem_len: 384, clamp_len: 0, biases: XlBiases::PerLayer })
        .with_norm(NormSpec::LayerNorm { eps: 1e-12, bias: true });
    tower.embeddings.token_types = 0;
    tower.embeddings.segments = SegmentEncoding::Relative;
    tower.embeddings.norm = false;
    tower.attention.qkv_bias = false;
    tower.attention.out_bias = false;
    ArchSpec::encoder(tower, vec![HeadSpec::Lm { tied: true, bias: true }]).with_tokens(tokens(5, &[2]))
}
