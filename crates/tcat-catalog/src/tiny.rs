//! The preset scaling rule: any spec shrunk to a model of a few hundred kilobytes that keeps
//! every architectural choice (stacks, heads, position scheme, attention grouping and schedule,
//! norm and residual placement, gating, experts and routing, sharing, fusion), for tests and
//! demos that run a catalogued architecture without its size.

use tcat_spec::{
    ArchSpec, AttentionPattern, AttentionSpec, EmbeddingProjection, EntityFusionSpec, HeadSpec, InputKind,
    LayerSharing, PositionSpec, RopeScalingSpec, RoutingRule, Stacks, TowerSpec, VisionConnection,
};

/// Hidden width of every tiny tower.
const HIDDEN: usize = 32;
/// Query heads of every tiny attention.
const HEADS: usize = 4;
/// Longest sequence of a tiny tower.
const MAX_POSITIONS: usize = 128;
/// Token table rows of a tiny text tower.
const VOCAB: usize = 256;
/// Side of a tiny image (pixels) and of its patches.
const IMAGE: usize = 32;
const PATCH: usize = 8;
/// Longest attention schedule kept whole; longer ones are replaced by their distinct patterns.
const LONGEST_SCHEDULE: usize = 8;

/// Shrinks `spec` to a tiny model with the same architecture. The rule, tower by tower:
///
/// - width 32, 4 query heads; key/value heads keep the grouping *kind*: as many as query heads
///   (multi-head), 1 (multi-query), or 2 (grouped-query, any ratio); each head is 8 wide, times the
///   original ratio of query width to model width (LaMDA's heads twice as wide stay twice as
///   wide), rounded to an even number;
/// - 2 layers, or one full period of the attention schedule and the mixture-of-experts placement
///   when that is longer; a schedule longer than 8 (DALL-E's 64) is replaced by its distinct
///   patterns in order of first appearance; ALBERT-style sharing keeps its groups (at most the
///   layers); CoCa's unimodal layers become half the decoder;
/// - FFN inner width 4 × 32 = 128, plain or gated as before, same activation and biases; experts
///   become 4 of width 128 (or top-k + 1 when that is more, 512 / (k + 1) wide) with the same
///   routing and placement;
/// - vocabulary 256, positions 128 (patch towers: 32-pixel images in 8-pixel patches, 16 patches
///   and a class token); factorised embeddings 16 wide; at most 4 languages;
/// - windows scale with the context (GPT-3's 256 of 2048 → 16 of 128); strided patterns get stride
///   8, fixed patterns blocks of 8 with the summary scaled; image grids become at most 8 × 8
///   after at most 16 text tokens, DALL-E masks follow the grid, convolution kernels at most 5;
///   T5 bias 8 buckets up to 32; DeBERTa distances up to 32 (8 buckets); Transformer-XL memory 8
///   (none stays none); rope scaling keeps its kind with original lengths at most 64;
/// - ERNIE's fusion: 1 layer, 16-wide entities, 64 entities, 2 heads; joint spaces 16 wide;
///   attentional pooling 4 queries; T5's head scale becomes 32^-½; special token ids past the
///   vocabulary become 255.
///
/// ```
/// let spec = (tcat_catalog::find("mixtral").unwrap().spec.unwrap())();
/// let small = tcat_catalog::tiny(&spec);
/// small.validate().unwrap();
/// let tower = small.single_tower().unwrap();
/// assert_eq!((tower.hidden_size, tower.attention.num_heads, tower.attention.num_kv_heads), (32, 4, 2));
/// assert_eq!(tower.feed_forward.experts.unwrap().num_experts, 4);
/// assert!(small.param_count().total < 150_000);
/// ```
pub fn tiny(spec: &ArchSpec) -> ArchSpec {
    let mut out = spec.clone();
    let last_hidden = spec.towers().last().map_or(HIDDEN, |t| t.hidden_size);
    match &mut out.stacks {
        Stacks::Encoder { tower } | Stacks::Decoder { tower } => shrink_tower(tower),
        Stacks::EncoderDecoder { encoder, decoder, .. } => {
            shrink_tower(encoder);
            shrink_tower(decoder);
        }
        Stacks::DualEncoder { text, vision, projection_dim } => {
            shrink_tower(text);
            shrink_tower(vision);
            *projection_dim = 16;
        }
        Stacks::VisionLanguage { vision, decoder, connection } => {
            shrink_tower(vision);
            shrink_tower(decoder);
            if let VisionConnection::AttentionalPooling { queries, unimodal_layers } = connection {
                *queries = 4;
                if *unimodal_layers > 0 {
                    *unimodal_layers = decoder.num_layers / 2;
                }
            }
        }
    }
    for head in &mut out.heads {
        if let HeadSpec::TextConditioning { image_width, heads, .. } = head {
            (*image_width, *heads) = (HIDDEN, HEADS);
        }
        if let HeadSpec::ScaledLm { scale, .. } = head
            && (*scale - 1.0 / (last_hidden as f64).sqrt()).abs() < 1e-12
        {
            *scale = 1.0 / (HIDDEN as f64).sqrt();
        }
    }
    let clamp = |id: &mut u32| *id = (*id).min(VOCAB as u32 - 1);
    out.tokens.eos.iter_mut().for_each(clamp);
    clamp(&mut out.tokens.pad);
    if let Some(id) = &mut out.tokens.decoder_start {
        clamp(id);
    }
    out
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Head width: 8 times the original query-width-to-model-width ratio, rounded to an even number.
fn head_dim(a: &AttentionSpec, hidden: usize) -> usize {
    let ratio = a.q_width() as f64 / hidden as f64;
    let d = (8.0 * ratio / 2.0).round() as usize * 2;
    d.clamp(2, 32)
}

fn shrink_attention(a: &mut AttentionSpec, hidden: usize, grid_cols: usize, old_max: usize) {
    a.head_dim = head_dim(a, hidden);
    a.num_kv_heads = if a.num_kv_heads == a.num_heads {
        HEADS
    } else if a.num_kv_heads == 1 {
        1
    } else {
        2
    };
    a.num_heads = HEADS;
    if let Some(latent) = &mut a.latent {
        // Latent attention: small latents, 8 + 4 query/key and 8 value features per head; the
        // attention's head width is the rotary width and every head has its own keys.
        latent.q_rank = latent.q_rank.map(|_| 16);
        (latent.kv_rank, latent.nope_dim, latent.rope_dim, latent.value_dim) = (16, 8, 4, 8);
        (a.head_dim, a.num_kv_heads) = (latent.rope_dim, HEADS);
    }
    if a.schedule.len() > LONGEST_SCHEDULE {
        let mut distinct: Vec<AttentionPattern> = Vec::new();
        for p in &a.schedule {
            if !distinct.iter().any(|q| std::mem::discriminant(q) == std::mem::discriminant(p)) {
                distinct.push(*p);
            }
        }
        a.schedule = distinct;
    }
    for p in &mut a.schedule {
        *p = match *p {
            AttentionPattern::Dense => AttentionPattern::Dense,
            AttentionPattern::Local { window } => AttentionPattern::Local {
                window: (window * MAX_POSITIONS / old_max.max(1)).clamp(2, MAX_POSITIONS / 2),
            },
            AttentionPattern::Band { radius } => {
                AttentionPattern::Band { radius: (radius * MAX_POSITIONS / old_max.max(1)).clamp(1, MAX_POSITIONS / 4) }
            }
            AttentionPattern::Strided { .. } => AttentionPattern::Strided { stride: 8 },
            AttentionPattern::Fixed { block, summary } => {
                AttentionPattern::Fixed { block: 8, summary: (summary * 8 / block.max(1)).clamp(1, 8) }
            }
            AttentionPattern::DalleRow { .. } => AttentionPattern::DalleRow { cols: grid_cols },
            AttentionPattern::DalleColumn { .. } => AttentionPattern::DalleColumn { cols: grid_cols },
            AttentionPattern::DalleConv { kernel, .. } => {
                AttentionPattern::DalleConv { cols: grid_cols, kernel: kernel.min(5) }
            }
        };
    }
}

fn shrink_tower(t: &mut TowerSpec) {
    let old_hidden = t.hidden_size;
    let old_max = t.max_positions;
    t.hidden_size = HIDDEN;
    if t.embeddings.input == InputKind::Tokens {
        t.vocab_size = VOCAB;
        t.max_positions = old_max.min(MAX_POSITIONS);
    } else if let InputKind::Patches { channels, .. } = t.embeddings.input {
        t.embeddings.input = InputKind::Patches { image_size: IMAGE, patch_size: PATCH, channels };
        t.max_positions = (IMAGE / PATCH).pow(2) + 1;
    }
    t.embeddings.projection = match t.embeddings.projection {
        EmbeddingProjection::None => EmbeddingProjection::None,
        EmbeddingProjection::Summed { .. } => EmbeddingProjection::Summed { width: 16 },
        EmbeddingProjection::SummedBeforeNorm { .. } => EmbeddingProjection::SummedBeforeNorm { width: 16 },
        EmbeddingProjection::Words { .. } => EmbeddingProjection::Words { width: 16 },
    };
    t.embeddings.languages = t.embeddings.languages.min(4);
    let mut grid_cols = 8;
    t.positions = match t.positions {
        PositionSpec::Rotary(mut rotary) => {
            rotary.scaling = match rotary.scaling {
                RopeScalingSpec::DynamicNtk { factor, original_max_positions } => {
                    RopeScalingSpec::DynamicNtk { factor, original_max_positions: original_max_positions.min(64) }
                }
                RopeScalingSpec::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => {
                    RopeScalingSpec::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_positions: original_max_positions.min(64),
                    }
                }
                RopeScalingSpec::LongRope { original_max_positions, attention_factor } => RopeScalingSpec::LongRope {
                    original_max_positions: original_max_positions.min(64),
                    attention_factor,
                },
                other => other,
            };
            PositionSpec::Rotary(rotary)
        }
        PositionSpec::T5Bias { num_buckets, max_distance } => {
            PositionSpec::T5Bias { num_buckets: num_buckets.min(8), max_distance: max_distance.min(32) }
        }
        PositionSpec::Deberta { max_relative, buckets, share_keys, absolute, terms, normalised } => {
            PositionSpec::Deberta {
                max_relative: max_relative.min(32),
                buckets: buckets.map(|b| b.min(8)),
                share_keys,
                absolute,
                terms,
                normalised,
            }
        }
        PositionSpec::TransformerXl { mem_len, clamp_len, biases } => PositionSpec::TransformerXl {
            mem_len: if mem_len > 0 { 8 } else { 0 },
            clamp_len: if clamp_len > 0 { clamp_len.min(16) } else { 0 },
            biases,
        },
        PositionSpec::ImageGrid { text_len, rows, cols } => {
            let (text_len, rows, cols) = (text_len.min(16), rows.min(8), cols.min(8));
            grid_cols = cols;
            t.max_positions = text_len + rows * cols;
            PositionSpec::ImageGrid { text_len, rows, cols }
        }
        other => other,
    };
    shrink_attention(&mut t.attention, old_hidden, grid_cols, old_max);
    if let Some(cross) = &mut t.cross_attention {
        shrink_attention(cross, old_hidden, grid_cols, old_max);
    }
    let ff = &mut t.feed_forward;
    ff.inner = 4 * HIDDEN;
    let mut period = t.attention.schedule.len().max(1);
    if let Some(moe) = &mut ff.experts {
        // Four experts of 128, or top-k + 1 narrower ones so routing still chooses (OLMoE's
        // top-8: 9 of 56).
        moe.num_experts = match moe.router.rule {
            // Group-limited routing keeps its groups: enough experts per group that the kept
            // groups still hold k, and more than k in all (DeepSeek-V3: 8 groups of 2).
            RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, .. }
            | RoutingRule::NoAuxTc { k, groups, topk_groups, .. } => {
                let per = k.div_ceil(topk_groups.max(1)).max(1);
                groups * if groups * per > k { per } else { per + 1 }
            }
            _ => (moe.active_experts() + 1).max(4).min(moe.num_experts),
        };
        // One dense layer first where the model has dense first layers (DeepSeek).
        moe.first_dense = moe.first_dense.min(1);
        moe.expert_inner = (4 * HIDDEN * 4 / moe.num_experts) / 2 * 2;
        if let Some(shared) = &mut moe.shared_expert {
            shared.inner = 4 * HIDDEN;
        }
        period = lcm(period, moe.every.max(1));
    }
    t.num_layers = if period >= 2 { period } else { 2 };
    if let LayerSharing::Groups { groups } = t.sharing {
        t.sharing = LayerSharing::Groups { groups: groups.min(t.num_layers) };
    }
    if t.entity_fusion.is_some() {
        t.entity_fusion = Some(EntityFusionSpec { layers: 1, entity_dim: 16, entity_vocab: 64, entity_heads: 2 });
    }
}
