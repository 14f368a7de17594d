//! Causal decoders: the GPT line, Transformer-XL, the Sparse Transformer, the large dense and
//! mixture-of-experts language models (GPT-3, GLaM, LaMDA, PaLM, Gopher, Chinchilla, OPT, BLOOM)
//! and the open checkpoints (GPT-Neo, GPT-J, GPT-NeoX, Pythia, SantaCoder, StarCoder, LLaMA,
//! Mixtral), each at a published size.

use tcat_spec::{
    ActivationKind, ArchSpec, AttentionPattern, FeedForwardKind, FeedForwardSpec, HeadSpec, Masking, MoeSpec, NormSpec,
    PositionIdRule, PositionSpec, ResidualSpec, RotaryLayoutSpec, RotarySpec, RouterSpec, RoutingRule, ScaleRule,
    SpecialTokens, TowerSpec, XlBiases,
};

use super::attention;

fn eos(id: u32) -> SpecialTokens {
    SpecialTokens { eos: vec![id], pad: id, decoder_start: None }
}

const TIED: HeadSpec = HeadSpec::Lm { tied: true, bias: false };
const UNTIED: HeadSpec = HeadSpec::Lm { tied: false, bias: false };

/// GPT (Radford et al. 2018, §4.1; `openai-gpt` config): 12 post-LN layers, 768 wide, 12 heads,
/// 3072 GELU FFN, 512 learned positions, BPE 40478, tied output, no final norm.
pub(crate) fn gpt() -> ArchSpec {
    let mut tower = TowerSpec::decoder(40478, 768, 12, 12, 512)
        .with_residual(ResidualSpec::Post)
        .with_feed_forward(FeedForwardSpec::plain(3072, ActivationKind::Gelu));
    tower.final_norm = false;
    ArchSpec::decoder(tower, TIED)
}

/// GPT-2 small, 124M (Radford et al. 2019; `gpt2` config): 12 pre-LN layers, 768 wide, 12
/// heads, `gelu_new`, 1024 learned positions, byte-level BPE 50257, tied head.
pub(crate) fn gpt2_small() -> ArchSpec {
    ArchSpec::decoder(TowerSpec::decoder(50257, 768, 12, 12, 1024), TIED).with_tokens(eos(50256))
}

/// Transformer-XL, the 24-layer enwik8 model (Dai et al. 2019, Table 2, 277M): 1024 wide, 8
/// heads of 128, 3072 ReLU FFN, post-LN, bias-free attention projections, relative sinusoids
/// with global biases u, v and a 768-state memory (the paper's `run_enwik8_large` setting),
/// over 204 byte symbols with a tied softmax that has a bias. The WikiText-103 model (257M)
/// needs adaptive input embeddings and an adaptive softmax, which a spec cannot say yet.
pub(crate) fn transformer_xl_enwik8() -> ArchSpec {
    let mut tower = TowerSpec::decoder(204, 1024, 24, 8, 768)
        .with_positions(PositionSpec::TransformerXl { mem_len: 768, clamp_len: 0, biases: XlBiases::Shared })
        .with_residual(ResidualSpec::Post)
        .with_feed_forward(FeedForwardSpec::plain(3072, ActivationKind::Relu));
    tower.attention.qkv_bias = false;
    tower.attention.out_bias = false;
    tower.final_norm = false;
    ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: true })
}

/// The Sparse Transformer's enwik8 model (Child et al. 2019, §7.4 and Table 2, 95M): 30 pre-LN
/// layers, 512 wide, 8 heads, fixed attention pattern with stride 128 and c = 32 summary
/// positions over 12,288 bytes; positions are the paper's factorised embedding for text (a row
/// and a column table over a matrix as wide as the stride, written as an
/// [`ImageGrid`](PositionSpec::ImageGrid) with no text prefix). Head tying is not published;
/// the spec ties.
pub(crate) fn sparse_transformer_enwik8() -> ArchSpec {
    let mut tower = TowerSpec::decoder(256, 512, 30, 8, 12288)
        .with_positions(PositionSpec::ImageGrid { text_len: 0, rows: 96, cols: 128 })
        .with_feed_forward(FeedForwardSpec::plain(2048, ActivationKind::Gelu));
    tower.attention.schedule = vec![AttentionPattern::Fixed { block: 128, summary: 32 }];
    ArchSpec::decoder(tower, TIED)
}

/// GPT-3 175B (Brown et al. 2020, Table 2.1): 96 layers, 12288 wide, 96 heads of 128, 2048
/// context, GPT-2's layers and tokenizer. "Alternating dense and locally banded sparse attention
/// patterns" (§2.1) is read as `[Dense, Local { window: 256 }]`; the band width is not
/// published (256 is GPT-Neo's reading).
pub(crate) fn gpt3_175b() -> ArchSpec {
    let mut tower = TowerSpec::decoder(50257, 12288, 96, 96, 2048);
    tower.attention.schedule = vec![AttentionPattern::Dense, AttentionPattern::Local { window: 256 }];
    ArchSpec::decoder(tower, TIED).with_tokens(eos(50256))
}

/// GPT-Neo 1.3B (EleutherAI; `EleutherAI/gpt-neo-1.3B` config): 24 layers, 2048 wide, 16 heads,
/// alternating global and local (window 256) layers, bias-free q/k/v, unscaled scores,
/// `gelu_new`, 2048 learned positions, tied head.
pub(crate) fn gpt_neo_1_3b() -> ArchSpec {
    let mut tower = TowerSpec::decoder(50257, 2048, 24, 16, 2048);
    tower.attention.qkv_bias = false;
    tower.attention.scale = ScaleRule::One;
    tower.attention.schedule = vec![AttentionPattern::Dense, AttentionPattern::Local { window: 256 }];
    ArchSpec::decoder(tower, TIED).with_tokens(eos(50256))
}

/// GPT-J 6B (Wang & Komatsuzaki 2021; `EleutherAI/gpt-j-6b` config): 28 layers, 4096 wide, 16
/// heads of 256, rotary on 64 of each head's features in interleaved pairs, attention and FFN in
/// parallel from one LayerNorm, bias-free attention, 16384 `gelu_new` FFN with biases, vocabulary
/// 50400, an untied head with a bias.
pub(crate) fn gptj_6b() -> ArchSpec {
    let rotary = RotarySpec { fraction: 0.25, layout: RotaryLayoutSpec::Interleaved, ..RotarySpec::full(10000.0) };
    let mut tower = TowerSpec::decoder(50400, 4096, 28, 16, 2048)
        .with_positions(PositionSpec::Rotary(rotary))
        .with_residual(ResidualSpec::ParallelSharedNorm);
    tower.attention.qkv_bias = false;
    tower.attention.out_bias = false;
    ArchSpec::decoder(tower, HeadSpec::Lm { tied: false, bias: true }).with_tokens(eos(50256))
}

fn neox(vocab: usize, hidden: usize, layers: usize, heads: usize, activation: ActivationKind) -> ArchSpec {
    let rotary = RotarySpec { fraction: 0.25, ..RotarySpec::full(10000.0) };
    let tower = TowerSpec::decoder(vocab, hidden, layers, heads, 2048)
        .with_positions(PositionSpec::Rotary(rotary))
        .with_residual(ResidualSpec::Parallel)
        .with_feed_forward(FeedForwardSpec::plain(4 * hidden, activation));
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens { eos: vec![0], pad: 1, decoder_start: None })
}

/// GPT-NeoX-20B (Black et al. 2022, Table 1; `EleutherAI/gpt-neox-20b` config): 44 layers, 6144
/// wide, 64 heads, rotary on 25 % of each head (half-split), parallel attention and FFN with
/// separate norms, `gelu_fast`, padded vocabulary 50432, untied head.
pub(crate) fn gpt_neox_20b() -> ArchSpec {
    neox(50432, 6144, 44, 64, ActivationKind::GeluTanh)
}

/// Pythia-12B (Biderman et al. 2023, Table 1; `EleutherAI/pythia-12b` config), which Dolly-2
/// fine-tunes: the GPT-NeoX layout at 36 layers, 5120 wide, 40 heads, exact GELU, vocabulary
/// 50688.
pub(crate) fn pythia_12b() -> ArchSpec {
    neox(50688, 5120, 36, 40, ActivationKind::Gelu)
}

/// CTRL (Keskar et al. 2019, §3; `Salesforce/ctrl` config): 48 pre-LN layers, 1280 wide, 16
/// heads, 8192 ReLU FFN, half-split sinusoids, word vectors scaled by √1280, BPE 246534, a head
/// tied to the table with its own bias; 256-token training sequences.
pub(crate) fn ctrl() -> ArchSpec {
    let mut tower = TowerSpec::decoder(246534, 1280, 48, 16, 256)
        .with_positions(PositionSpec::Sinusoidal { layout: tcat_spec::SinusoidalLayoutSpec::HalfSplit })
        .with_norm(NormSpec::LayerNorm { eps: 1e-6, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(8192, ActivationKind::Relu));
    tower.embeddings.scale = tcat_spec::EmbeddingScale::SqrtHidden;
    ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: true })
}

/// The GLaM MoE layer: top-2 of 64 plain experts in every other layer, starting with the second.
fn glam_moe(inner: usize) -> MoeSpec {
    MoeSpec {
        num_experts: 64,
        expert_kind: FeedForwardKind::Plain,
        expert_inner: inner,
        router: RouterSpec {
            rule: RoutingRule::TopK { k: 2, renormalize: true },
            bias: false,
            float32: true,
            jitter: 0.0,
        },
        every: 2,
        offset: 1,
        shared_expert: None,
        first_dense: 0,
    }
}

/// GLaM (64B/64E) (Du et al. 2021, Table 4): 64 layers, 8192 wide, 128 heads of 128, 1024
/// context; dense layers use a gated-GELU FFN of 32768, every other layer is a mixture of 64 plain
/// experts of 32768 with top-2 gating; a learned relative position bias (the paper's "per-layer
/// relative positional bias"; read as T5-style buckets, since the published 1.2T / 96.6B match
/// the rest of the architecture exactly, with no room for Transformer-XL's per-layer
/// projection); SentencePiece 256k, tied head. Norm kind and biases are not published: the
/// spec takes bias-free LayerNorm and projections.
pub(crate) fn glam_64b_64e() -> ArchSpec {
    let mut tower = TowerSpec::decoder(256000, 8192, 64, 128, 1024)
        .with_attention(attention(128, 128, 128, Masking::Causal))
        .with_positions(PositionSpec::T5Bias { num_buckets: 32, max_distance: 128 })
        .with_norm(NormSpec::LayerNorm { eps: 1e-6, bias: false })
        .with_feed_forward(FeedForwardSpec::gated(32768, ActivationKind::Gelu));
    tower.feed_forward.experts = Some(glam_moe(32768));
    ArchSpec::decoder(tower, TIED)
}

/// LaMDA 137B (Thoppilan et al. 2022, Table 27 and §3): 64 layers, d_model 8192, 128 heads of
/// 128 (so the heads are twice as wide as the model), gated-GELU FFN of 65536, T5's relative
/// attention bias, SentencePiece 32k. T5 conventions (RMS norm, bias-free projections, unscaled
/// scores) and a tied head are assumed: the paper does not say.
pub(crate) fn lamda_137b() -> ArchSpec {
    let tower = TowerSpec::decoder(32000, 8192, 64, 128, 2048)
        .with_attention(tcat_spec::AttentionSpec { scale: ScaleRule::One, ..attention(128, 128, 128, Masking::Causal) })
        .with_positions(PositionSpec::T5Bias { num_buckets: 32, max_distance: 128 })
        .with_norm(NormSpec::RmsNorm { eps: 1e-6 })
        .with_feed_forward(FeedForwardSpec::gated(65536, ActivationKind::GeluTanh));
    ArchSpec::decoder(tower, TIED)
}

/// BLOOM 176B (BigScience 2022, Table 3; `bigscience/bloom` config): 70 layers, 14336 wide, 112
/// heads, ALiBi instead of position embeddings, a LayerNorm on the embeddings, `gelu` (tanh)
/// FFN of 4×, vocabulary 250880, tied head.
pub(crate) fn bloom_176b() -> ArchSpec {
    let mut tower = TowerSpec::decoder(250880, 14336, 70, 112, 2048).with_positions(PositionSpec::Alibi);
    tower.embeddings.norm = true;
    ArchSpec::decoder(tower, TIED).with_tokens(SpecialTokens { eos: vec![2], pad: 3, decoder_start: None })
}

/// PaLM 540B (Chowdhery et al. 2022, Table 1 and §2): 118 layers, 18432 wide, 48 query heads of
/// 256 sharing one key/value head (multi-query), SwiGLU FFN of 4·18432 = 73728, attention and
/// FFN in parallel from one norm, RoPE, no biases anywhere (norms included), SentencePiece
/// 256k shared with the output layer.
pub(crate) fn palm_540b() -> ArchSpec {
    palm(18432, 118, 48)
}

/// PaLM 8B (Chowdhery et al. 2022, Table 1): 32 layers, 4096 wide, 16 heads of 256; the decoder
/// of PaLM-E-12B.
pub(crate) fn palm_8b() -> ArchSpec {
    palm(4096, 32, 16)
}

fn palm(hidden: usize, layers: usize, heads: usize) -> ArchSpec {
    let tower = TowerSpec::decoder(256000, hidden, layers, heads, 2048)
        .with_attention(attention(heads, 1, 256, Masking::Causal))
        .with_positions(PositionSpec::Rotary(RotarySpec::full(10000.0)))
        .with_norm(NormSpec::LayerNorm { eps: 1e-6, bias: false })
        .with_residual(ResidualSpec::ParallelSharedNorm)
        .with_feed_forward(FeedForwardSpec::gated(4 * hidden, ActivationKind::Silu));
    ArchSpec::decoder(tower, TIED)
}

/// OPT-175B (Zhang et al. 2022, Table 1): 96 pre-LN layers, 12288 wide, 96 heads, ReLU FFN of
/// 4×, learned positions offset by 2, BPE 50272, tied head.
pub(crate) fn opt_175b() -> ArchSpec {
    let tower = TowerSpec::decoder(50272, 12288, 96, 96, 2048)
        .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 2 } })
        .with_feed_forward(FeedForwardSpec::plain(4 * 12288, ActivationKind::Relu));
    ArchSpec::decoder(tower, TIED).with_tokens(SpecialTokens { eos: vec![2], pad: 1, decoder_start: None })
}

fn deepmind(hidden: usize, layers: usize, heads: usize) -> ArchSpec {
    let tower = TowerSpec::decoder(32000, hidden, layers, heads, 2048)
        .with_attention(attention(heads, heads, 128, Masking::Causal))
        .with_positions(PositionSpec::TransformerXl { mem_len: 0, clamp_len: 0, biases: XlBiases::Shared })
        .with_norm(NormSpec::RmsNorm { eps: 1e-6 })
        .with_feed_forward(FeedForwardSpec { bias: false, ..FeedForwardSpec::plain(4 * hidden, ActivationKind::Gelu) });
    ArchSpec::decoder(tower, TIED)
}

/// Gopher 280B (Rae et al. 2021, Table 1 and §3): 80 layers, 16384 wide, 128 heads of 128,
/// RMSNorm, Transformer-XL relative positions (no memory), 2048 context, SentencePiece 32k.
/// FFN width 4·d, biases and head tying are not published: the spec takes a bias-free GELU FFN
/// and a tied head.
pub(crate) fn gopher_280b() -> ArchSpec {
    deepmind(16384, 80, 128)
}

/// Chinchilla 70B (Hoffmann et al. 2022, Table 4): Gopher's architecture at 80 layers, 8192
/// wide, 64 heads of 128.
pub(crate) fn chinchilla_70b() -> ArchSpec {
    deepmind(8192, 80, 64)
}

/// SantaCoder 1.1B (Allal et al. 2023, §4; `bigcode/gpt_bigcode-santacoder` config): GPT-2 with
/// multi-query attention, 24 layers, 2048 wide, 16 heads, 2048 context, vocabulary 49280.
pub(crate) fn santacoder() -> ArchSpec {
    let mut tower = TowerSpec::decoder(49280, 2048, 24, 16, 2048);
    tower.attention.num_kv_heads = 1;
    ArchSpec::decoder(tower, TIED).with_tokens(eos(49152))
}

/// StarCoder 15.5B (Li et al. 2023, Table 1; `bigcode/starcoder` config): the same layout at 40
/// layers, 6144 wide, 48 heads, 8192 context, vocabulary 49152.
pub(crate) fn starcoder() -> ArchSpec {
    let mut tower = TowerSpec::decoder(49152, 6144, 40, 48, 8192);
    tower.attention.num_kv_heads = 1;
    ArchSpec::decoder(tower, TIED).with_tokens(eos(0))
}

fn llama(hidden: usize, layers: usize, heads: usize, inner: usize) -> ArchSpec {
    let tower = TowerSpec::decoder(32000, hidden, layers, heads, 2048)
        .with_attention(attention(heads, heads, hidden / heads, Masking::Causal))
        .with_positions(PositionSpec::Rotary(RotarySpec::full(10000.0)))
        .with_norm(NormSpec::RmsNorm { eps: 1e-6 })
        .with_feed_forward(FeedForwardSpec::gated(inner, ActivationKind::Silu));
    ArchSpec::decoder(tower, UNTIED).with_tokens(SpecialTokens { eos: vec![2], pad: 0, decoder_start: None })
}

/// LLaMA-7B (Touvron et al. 2023, Table 2): 32 layers, 4096 wide, 32 heads, SwiGLU FFN of 11008,
/// pre-RMSNorm, half-split RoPE, no biases, SentencePiece 32000, untied head.
pub(crate) fn llama_7b() -> ArchSpec {
    llama(4096, 32, 32, 11008)
}

/// LLaMA-13B (Touvron et al. 2023, Table 2): 40 layers, 5120 wide, 40 heads, FFN 13824; Koala's
/// base model.
pub(crate) fn llama_13b() -> ArchSpec {
    llama(5120, 40, 40, 13824)
}

/// Mixtral 8x7B (Jiang et al. 2024, Table 1; `mistralai/Mixtral-8x7B-v0.1` config): 32 layers,
/// 4096 wide, 32 query heads sharing 8 key/value heads, 8 SwiGLU experts of 14336 in every layer
/// with top-2 routing (gates renormalised), RoPE θ = 1e6, 32k context. The paper's Table 1 and the
/// released config (`sliding_window: null`) use dense attention over the whole context, so the
/// catalog's "sliding window" (Mistral 7B's 4096) is not in the schedule.
pub(crate) fn mixtral_8x7b() -> ArchSpec {
    let mut spec = llama(4096, 32, 32, 14336);
    let tower = match &mut spec.stacks {
        tcat_spec::Stacks::Decoder { tower } => tower,
        _ => unreachable!("llama() builds a decoder"),
    };
    tower.max_positions = 32768;
    tower.attention.num_kv_heads = 8;
    tower.norm = NormSpec::RmsNorm { eps: 1e-5 };
    tower.positions = PositionSpec::Rotary(RotarySpec::full(1e6));
    tower.feed_forward.experts = Some(MoeSpec {
        num_experts: 8,
        expert_kind: FeedForwardKind::Gated,
        expert_inner: 14336,
        router: RouterSpec {
            rule: RoutingRule::TopK { k: 2, renormalize: true },
            bias: false,
            float32: false,
            jitter: 0.0,
        },
        every: 1,
        offset: 0,
        shared_expert: None,
        first_dense: 0,
    });
    spec
}

/// DALL-E 12B (Ramesh et al. 2021, §2.2 and Appendix B.1): 64 layers, 3968 wide, 62 heads of 64,
/// over 256 BPE text tokens (vocabulary 16384, plus 256 per-position padding tokens) followed
/// by 32×32 image tokens (codebook 8192); text positions are learned, image positions are a
/// row and a column table. Layer `i` (1-based) uses column attention when `(i − 2) mod 4 = 0`,
/// row attention otherwise, and the last layer convolutional attention (11×11). Head tying is
/// not published; the spec ties.
pub(crate) fn dalle_12b() -> ArchSpec {
    let mut tower = TowerSpec::decoder(16384 + 256 + 8192, 3968, 64, 62, 256 + 1024)
        .with_positions(PositionSpec::ImageGrid { text_len: 256, rows: 32, cols: 32 })
        .with_feed_forward(FeedForwardSpec::plain(4 * 3968, ActivationKind::Gelu));
    tower.attention.schedule = (1..=64)
        .map(|i| {
            if i == 64 {
                AttentionPattern::DalleConv { cols: 32, kernel: 11 }
            } else if (i + 2) % 4 == 0 {
                AttentionPattern::DalleColumn { cols: 32 }
            } else {
                AttentionPattern::DalleRow { cols: 32 }
            }
        })
        .collect();
    ArchSpec::decoder(tower, TIED)
}
