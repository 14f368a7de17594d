//! The builder's image towers: a spec whose tower reads [`InputKind::Patches`] becomes a
//! [`VisionModel`] (ViT, Dosovitskiy et al. 2020, §3.1), a [`Stacks::DualEncoder`] a
//! [`DualEncoderModel`] (CLIP, Radford et al. 2021, §2.4), and a [`Stacks::VisionLanguage`]
//! a [`VisionLanguageModel`] (PaLM-E's prefix embeddings, Driess et al. 2023, §3; CoCa's
//! attentional pooler and multimodal layers, Yu et al. 2022, §3.2). The layers are the same blocks every
//! other tower is built from; what is new here is the patch input and where the names are.
//!
//! One rule comes from the stack, not the names: in a dual encoder the image tower's final norm
//! is applied to the class token only (CLIP's `post_layernorm` on the pooled state); in a plain
//! image encoder it is applied to every token (ViT's `layernorm`), and a pooler head may follow.

use candle_core::Tensor;
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{AttentionalPooler, Norm, PatchEmbeddings, Pooler, Stack};
use tcat_core::{Error, Result};
use tcat_spec::{
    ArchSpec, HeadSpec, InputKind, Masking, PositionIdRule, PositionSpec, ResidualSpec, TowerSpec, VisionConnection,
};

use super::names::join;
use super::{Resolver, WeightNames, not_implemented, shared_positions, weights};
use crate::vision::{ClassPooling, DualEncoderModel, EosPooling, TextTower, VisionModel};
use crate::{ImageConnection, VisionLanguageModel};

/// Where an image tower keeps its patch input, under the tower's base prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchNames {
    /// The patch projection (a convolution): `{projection}.weight` `[hidden, channels, P, P]`,
    /// and `{projection}.bias` when the checkpoint has one (ViT; CLIP's has none).
    pub projection: &'static str,
    /// The class token tensor.
    pub class_token: &'static str,
    /// The position table tensor (one row per patch, plus the class token's).
    pub positions: &'static str,
    /// Whether the class token and the position table are stored with leading unit
    /// dimensions (ViT's `[1, 1, hidden]` and `[1, tokens, hidden]`) rather than as `[hidden]`
    /// and `[tokens, hidden]` (CLIP).
    pub batched: bool,
}

/// A dual encoder's second half: the image tower's names and the joint space's, from the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DualNames {
    /// The image tower (its [`WeightNames::base`] is its prefix).
    pub vision: &'static WeightNames,
    /// The bias-free projection of the pooled text state to the joint space.
    pub text_projection: &'static str,
    /// The bias-free projection of the pooled image state to the joint space.
    pub visual_projection: &'static str,
    /// The scalar log inverse temperature.
    pub logit_scale: &'static str,
}

/// Where a family keeps its image parts: the patch input of its image tower and, for a dual
/// encoder (the [`WeightNames`] holding this then names the text tower), the image tower and the
/// projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionNames {
    /// The patch input, under the image tower's prefix.
    pub patches: PatchNames,
    /// The image tower and the joint space of a dual encoder.
    pub dual: Option<DualNames>,
    /// The image classifier on the class token's final state, from the root (empty: none).
    pub classifier: &'static str,
    /// The towers and the connection of a vision-language model.
    pub language: Option<&'static VisionLanguageNames>,
}

/// A vision-language model's names, from the root: its image tower, its text decoder and the
/// connection between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionLanguageNames {
    /// The image tower (its [`WeightNames::base`] is its prefix).
    pub vision: &'static WeightNames,
    /// The text decoder (with its cross-attention names when it cross-attends).
    pub decoder: &'static WeightNames,
    /// The prefix projection from the image width to the token width, with a bias (PaLM-E).
    pub projection: &'static str,
    /// The attentional pooler (CoCa).
    pub pooler: PoolerNames,
}

/// Where an attentional pooler keeps its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolerNames {
    /// The learned queries, `[queries, hidden]`.
    pub queries: &'static str,
    /// The query, key and value projections and the output projection.
    pub q: &'static str,
    /// See [`q`](Self::q).
    pub k: &'static str,
    /// See [`q`](Self::q).
    pub v: &'static str,
    /// See [`q`](Self::q).
    pub out: &'static str,
    /// The norm of the queries.
    pub query_norm: &'static str,
    /// The norm of the pooled image tokens.
    pub context_norm: &'static str,
}

/// The names preset image towers use: `embed.patches`, `embed.class_token`,
/// `embed.positions.weight`; a dual encoder's image tower under `vision.`.
pub(super) const PRESET_VISION: VisionNames = VisionNames {
    patches: PatchNames {
        projection: "embed.patches",
        class_token: "embed.class_token",
        positions: "embed.positions.weight",
        batched: false,
    },
    dual: Some(DualNames {
        vision: &PRESET_VISION_TOWER,
        text_projection: "text_projection",
        visual_projection: "visual_projection",
        logit_scale: "logit_scale",
    }),
    classifier: "classifier",
    language: Some(&PRESET_VISION_LANGUAGE),
};

/// A preset vision-language model: the image tower under `vision.`, the text decoder under
/// `decoder.` (cross-attention at `layers.{i}.cross`), `image_projection` and `pooler.*`.
const PRESET_VISION_LANGUAGE: VisionLanguageNames = VisionLanguageNames {
    vision: &PRESET_VISION_TOWER,
    decoder: &super::names::PRESET_DECODER,
    projection: "image_projection",
    pooler: PoolerNames {
        queries: "pooler.queries",
        q: "pooler.q",
        k: "pooler.k",
        v: "pooler.v",
        out: "pooler.out",
        query_norm: "pooler.query_norm",
        context_norm: "pooler.context_norm",
    },
};

const PRESET_VISION_TOWER: WeightNames = WeightNames { base: &["vision"], vision: None, ..super::names::PRESET_TOWER };

/// Refuses the parts of an image tower the blocks cannot build.
fn check_image_tower(tower: &TowerSpec) -> Result<(usize, usize, usize)> {
    let InputKind::Patches { image_size, patch_size, channels } = tower.embeddings.input else {
        return Err(Error::InvalidInput("the image tower reads tokens, expected patches".into()));
    };
    if tower.cross_attention.is_some() {
        return Err(not_implemented("cross-attention layers in an image tower"));
    }
    if tower.residual == ResidualSpec::Sandwich {
        return Err(not_implemented("sandwich norms"));
    }
    if !matches!(tower.positions, PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } }) {
        return Err(not_implemented(format!("{:?} positions in an image tower (ViT's are learned)", tower.positions)));
    }
    if patch_size == 0 || image_size == 0 || channels == 0 || !image_size.is_multiple_of(patch_size) {
        return Err(Error::InvalidInput(format!(
            "image tower: image_size {image_size} is not a whole number of patch_size {patch_size} patches (and \
             num_channels {channels} must be positive)"
        )));
    }
    let tokens = (image_size / patch_size).pow(2) + 1;
    if tower.max_positions != tokens {
        return Err(Error::InvalidInput(format!(
            "image tower: max_positions {} is not the {tokens} tokens of a {image_size}-pixel image in \
             {patch_size}-pixel patches plus the class token",
            tower.max_positions
        )));
    }
    Ok((image_size, patch_size, channels))
}

/// The resolver of an image tower: the first base prefix under which its patch projection is
/// stored.
fn image_resolver<'a>(
    names: &'a WeightNames,
    patches: &PatchNames,
    weights: &'a dyn weights::WeightSource,
) -> Result<Resolver<'a>> {
    let probe = format!("{}.weight", patches.projection);
    let prefix = names.base.iter().find(|p| weights.contains(&join(p, &probe))).copied().ok_or_else(|| {
        Error::MissingTensor {
            name: names.base.iter().map(|p| join(p, &probe)).collect::<Vec<_>>().join("` or `"),
            location: weights.location(),
        }
    })?;
    Ok(Resolver { names, weights, prefix })
}

/// The patch input, the optional norm after it and the layers of an image tower, and the
/// tower's final norm when `pool_class` (a dual encoder's image tower: the norm is then kept
/// for the class token, not put in the stack).
fn image_layers(
    tower: &TowerSpec,
    r: &Resolver,
    patches: &PatchNames,
    pool_class: bool,
) -> Result<(PatchEmbeddings, Option<Norm>, Stack, Option<Norm>)> {
    let (_, patch, channels) = check_image_tower(tower)?;
    let h = tower.hidden_size;
    let dtype = r.weights.dtype();
    let weight = r.tensor(
        &r.base(&format!("{}.weight", patches.projection)),
        &[h, channels, patch, patch],
        weights::Init::Normal,
    )?;
    let bias_name = r.base(&format!("{}.bias", patches.projection));
    let bias =
        if r.weights.contains(&bias_name) { Some(r.tensor(&bias_name, &[h], weights::Init::Zeros)?) } else { None };
    let tokens = tower.max_positions;
    let (class_shape, table_shape): (Vec<usize>, Vec<usize>) =
        if patches.batched { (vec![1, 1, h], vec![1, tokens, h]) } else { (vec![h], vec![tokens, h]) };
    let class = r.tensor(&r.base(patches.class_token), &class_shape, weights::Init::Normal)?;
    let table = r.tensor(&r.base(patches.positions), &table_shape, weights::Init::Normal)?;
    let embeddings = PatchEmbeddings::new(&weight.to_dtype(dtype)?, bias, patch)?
        .with_class_token(&class)?
        .with_positions(&table)?;
    let pre_norm =
        if tower.embeddings.norm { Some(r.norm(tower.norm, &r.base(r.names.embedding_norm), h)?) } else { None };
    let class_norm =
        if pool_class && tower.final_norm { Some(r.norm(tower.norm, &r.base(r.names.final_norm), h)?) } else { None };
    let layers_only = TowerSpec { final_norm: tower.final_norm && !pool_class, ..tower.clone() };
    let shared = shared_positions(&layers_only, r)?;
    let stack = super::stack(&layers_only, r, &shared)?;
    Ok((embeddings, pre_norm, stack, class_norm))
}

/// A ViT: the image tower and its pooler head when the checkpoint has one.
pub(super) fn build_vision(
    spec: &ArchSpec,
    tower: &TowerSpec,
    names: &WeightNames,
    weights: &dyn weights::WeightSource,
) -> Result<VisionModel> {
    let vision = names.vision.ok_or_else(|| not_implemented("an image tower in a family without patch names"))?;
    let r = image_resolver(names, &vision.patches, weights)?;
    let (patches, pre_norm, stack, _) = image_layers(tower, &r, &vision.patches, false)?;
    let h = tower.hidden_size;
    let mut pooling = ClassPooling::None;
    let mut classifier = None;
    for head in &spec.heads {
        match head {
            HeadSpec::Classification { labels } if !vision.classifier.is_empty() && r.has(vision.classifier) => {
                classifier = Some(r.linear(vision.classifier, h, *labels, true)?);
            }
            HeadSpec::Classification { .. } => {}
            HeadSpec::Pooler if r.has(&r.base(names.pooler)) => {
                pooling = ClassPooling::Dense(Pooler::new(r.linear(&r.base(names.pooler), h, h, true)?));
            }
            HeadSpec::Pooler => {}
            other => return Err(not_implemented(format!("the image encoder head {other:?}"))),
        }
    }
    let model = VisionModel::new(patches, pre_norm, stack, pooling);
    Ok(match classifier {
        Some(classifier) => model.with_classifier(classifier),
        None => model,
    })
}

/// CLIP: the text tower (`names`), the image tower and the joint space (`names.vision.dual`).
pub(super) fn build_dual(
    spec: &ArchSpec,
    (text, vision, projection_dim): (&TowerSpec, &TowerSpec, usize),
    names: &WeightNames,
    weights: &dyn weights::WeightSource,
) -> Result<DualEncoderModel> {
    let (patch_names, dual) = match names.vision {
        Some(super::VisionNames { patches, dual: Some(dual), .. }) => (patches, dual),
        _ => return Err(not_implemented("a dual encoder in a family without image tower names")),
    };
    if !spec.heads.is_empty() {
        return Err(not_implemented(format!("heads on a dual encoder ({:?})", spec.heads)));
    }
    if text.embeddings.input != InputKind::Tokens {
        return Err(Error::InvalidInput("the dual encoder's text tower reads patches, expected tokens".into()));
    }
    if text.cross_attention.is_some() || text.entity_fusion.is_some() {
        return Err(not_implemented("cross-attention or entity fusion in a dual encoder's text tower"));
    }
    super::check_tower(text)?;
    // The text tower: the shared token-tower blocks.
    let r = Resolver::new(names, weights)?;
    let shared = shared_positions(text, &r)?;
    let (word, positions) = super::tables(text, &r)?;
    let embeddings = super::embeddings(text, &r, word.clone(), positions)?;
    let stack = super::stack(text, &r, &shared)?;
    let eos = spec.tokens.eos.first().copied().ok_or_else(|| {
        Error::InvalidInput(format!(
            "{}: the dual encoder's text tower needs its end-of-text id (eos_token_id) to pool",
            weights.location()
        ))
    })?;
    let causal = text.attention.masking == Masking::Causal;
    let text_tower = TextTower::new(embeddings, stack, causal, EosPooling::for_eos(eos), spec.tokens.pad);
    // The image tower.
    let rv = image_resolver(dual.vision, patch_names, weights)?;
    let (patches, pre_norm, vstack, class_norm) = image_layers(vision, &rv, patch_names, true)?;
    let class_norm = class_norm.ok_or_else(|| {
        not_implemented("a dual encoder's image tower without a final norm (CLIP pools the normed class token)")
    })?;
    let image_tower = VisionModel::new(patches, pre_norm, vstack, ClassPooling::Norm(class_norm));
    let text_projection = r.linear(dual.text_projection, text.hidden_size, projection_dim, false)?;
    let visual_projection = r.linear(dual.visual_projection, vision.hidden_size, projection_dim, false)?;
    let logit_scale: Tensor = weights.tensor(dual.logit_scale, &[], weights::Init::Zeros)?;
    Ok(DualEncoderModel::new(text_tower, image_tower, text_projection, visual_projection, logit_scale))
}

/// A vision-language model (CoCa, PaLM-E): the image tower, the connection and the text
/// decoder, the latter built as every decoder is, its layers from `unimodal_layers` on
/// cross-attending when the connection pools.
pub(super) fn build_vision_language(
    spec: &ArchSpec,
    (vision, decoder, connection): (&TowerSpec, &TowerSpec, VisionConnection),
    names: &WeightNames,
    weights: &dyn weights::WeightSource,
) -> Result<VisionLanguageModel> {
    let (patch_names, language) = match names.vision {
        Some(super::VisionNames { patches, language: Some(language), .. }) => (patches, language),
        _ => return Err(not_implemented("a vision-language model in a family without names for its towers")),
    };
    let rv = image_resolver(language.vision, patch_names, weights)?;
    let (patches, pre_norm, stack, _) = image_layers(vision, &rv, patch_names, false)?;
    let image = VisionModel::new(patches, pre_norm, stack, ClassPooling::None);
    let invalid = |what: String| Error::InvalidInput(format!("{}: architecture: {what}", weights.location()));
    let (hv, hd) = (vision.hidden_size, decoder.hidden_size);
    let (connection, cross_from) = match connection {
        VisionConnection::PrefixEmbeddings => {
            if decoder.cross_attention.is_some() {
                return Err(invalid(
                    "a prefix-embedding decoder reads the image as input; it cannot cross-attend".into(),
                ));
            }
            let r = Resolver { names: language.decoder, weights, prefix: "" };
            let projection = r.linear(language.projection, hv, decoder.embedding_width(), true)?;
            (ImageConnection::Prefix(projection), 0)
        }
        VisionConnection::AttentionalPooling { queries, unimodal_layers } => {
            if decoder.cross_attention.is_none() {
                return Err(invalid("pooled image tokens are read by cross-attention; the decoder has none".into()));
            }
            if unimodal_layers >= decoder.num_layers {
                return Err(invalid(format!(
                    "{unimodal_layers} unimodal layers leave none of the decoder's {} to cross-attend",
                    decoder.num_layers
                )));
            }
            if queries == 0 {
                return Err(invalid("the attentional pooler needs at least one query".into()));
            }
            let r = Resolver { names: language.decoder, weights, prefix: "" };
            let p = &language.pooler;
            let a = &decoder.attention;
            let qkv = QkvProjection::Separate {
                q: r.linear(p.q, hd, a.q_width(), a.qkv_bias)?,
                k: r.linear(p.k, hv, a.kv_width(), a.qkv_bias)?,
                v: r.linear(p.v, hv, a.kv_width(), a.qkv_bias)?,
            };
            let out = r.linear(p.out, a.q_width(), hd, a.out_bias)?;
            let attention = MultiHeadAttention::new(qkv, out, a.num_heads, a.num_kv_heads, a.head_dim)?
                .with_scale(a.scale_for_layer(0));
            let pooler = AttentionalPooler::new(
                r.tensor(p.queries, &[queries, hd], weights::Init::Normal)?,
                attention,
                r.norm(decoder.norm, p.query_norm, hd)?,
                r.norm(vision.norm, p.context_norm, hv)?,
            )?;
            (ImageConnection::Pooled(Box::new(pooler)), unimodal_layers)
        }
    };
    let text = super::decoder_with_cross(spec, decoder, language.decoder, weights, cross_from)?;
    VisionLanguageModel::new(image, connection, text)
}
