//! One builder: an [`ArchSpec`] plus a [`WeightSource`] resolved through a family's
//! [`WeightNames`] becomes a runnable [`Model`]. Every family, GGUF file and preset goes
//! through here; what a spec can say but the blocks cannot do yet fails with
//! [`Error::NotImplemented`] naming the part.

mod names;
mod seq2seq;
mod sizes;
mod vision;
mod weights;

pub use names::{
    CrossNames, ExpertNames, MlmNames, QkvNames, ReplacedTokenNames, Seq2seqNames, SharedExpertNames,
    TokenConvolutionNames, WeightNames, XlNames,
};

pub(crate) use sizes::available_memory;
/// Checks a spec's sizes against the weights and the machine before anything is allocated
/// (what [`build`] does first).
pub use sizes::check as check_sizes;
pub use vision::{DualNames, PatchNames, PoolerNames, VisionLanguageNames, VisionNames};
pub use weights::{Init, RandomWeights, WeightSource, WithConfigTensors};

use candle_core::Tensor;
use tcat_attention::{
    DisentangledPosition, GridAxis, LatentAttention, LatentDims, LatentQuery, MultiHeadAttention, PositionTerm, QkNorm,
    QkNormScope, QkvProjection, RelativeSegments, SparsePattern, XlRelativePosition,
};
use tcat_blocks::{
    Activation, Embeddings, EntityFusion, ExpertCapacity, FeedForward, FeedForwardBlock, LmHead, LogitsPrecision,
    MlmHead, MoeFeedForward, Norm, Pooler, ReplacedTokenHead, Residual, Router, RoutingRule, SelfAttention, Stack,
    TextConditioning, TokenConvolution, TransformerLayer,
};
use tcat_core::{Error, Linear, Result};
use tcat_position::{
    AbsolutePositions, Alibi, BucketDirection, LogBuckets, RelativePositionBias, RopeScaling, RotaryConfig,
    RotaryEmbedding, RotaryLayout, SinusoidalLayout, image_grid_table, sinusoidal_table,
};
use tcat_spec::{
    ArchSpec, AttentionPattern, ConditioningSpec, DisentangledTerms, EmbeddingProjection, EmbeddingScale,
    EntityFusionSpec, FeedForwardKind, HeadSpec, InputKind, LatentSpec, LayerSharing, Masking, MoeSpec, NormSpec,
    PositionIdRule, PositionSpec, QkNormSpec, ResidualSpec, RopeScalingSpec, RotaryLayoutSpec, SegmentEncoding,
    SinusoidalLayoutSpec, Stacks, TokenConvolutionSpec, TowerSpec, XlBiases,
};

use crate::encoder::{KnowledgeEncoder, KnowledgeLayer};
use crate::{DecoderModel, EncoderModel, Model, PositionRule};
use names::join;

fn not_implemented(what: impl Into<String>) -> Error {
    Error::NotImplemented { what: what.into() }
}

/// Builds the model `spec` describes from `weights`, named as `names` says.
///
/// Every size is checked first (overflow-checked products, the weights the spec needs against
/// what the files hold, computed tables against the available memory): a hostile config is an
/// error before anything is allocated.
pub fn build(spec: &ArchSpec, names: &WeightNames, weights: &dyn WeightSource) -> Result<Model> {
    sizes::check(spec, weights)?;
    spec.validate().map_err(|e| Error::InvalidInput(format!("{}: architecture: {e}", weights.location())))?;
    if let Some(tower) = spec.towers().last()
        && tower.embeddings.input == InputKind::Tokens
        && spec.tokens.pad as usize >= tower.vocab_size
    {
        return Err(Error::InvalidInput(format!(
            "{}: the padding token id {} is outside the vocabulary ({} tokens); check `pad_token_id`",
            weights.location(),
            spec.tokens.pad,
            tower.vocab_size
        )));
    }
    match &spec.stacks {
        Stacks::Decoder { tower } => Ok(Model::Decoder(build_decoder(spec, tower, names, weights)?)),
        Stacks::Encoder { tower } if tower.embeddings.input != InputKind::Tokens => {
            Ok(Model::Vision(vision::build_vision(spec, tower, names, weights)?))
        }
        Stacks::Encoder { tower } => Ok(Model::Encoder(build_encoder(spec, tower, names, weights)?)),
        Stacks::EncoderDecoder { encoder, decoder, shared_embeddings } => {
            Ok(Model::Seq2seq(seq2seq::build(spec, (encoder, decoder, *shared_embeddings), names, weights)?))
        }
        Stacks::DualEncoder { text, vision, projection_dim } => {
            Ok(Model::DualEncoder(vision::build_dual(spec, (text, vision, *projection_dim), names, weights)?))
        }
        Stacks::VisionLanguage { vision, decoder, connection } => Ok(Model::VisionLanguage(Box::new(
            vision::build_vision_language(spec, (vision, decoder, *connection), names, weights)?,
        ))),
    }
}

/// What a tower's layers share: its rotary table, its ALiBi slopes, its T5 relative bias
/// (computed once per stack, Raffel et al. 2020, §2.1), Transformer-XL's global biases and
/// DeBERTa's relative embeddings.
struct Shared {
    rotary: Option<RotaryEmbedding>,
    /// The local layers' own rotary table ([`tcat_spec::AttentionSpec::local_rotary`]).
    local_rotary: Option<RotaryEmbedding>,
    alibi: Option<Alibi>,
    relative_bias: Option<RelativePositionBias>,
    xl_biases: Option<(Tensor, Tensor)>,
    disentangled: Option<Disentangled>,
}

/// DeBERTa's relative embeddings (He et al. 2021, §3.1), shared by every layer: the first
/// `2·span` rows of the table, normalised where the spec says so.
struct Disentangled {
    relative: Tensor,
    buckets: Option<LogBuckets>,
    terms: DisentangledTerms,
    share_keys: bool,
}

impl Disentangled {
    fn load(tower: &TowerSpec, r: &Resolver) -> Result<Option<Self>> {
        let PositionSpec::Deberta { max_relative, buckets, terms, normalised, share_keys, .. } = tower.positions else {
            return Ok(None);
        };
        let h = tower.hidden_size;
        let span = buckets.unwrap_or(max_relative);
        if span == 0 {
            return Err(Error::InvalidInput(
                "DeBERTa positions: the relative span (position_buckets or max_relative_positions) must be positive"
                    .into(),
            ));
        }
        let name = r.base(&format!("{}.weight", r.names.relative_embeddings));
        let mut relative = r.tensor(&name, &[2 * span, h], weights::Init::Normal)?;
        if normalised {
            relative = r.norm(tower.norm, &r.base(r.names.relative_norm), h)?.forward(&relative)?;
        }
        let buckets = buckets.map(|bucket_size| LogBuckets { bucket_size, max_position: max_relative });
        Ok(Some(Self { relative, buckets, terms, share_keys }))
    }

    /// The position projections of the layer under `prefix` when keys are not shared (v1's
    /// `pos_proj` and `pos_q_proj`, v2's `pos_key_proj` and `pos_query_proj`): only those its
    /// terms use, each with a bias when the checkpoint stores one.
    fn own_projections(
        &self,
        r: &Resolver,
        prefix: &str,
        h: usize,
        width: usize,
    ) -> Result<(Option<Linear>, Option<Linear>)> {
        let projection = |name: &str, used: bool| -> Result<Option<Linear>> {
            if !used {
                return Ok(None);
            }
            let name = join(prefix, name);
            let bias = r.weights.contains(&format!("{name}.bias"));
            Ok(Some(r.linear(&name, h, width, bias)?))
        };
        Ok((
            projection(r.names.relative_query, self.terms.position_to_content())?,
            projection(r.names.relative_key, self.terms.content_to_position())?,
        ))
    }

    /// The layer's position terms: the relative embeddings through its query and key
    /// projections (v2's shared keys, or the layer's own position projections), split into heads.
    fn term(
        &self,
        q: Option<&Linear>,
        k: Option<&Linear>,
        heads: usize,
        head_dim: usize,
    ) -> Result<DisentangledPosition> {
        fn needed(projection: Option<&Linear>, on: bool) -> Result<Option<&Linear>> {
            match (on, projection) {
                (false, _) => Ok(None),
                (true, Some(p)) => Ok(Some(p)),
                (true, None) => Err(not_implemented("a DeBERTa position term without its projection")),
            }
        }
        let q = needed(q, self.terms.position_to_content())?;
        let k = needed(k, self.terms.content_to_position())?;
        Ok(DisentangledPosition::from_relative_embeddings(&self.relative, q, k, heads, head_dim, self.buckets)?)
    }
}

/// Resolves names under the base model's prefix.
struct Resolver<'a> {
    names: &'a WeightNames,
    weights: &'a dyn WeightSource,
    prefix: &'static str,
}

impl<'a> Resolver<'a> {
    fn new(names: &'a WeightNames, weights: &'a dyn WeightSource) -> Result<Self> {
        let probe = format!("{}.weight", names.word);
        let prefix = names.base.iter().find(|p| weights.contains(&join(p, &probe))).copied().ok_or_else(|| {
            Error::MissingTensor {
                name: names.base.iter().map(|p| join(p, &probe)).collect::<Vec<_>>().join("` or `"),
                location: weights.location(),
            }
        })?;
        Ok(Self { names, weights, prefix })
    }

    /// A resolver for one tower of a model with several: the base prefix is the first under
    /// which the first layer's attention output exists (a tower's token table may be a shared
    /// one stored elsewhere).
    fn for_tower(names: &'a WeightNames, weights: &'a dyn WeightSource) -> Result<Self> {
        let probe = format!("{}.{}.weight", names.layer(0), names.attention_out);
        let prefix = names.base.iter().find(|p| weights.contains(&join(p, &probe))).copied().ok_or_else(|| {
            Error::MissingTensor {
                name: names.base.iter().map(|p| join(p, &probe)).collect::<Vec<_>>().join("` or `"),
                location: weights.location(),
            }
        })?;
        Ok(Self { names, weights, prefix })
    }

    fn base(&self, name: &str) -> String {
        join(self.prefix, name)
    }

    fn has(&self, name: &str) -> bool {
        !name.is_empty() && self.weights.contains(&format!("{name}.weight"))
    }

    fn tensor(&self, name: &str, shape: &[usize], init: weights::Init) -> Result<Tensor> {
        self.weights.tensor(name, shape, init)
    }

    fn linear(&self, name: &str, input: usize, output: usize, bias: bool) -> Result<Linear> {
        self.weights.linear(name, input, output, bias, self.names.layout)
    }

    fn norm(&self, spec: NormSpec, name: &str, dim: usize) -> Result<Norm> {
        let dtype = self.weights.dtype();
        match spec {
            NormSpec::RmsNorm { eps } => {
                Ok(Norm::rms_norm(self.tensor(&format!("{name}.weight"), &[dim], weights::Init::Ones)?, eps))
            }
            // The stored weights are offsets from a unit gain: zeros are the identity.
            NormSpec::RmsNormPlusOne { eps } => {
                Ok(Norm::rms_norm_plus_one(self.tensor(&format!("{name}.weight"), &[dim], weights::Init::Zeros)?, eps)?)
            }
            NormSpec::LayerNorm { eps, bias } => {
                // Checkpoints converted from TensorFlow call them gamma and beta.
                let tf = !self.weights.contains(&format!("{name}.weight"))
                    && self.weights.contains(&format!("{name}.gamma"));
                let (w, b) = if tf { ("gamma", "beta") } else { ("weight", "bias") };
                let weight = self.tensor(&format!("{name}.{w}"), &[dim], weights::Init::Ones)?;
                let bias = if bias {
                    self.tensor(&format!("{name}.{b}"), &[dim], weights::Init::Zeros)?
                } else {
                    Tensor::zeros(dim, dtype, self.weights.device())?
                };
                Ok(Norm::layer_norm(weight, bias, eps))
            }
        }
    }
}

/// The ε of a norm spec.
fn norm_eps(norm: NormSpec) -> f64 {
    norm.eps()
}

fn activation(kind: tcat_spec::ActivationKind) -> Activation {
    match kind {
        tcat_spec::ActivationKind::Gelu => Activation::Gelu,
        tcat_spec::ActivationKind::GeluTanh => Activation::GeluTanh,
        tcat_spec::ActivationKind::QuickGelu => Activation::QuickGelu,
        tcat_spec::ActivationKind::Relu => Activation::Relu,
        tcat_spec::ActivationKind::Silu => Activation::Silu,
        tcat_spec::ActivationKind::Tanh => Activation::Tanh,
    }
}

/// Refuses the parts of a single-stack tower the blocks cannot build yet.
fn check_buildable(tower: &TowerSpec) -> Result<()> {
    if tower.cross_attention.is_some() {
        return Err(not_implemented("cross-attention layers outside an encoder-decoder"));
    }
    check_tower(tower)
}

/// Refuses the parts of any tower the blocks cannot build yet.
fn check_tower(tower: &TowerSpec) -> Result<()> {
    if tower.embeddings.input != InputKind::Tokens {
        return Err(not_implemented("patch embeddings outside an image encoder or a dual encoder's image tower"));
    }
    if tower.attention.local_rotary.is_some() && !matches!(tower.positions, PositionSpec::Rotary(_)) {
        return Err(not_implemented("per-layer rotary settings without rotary positions"));
    }
    match tower.positions {
        PositionSpec::Deberta { .. } if tower.attention.num_kv_heads != tower.attention.num_heads => {
            Err(not_implemented("DeBERTa's disentangled attention with grouped key heads"))
        }
        _ => Ok(()),
    }
}

/// The most positions a rotary table is built for. A config may claim any context length; the
/// table is built for at most this many positions (1,048,576: every published context so far),
/// and a decoder refuses longer sequences with [`Error::SequenceTooLong`] naming this cap, so a
/// hostile context length costs neither memory nor time.
pub const ROTARY_TABLE_CAP: usize = 1 << 20;

/// The longest sequence a decoder of `tower` positions: its context, or the rotary table cap.
fn decoder_limit(tower: &TowerSpec) -> (usize, Option<String>) {
    match tower.positions {
        PositionSpec::Rotary(_) if tower.max_positions > ROTARY_TABLE_CAP => (
            ROTARY_TABLE_CAP,
            Some(format!(
                "tcat's rotary table cap of {ROTARY_TABLE_CAP} positions; the model's context length is {}",
                tower.max_positions
            )),
        ),
        _ => (tower.max_positions, None),
    }
}

fn rotary(tower: &TowerSpec, r: &Resolver, spec: tcat_spec::RotarySpec) -> Result<RotaryEmbedding> {
    let head_dim = tower.attention.head_dim;
    let rotary_dim = spec.rotary_dim(head_dim);
    let layout = match (spec.layout, r.weights.rotary_rows_interleaved()) {
        (RotaryLayoutSpec::HalfSplit, false) => RotaryLayout::HalfSplit,
        (RotaryLayoutSpec::Interleaved, false) | (RotaryLayoutSpec::HalfSplit, true) => RotaryLayout::Interleaved,
        (RotaryLayoutSpec::Interleaved, true) => {
            return Err(not_implemented("interleaved rotary on rows permuted for interleaved rotary"));
        }
    };
    let scaling = match spec.scaling {
        RopeScalingSpec::None | RopeScalingSpec::StoredFactors | RopeScalingSpec::LongRope { .. } => RopeScaling::None,
        RopeScalingSpec::Linear { factor } => RopeScaling::Linear { factor },
        RopeScalingSpec::NtkAware { factor } => RopeScaling::NtkAware { factor },
        RopeScalingSpec::DynamicNtk { factor, original_max_positions } => {
            RopeScaling::DynamicNtk { factor, original_max_positions }
        }
        RopeScalingSpec::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => {
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions }
        }
        RopeScalingSpec::Yarn { factor, original_max_positions, beta_fast, beta_slow, attention_factor, truncate } => {
            RopeScaling::Yarn { factor, original_max_positions, beta_fast, beta_slow, attention_factor, truncate }
        }
    };
    let config = RotaryConfig { rotary_dim, base: spec.base, layout, scaling };
    let (dtype, device) = (r.weights.dtype(), r.weights.device());
    // transformers rotates 2·⌈d/2⌉ features of an odd count d with exponents over d.
    let exponent_dim = (head_dim as f64 * spec.fraction) as usize;
    let mut inverse = config.inverse_frequencies_over(exponent_dim)?;
    // Per-frequency factors stored with the weights, one per rotated pair.
    let factors = |name: &str| -> Result<Vec<f32>> {
        let t = r.weights.tensor(name, &[rotary_dim / 2], weights::Init::Ones)?;
        Ok(t.to_dtype(candle_core::DType::F32)?.to_device(&candle_core::Device::Cpu)?.to_vec1()?)
    };
    if spec.scaling == RopeScalingSpec::StoredFactors {
        inverse = tcat_position::apply_frequency_factors(&inverse, &factors("rope_freqs.weight")?)?;
    }
    let positions = tower.max_positions.min(ROTARY_TABLE_CAP);
    if let RopeScalingSpec::LongRope { original_max_positions, attention_factor } = spec.scaling {
        // LongRoPE: short and long per-frequency factors, switched by the sequence length.
        let table = |name: &str| -> Result<RotaryEmbedding> {
            let scaled = tcat_position::apply_frequency_factors(&inverse, &factors(name)?)?;
            Ok(RotaryEmbedding::from_inverse_frequencies(config, scaled, positions, dtype, device)?)
        };
        let short = table(LONG_ROPE_SHORT)?;
        let long = table(LONG_ROPE_LONG)?;
        return Ok(short.with_long_context(long, original_max_positions)?.with_magnitude(attention_factor)?);
    }
    Ok(RotaryEmbedding::from_inverse_frequencies(config, inverse, positions, dtype, device)?)
}

/// LongRoPE's per-frequency factors for sequences up to the pretraining context (llama.cpp's
/// tensor name; config.json families supply it from `short_factor`).
pub const LONG_ROPE_SHORT: &str = "rope_factors_short.weight";
/// LongRoPE's factors for longer sequences (from `long_factor`).
pub const LONG_ROPE_LONG: &str = "rope_factors_long.weight";

fn shared_positions(tower: &TowerSpec, r: &Resolver) -> Result<Shared> {
    Ok(Shared {
        rotary: match tower.positions {
            PositionSpec::Rotary(spec) => Some(rotary(tower, r, spec)?),
            _ => None,
        },
        local_rotary: match (tower.positions, tower.attention.local_rotary) {
            (PositionSpec::Rotary(_), Some(spec)) => Some(rotary(tower, r, spec)?),
            _ => None,
        },
        alibi: match tower.positions {
            PositionSpec::Alibi => Some(Alibi::new(tower.attention.num_heads, r.weights.dtype(), r.weights.device())?),
            _ => None,
        },
        relative_bias: match tower.positions {
            PositionSpec::T5Bias { num_buckets, max_distance } => {
                let table = r.tensor(
                    &r.base(&format!("{}.weight", r.names.relative_bias)),
                    &[num_buckets, tower.attention.num_heads],
                    weights::Init::Normal,
                )?;
                let direction = match tower.attention.masking {
                    Masking::Causal => BucketDirection::Causal,
                    Masking::Bidirectional => BucketDirection::Bidirectional,
                };
                Some(RelativePositionBias::new(table, direction, max_distance)?)
            }
            _ => None,
        },
        xl_biases: match tower.positions {
            PositionSpec::TransformerXl { biases: XlBiases::Shared, .. } => {
                let shape = [tower.attention.num_heads, tower.attention.head_dim];
                Some((
                    r.tensor(&r.base(r.names.xl.content_bias), &shape, weights::Init::Normal)?,
                    r.tensor(&r.base(r.names.xl.position_bias), &shape, weights::Init::Normal)?,
                ))
            }
            _ => None,
        },
        disentangled: Disentangled::load(tower, r)?,
    })
}

fn layer(tower: &TowerSpec, r: &Resolver, shared: &Shared, i: usize) -> Result<TransformerLayer> {
    let names = r.names;
    let prefix = r.base(&names.layer(i));
    let at = |name: &str| layer_part(&prefix, name, i);
    let (h, a) = (tower.hidden_size, &tower.attention);
    let (qw, kvw) = (a.q_width(), a.kv_width());
    if let Some(latent) = a.latent {
        return latent_layer(tower, r, shared, i, latent);
    }
    let mut disentangled = None;
    let einsum = matches!(names.qkv, QkvNames::Einsum { .. });
    let qkv = match names.qkv {
        QkvNames::Latent { .. } => return Err(not_implemented("latent-attention weight names without a latent spec")),
        QkvNames::Einsum { q, k, v } => {
            let p = |name: &str| head_split(r, a, &at(name), h, HeadSplit::IntoHeads);
            QkvProjection::stacked(p(q)?, p(k)?, p(v)?)
        }
        QkvNames::Separate { q, k, v } => {
            let (q, k) = (r.linear(&at(q), h, qw, a.qkv_bias)?, r.linear(&at(k), h, kvw, a.qkv_bias)?);
            if let Some(d) = shared.disentangled.as_ref().filter(|d| d.share_keys) {
                disentangled = Some(d.term(Some(&q), Some(&k), a.num_heads, a.head_dim)?);
            }
            QkvProjection::stacked(q, k, r.linear(&at(v), h, kvw, a.qkv_bias)?)
        }
        QkvNames::Fused(name) => QkvProjection::Fused(r.linear(&at(name), h, qw + 2 * kvw, a.qkv_bias)?),
        QkvNames::FusedPerHead(name) => QkvProjection::FusedPerHead(r.linear(&at(name), h, 3 * qw, a.qkv_bias)?),
        QkvNames::FusedPerHeadQvBias { fused, q_bias, v_bias } => {
            if a.num_kv_heads != a.num_heads {
                return Err(not_implemented("a per-head fused projection with grouped key heads"));
            }
            let weight = r.tensor(&format!("{}.weight", at(fused)), &[3 * qw, h], weights::Init::Normal)?;
            let bias = |name: &str| -> Result<Tensor> {
                Ok(r.tensor(&at(name), &[qw], weights::Init::Zeros)?.reshape((a.num_heads, a.head_dim))?)
            };
            let (q_bias, v_bias) = (bias(q_bias)?, bias(v_bias)?);
            // Per head [q_h | k_h | v_h]: the key has no bias.
            let bias = Tensor::cat(&[&q_bias, &q_bias.zeros_like()?, &v_bias], 1)?.flatten_all()?;
            QkvProjection::FusedPerHead(Linear::new(weight, Some(bias)))
        }
    };
    let out = if einsum {
        head_split(r, a, &at(names.attention_out), h, HeadSplit::FromHeads)?
    } else {
        r.linear(&at(names.attention_out), qw, h, a.out_bias)?
    };
    let mut attention =
        MultiHeadAttention::new(qkv, out, a.num_heads, a.num_kv_heads, a.head_dim)?.with_scale(a.scale_for_layer(i));
    if let Some(scope) = a.qk_norm {
        let (scope, q_gains, k_gains) = match scope {
            QkNormSpec::Projection => (QkNormScope::Projection, qw, kvw),
            QkNormSpec::Head => (QkNormScope::Head, a.head_dim, a.head_dim),
        };
        let gains = |name: &str, n: usize| r.tensor(&at(&format!("{name}.weight")), &[n], weights::Init::Ones);
        let mut norm =
            QkNorm::new(gains(names.q_norm, q_gains)?, gains(names.k_norm, k_gains)?, norm_eps(tower.norm), scope)?;
        // Gemma 3: the query/key norms follow the tower's `1 + w` convention.
        if let NormSpec::RmsNormPlusOne { .. } = tower.norm {
            norm = norm.plus_one();
        }
        attention = attention.with_qk_norm(norm)?;
    }
    if let Some(cap) = a.logit_softcap {
        attention = attention.with_logit_softcap(cap);
    }
    let local = a.pattern(i).is_local();
    match (&shared.local_rotary, &shared.rotary) {
        (Some(rotary), _) if local => attention = attention.with_rotary(rotary.clone()),
        (_, Some(rotary)) => attention = attention.with_rotary(rotary.clone()),
        (_, None) => {}
    }
    if let Some(alibi) = &shared.alibi {
        attention = attention.with_alibi(alibi.clone());
    }
    if let Some(d) = shared.disentangled.as_ref().filter(|d| !d.share_keys) {
        let (q, k) = d.own_projections(r, &prefix, h, qw)?;
        disentangled = Some(d.term(q.as_ref(), k.as_ref(), a.num_heads, a.head_dim)?);
    }
    match disentangled {
        Some(term) => attention = attention.with_position(PositionTerm::score(term)),
        None if shared.disentangled.is_some() => {
            return Err(not_implemented("DeBERTa's position terms over a fused query-key-value projection"));
        }
        None => {}
    }
    if let PositionSpec::TransformerXl { clamp_len, .. } = tower.positions {
        let xl = names.xl;
        let r_proj = if einsum {
            head_split(r, a, &at(xl.projection), h, HeadSplit::IntoHeads)?
        } else {
            r.linear(&at(xl.projection), h, qw, false)?
        };
        let (u, v) = match &shared.xl_biases {
            Some((u, v)) => (u.clone(), v.clone()),
            None => {
                let bias = |name: &str| r.tensor(&at(name), &[a.num_heads, a.head_dim], weights::Init::Normal);
                (bias(xl.content_bias)?, bias(xl.position_bias)?)
            }
        };
        let term = XlRelativePosition::new(r_proj, u, v)?.with_clamp(clamp_len);
        attention = attention.with_position(PositionTerm::score(term));
    }
    if tower.embeddings.segments == SegmentEncoding::Relative {
        let xl = names.xl;
        let segments = RelativeSegments::new(
            r.tensor(&at(xl.segment_bias), &[a.num_heads, a.head_dim], weights::Init::Normal)?,
            r.tensor(&at(xl.segment_embeddings), &[2, a.num_heads, a.head_dim], weights::Init::Normal)?,
        )?;
        attention = attention.with_position(PositionTerm::score(segments));
    }
    attention = match a.pattern(i) {
        AttentionPattern::Dense => attention,
        AttentionPattern::Local { window } => attention.with_sliding_window(window),
        AttentionPattern::Band { radius } => attention.with_pattern(SparsePattern::Band { radius }),
        sparse => match sparse_pattern(tower, sparse) {
            Some(pattern) => attention.with_pattern(pattern),
            None => attention,
        },
    };
    finish_layer(tower, r, i, &prefix, attention)
}

/// The layer's feed-forward branch, norms and cross-attention around its `attention`.
fn finish_layer(
    tower: &TowerSpec,
    r: &Resolver,
    i: usize,
    prefix: &str,
    attention: impl Into<SelfAttention>,
) -> Result<TransformerLayer> {
    let (names, h) = (r.names, tower.hidden_size);
    let at = |name: &str| layer_part(prefix, name, i);
    let feed_forward: FeedForwardBlock = match tower.feed_forward.experts {
        Some(moe) if moe.is_sparse(i) => experts(tower, r, prefix, moe)?.into(),
        _ => dense_feed_forward(tower, r, prefix, i)?.into(),
    };
    // ModernBERT's first layer reads the normalised embeddings as they are.
    let attention_norm = if i == 0 && tower.skip_first_attention_norm {
        Norm::Identity
    } else {
        r.norm(tower.norm, &at(names.attention_norm), h)?
    };
    let (ffn_norm, residual) = match tower.residual {
        ResidualSpec::Post => (r.norm(tower.norm, &at(names.ffn_norm), h)?, Residual::PostNorm),
        ResidualSpec::Pre => (r.norm(tower.norm, &at(names.ffn_norm), h)?, Residual::PreNorm),
        ResidualSpec::Parallel => (r.norm(tower.norm, &at(names.ffn_norm), h)?, Residual::Parallel),
        ResidualSpec::ParallelSharedNorm => (attention_norm.clone(), Residual::Parallel),
        ResidualSpec::Sandwich => {
            if names.attention_out_norm.is_empty() || names.ffn_out_norm.is_empty() {
                return Err(not_implemented("sandwich norms in this family's weight names"));
            }
            let norm = |name: &str| r.norm(tower.norm, &at(name), h);
            let layer = TransformerLayer::sandwich(
                attention,
                attention_norm,
                norm(names.attention_out_norm)?,
                feed_forward,
                norm(names.ffn_norm)?,
                norm(names.ffn_out_norm)?,
            );
            return match &tower.cross_attention {
                None => Ok(layer),
                Some(_) => Err(not_implemented("cross-attention in a sandwich-norm layer")),
            };
        }
    };
    let layer = TransformerLayer::new(attention, attention_norm, feed_forward, ffn_norm, residual);
    match &tower.cross_attention {
        None => Ok(layer),
        Some(spec) => {
            let (attention, norm) = cross_attention(tower, r, spec, prefix)?;
            Ok(layer.with_cross_attention(attention, norm)?)
        }
    }
}

/// A layer whose self-attention is multi-head latent attention (DeepSeek-V2, V3).
fn latent_layer(tower: &TowerSpec, r: &Resolver, shared: &Shared, i: usize, l: LatentSpec) -> Result<TransformerLayer> {
    let qkv = match r.names.qkv {
        QkvNames::Latent { .. } => r.names.qkv,
        // A preset (synthetic weights): its own latent layout.
        _ if r.weights.is_synthetic() => names::PRESET_LATENT,
        _ => return Err(not_implemented("latent attention in a family without latent-attention weight names")),
    };
    let QkvNames::Latent { q, q_down, q_norm, q_up, kv_down, kv_norm, kv_up, k_up, v_up } = qkv else {
        return Err(not_implemented("latent attention in a family without latent-attention weight names"));
    };
    let prefix = r.base(&r.names.layer(i));
    let at = |name: &str| layer_part(&prefix, name, i);
    let (h, a) = (tower.hidden_size, &tower.attention);
    if !matches!(tower.positions, PositionSpec::Rotary(_) | PositionSpec::None) {
        return Err(not_implemented(format!("latent attention with {:?} positions", tower.positions)));
    }
    let q_out = a.num_heads * l.qk_dim();
    let query = match l.q_rank {
        None => LatentQuery::Direct(r.linear(&at(q), h, q_out, false)?),
        Some(rank) => LatentQuery::LowRank {
            down: r.linear(&at(q_down), h, rank, a.qkv_bias)?,
            gain: r.tensor(&at(&format!("{q_norm}.weight")), &[rank], weights::Init::Ones)?,
            up: r.linear(&at(q_up), rank, q_out, false)?,
        },
    };
    let dims = LatentDims {
        heads: a.num_heads,
        nope_dim: l.nope_dim,
        rope_dim: l.rope_dim,
        value_dim: l.value_dim,
        rank: l.kv_rank,
    };
    // The key/value up-projection is dense (decoding absorbs its blocks into the queries):
    // `kv_up` as stored, or joined from llama.cpp's per-head halves.
    let kv_up_weight = format!("{}.weight", at(kv_up));
    let kv_up = if k_up.is_empty() || r.weights.contains(&kv_up_weight) {
        let shape = [a.num_heads * (l.nope_dim + l.value_dim), l.kv_rank];
        r.tensor(&kv_up_weight, &shape, weights::Init::Normal)?
    } else {
        let keys =
            r.tensor(&format!("{}.weight", at(k_up)), &[a.num_heads, l.kv_rank, l.nope_dim], weights::Init::Normal)?;
        let values =
            r.tensor(&format!("{}.weight", at(v_up)), &[a.num_heads, l.value_dim, l.kv_rank], weights::Init::Normal)?;
        // Per head, the key rows `keysᵀ` `[nope_dim, rank]`, then the value rows.
        Tensor::cat(&[&keys.transpose(1, 2)?, &values], 1)?
            .reshape((a.num_heads * (l.nope_dim + l.value_dim), l.kv_rank))?
            .contiguous()?
    };
    let mut attention = LatentAttention::new(
        query,
        r.linear(&at(kv_down), h, l.kv_rank + l.rope_dim, a.qkv_bias)?,
        r.tensor(&at(&format!("{kv_norm}.weight")), &[l.kv_rank], weights::Init::Ones)?,
        Linear::new(kv_up, None),
        r.linear(&at(r.names.attention_out), a.num_heads * l.value_dim, h, a.out_bias)?,
        dims,
        l.norm_eps,
    )?
    .with_scale(a.scale_for_layer(i));
    if let Some(rotary) = &shared.rotary {
        attention = attention.with_rotary(rotary.clone());
    }
    finish_layer(tower, r, i, &prefix, attention)
}

/// Which way an einsum parameter `[hidden, heads, head_dim]` projects.
#[derive(Clone, Copy)]
enum HeadSplit {
    /// `hidden → heads · head_dim` (XLNet's `q`, `k`, `v`, `r`).
    IntoHeads,
    /// `heads · head_dim → hidden` (XLNet's `o`).
    FromHeads,
}

/// A bias-free projection stored as an einsum parameter `[hidden, heads, head_dim]` named
/// without `.weight` (XLNet's `rel_attn.q`, ...), as a [`Linear`].
fn head_split(
    r: &Resolver,
    a: &tcat_spec::AttentionSpec,
    name: &str,
    hidden: usize,
    direction: HeadSplit,
) -> Result<Linear> {
    let stored = r.tensor(name, &[hidden, a.num_heads, a.head_dim], weights::Init::Normal)?;
    let matrix = stored.reshape((hidden, a.q_width()))?; // [hidden, heads · head_dim]
    let weight = match direction {
        HeadSplit::IntoHeads => matrix.t()?.contiguous()?,
        HeadSplit::FromHeads => matrix,
    };
    Ok(Linear::new(weight, None))
}

/// The cross-attention of the decoder layer under `prefix` and its norm: queries from the
/// layer, keys and values from the encoder output (as wide as the decoder's hidden states).
fn cross_attention(
    tower: &TowerSpec,
    r: &Resolver,
    spec: &tcat_spec::AttentionSpec,
    prefix: &str,
) -> Result<(MultiHeadAttention, Norm)> {
    let names = r.names.cross.ok_or_else(|| not_implemented("cross-attention without weight names for it"))?;
    let at = |name: &str| join(prefix, name);
    let (h, qw, kvw) = (tower.hidden_size, spec.q_width(), spec.kv_width());
    let QkvNames::Separate { q, k, v } = names.qkv else {
        return Err(not_implemented("a fused cross-attention projection"));
    };
    let qkv = QkvProjection::Separate {
        q: r.linear(&at(q), h, qw, spec.qkv_bias)?,
        k: r.linear(&at(k), h, kvw, spec.qkv_bias)?,
        v: r.linear(&at(v), h, kvw, spec.qkv_bias)?,
    };
    let out = r.linear(&at(names.out), qw, h, spec.out_bias)?;
    let attention = MultiHeadAttention::new(qkv, out, spec.num_heads, spec.num_kv_heads, spec.head_dim)?
        .with_scale(spec.scale_for_layer(0));
    Ok((attention, r.norm(tower.norm, &at(names.norm), h)?))
}

/// The name of a part of layer `i` under its `prefix`; the part's own name may hold `{i}` (XLM
/// keeps per-part lists: `attentions.{i}`, `ffns.{i}`).
fn layer_part(prefix: &str, name: &str, i: usize) -> String {
    join(prefix, name).replace("{i}", &i.to_string())
}

/// The dense feed-forward network of the layer under `prefix`.
fn dense_feed_forward(tower: &TowerSpec, r: &Resolver, prefix: &str, i: usize) -> Result<FeedForward> {
    let (names, h, f) = (r.names, tower.hidden_size, &tower.feed_forward);
    let at = |name: &str| layer_part(prefix, name, i);
    let act = activation(f.activation);
    Ok(match f.kind {
        FeedForwardKind::Plain => FeedForward::new(
            r.linear(&at(names.ffn_up), h, f.inner, f.bias)?,
            r.linear(&at(names.ffn_down), f.inner, h, f.bias)?,
            act,
        ),
        FeedForwardKind::Gated if !names.ffn_gate_up.is_empty() => FeedForward::gated_stacked(
            r.linear(&at(names.ffn_gate_up), h, 2 * f.inner, f.bias)?,
            r.linear(&at(names.ffn_down), f.inner, h, f.bias)?,
            act,
        )?,
        FeedForwardKind::Gated => FeedForward::gated(
            r.linear(&at(names.ffn_gate), h, f.inner, f.bias)?,
            r.linear(&at(names.ffn_up), h, f.inner, f.bias)?,
            r.linear(&at(names.ffn_down), f.inner, h, f.bias)?,
            act,
        ),
    })
}

/// The mixture of experts of the layer under `prefix`: its router and `moe.num_experts`
/// experts, stored one by one or stacked as the names say.
fn experts(tower: &TowerSpec, r: &Resolver, prefix: &str, moe: MoeSpec) -> Result<MoeFeedForward> {
    let (h, inner, bias) = (tower.hidden_size, moe.expert_inner, tower.feed_forward.bias);
    let at = |name: &str| join(prefix, name);
    let rule = match moe.router.rule {
        tcat_spec::RoutingRule::TopK { k, renormalize } => RoutingRule::TopK { k, renormalize },
        tcat_spec::RoutingRule::Top1Capacity { capacity_factor } => {
            RoutingRule::Top1Capacity { capacity: ExpertCapacity::Factor { factor: capacity_factor, min: 1 } }
        }
        tcat_spec::RoutingRule::Top1FixedCapacity { capacity } => {
            RoutingRule::Top1Capacity { capacity: ExpertCapacity::Fixed(capacity) }
        }
        tcat_spec::RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, scale } => {
            RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, scale }
        }
        tcat_spec::RoutingRule::NoAuxTc { k, groups, topk_groups, renormalize, scale } => {
            RoutingRule::NoAuxTc { k, groups, topk_groups, renormalize, scale }
        }
    };
    let precision = if moe.router.float32 { LogitsPrecision::F32 } else { LogitsPrecision::Input };
    let mut router = Router::new(r.linear(&at(r.names.router), h, moe.num_experts, moe.router.bias)?, rule)?
        .with_precision(precision);
    if rule.sigmoid_scores() {
        // DeepSeek-V3's `e_score_correction_bias`, beside the router's weight unless the names
        // place it elsewhere.
        let name = match r.names.score_correction {
            "" => at(&format!("{}.e_score_correction_bias", r.names.router)),
            stored => at(stored),
        };
        router = router.with_score_correction(r.tensor(&name, &[moe.num_experts], weights::Init::Zeros)?)?;
    }
    let act = activation(tower.feed_forward.activation);
    let gated = moe.expert_kind == FeedForwardKind::Gated;
    let experts = match r.names.experts {
        ExpertNames::PerExpert { prefix: experts, gate, up, down } => (0..moe.num_experts)
            .map(|e| {
                let expert = experts.replace("{e}", &e.to_string());
                let lin = |name: &str, i, o| r.linear(&at(&format!("{expert}.{name}")), i, o, bias);
                Ok(if gated {
                    FeedForward::gated(lin(gate, h, inner)?, lin(up, h, inner)?, lin(down, inner, h)?, act)
                } else {
                    FeedForward::new(lin(up, h, inner)?, lin(down, inner, h)?, act)
                })
            })
            .collect::<Result<Vec<_>>>()?,
        ExpertNames::Stacked { gate, up, down } => {
            // Stacked `[experts, out, in]` tensors, one slice per expert (kept quantized where
            // the source holds them so).
            let stack = |name: &str, i: usize, o: usize| r.weights.stacked_linears(&at(name), moe.num_experts, i, o);
            let mut g = if gated { Some(stack(gate, h, inner)?.into_iter()) } else { None };
            stack(up, h, inner)?
                .into_iter()
                .zip(stack(down, inner, h)?)
                .map(|(u, d)| match g.as_mut().and_then(Iterator::next) {
                    Some(g) => FeedForward::gated(g, u, d, act),
                    None => FeedForward::new(u, d, act),
                })
                .collect()
        }
    };
    let moe_block = MoeFeedForward::new(router, experts)?;
    let Some(shared) = moe.shared_expert else { return Ok(moe_block) };
    let names = r.names.shared_expert.ok_or_else(|| not_implemented("shared experts in this family's weight names"))?;
    let lin = |name: &str, i, o| r.linear(&at(name), i, o, bias);
    let expert = if gated {
        FeedForward::gated(
            lin(names.gate, h, shared.inner)?,
            lin(names.up, h, shared.inner)?,
            lin(names.down, shared.inner, h)?,
            act,
        )
    } else {
        FeedForward::new(lin(names.up, h, shared.inner)?, lin(names.down, shared.inner, h)?, act)
    };
    let gate = if shared.sigmoid_gate { Some(r.linear(&at(names.sigmoid_gate), h, 1, false)?) } else { None };
    Ok(moe_block.with_shared_expert(expert, gate)?)
}

/// The block's sparse pattern for a spec pattern; DALL-E's grids take the text length and
/// the rows from the tower's image positions (no text and `max_positions / cols` rows without).
fn sparse_pattern(tower: &TowerSpec, pattern: AttentionPattern) -> Option<SparsePattern> {
    let grid = |cols: usize, axis| {
        let (text, rows) = match tower.positions {
            PositionSpec::ImageGrid { text_len, rows, .. } => (text_len, rows),
            _ => (0, tower.max_positions / cols.max(1)),
        };
        SparsePattern::Dalle { text, rows, cols, axis }
    };
    Some(match pattern {
        AttentionPattern::Strided { stride } => SparsePattern::Strided { stride },
        AttentionPattern::Fixed { block, summary } => SparsePattern::Fixed { block, summary },
        AttentionPattern::DalleRow { cols } => grid(cols, GridAxis::Row),
        AttentionPattern::DalleColumn { cols } => grid(cols, GridAxis::Column),
        AttentionPattern::DalleConv { cols, kernel } => grid(cols, GridAxis::Convolutional { kernel }),
        AttentionPattern::Band { radius } => SparsePattern::Band { radius },
        AttentionPattern::Dense | AttentionPattern::Local { .. } => return None,
    })
}

fn stack(tower: &TowerSpec, r: &Resolver, shared: &Shared) -> Result<Stack> {
    stack_from(tower, r, shared, 0)
}

/// [`stack`] whose layers below `cross_from` do not cross-attend even when the tower does
/// (CoCa's unimodal text layers, Yu et al. 2022, §3.2).
fn stack_from(tower: &TowerSpec, r: &Resolver, shared: &Shared, cross_from: usize) -> Result<Stack> {
    let unimodal = TowerSpec { cross_attention: None, ..tower.clone() };
    let layer = |tower: &TowerSpec, r: &Resolver, shared: &Shared, i: usize| {
        layer(if i < cross_from { &unimodal } else { tower }, r, shared, i)
    };
    let layers = match tower.sharing {
        LayerSharing::None => (0..tower.num_layers).map(|i| layer(tower, r, shared, i)).collect::<Result<Vec<_>>>()?,
        LayerSharing::Groups { .. } if cross_from > 0 => {
            return Err(not_implemented("layer sharing in a decoder with unimodal and multimodal layers"));
        }
        // ALBERT (Lan et al. 2019, §3.1): `groups` weight sets, layer i runs set
        // ⌊i · groups / layers⌋; the copies share their tensors.
        LayerSharing::Groups { groups } => {
            let sets = (0..groups).map(|g| layer(tower, r, shared, g)).collect::<Result<Vec<_>>>()?;
            (0..tower.num_layers).map(|i| sets[i * groups / tower.num_layers].clone()).collect()
        }
    };
    let final_norm =
        if tower.final_norm { Some(r.norm(tower.norm, &r.base(r.names.final_norm), tower.hidden_size)?) } else { None };
    let mut stack = Stack::new(layers, final_norm);
    if let Some(conv) = tower.convolution {
        stack = stack.with_first_layer_convolution(token_convolution(tower, r, conv)?);
    }
    Ok(match &shared.relative_bias {
        // Computed once per stack and shared by its layers (T5, LaMDA).
        Some(bias) => stack.with_relative_bias(bias.clone()),
        None => stack,
    })
}

/// DeBERTa-v2's convolution beside the first layer (see [`TokenConvolution`]).
fn token_convolution(tower: &TowerSpec, r: &Resolver, spec: TokenConvolutionSpec) -> Result<TokenConvolution> {
    let h = tower.hidden_size;
    let names = r.names.convolution;
    if spec.groups == 0 || !h.is_multiple_of(spec.groups) || spec.kernel.is_multiple_of(2) {
        return Err(Error::InvalidInput(format!(
            "{}: the token convolution needs an odd kernel (got {}) and groups dividing hidden_size {h} (got {})",
            r.weights.location(),
            spec.kernel,
            spec.groups
        )));
    }
    let kernel = r.base(&format!("{}.weight", names.kernel));
    let weight = r.tensor(&kernel, &[h, h / spec.groups, spec.kernel], weights::Init::Normal)?;
    let bias = r.tensor(&r.base(&format!("{}.bias", names.kernel)), &[h], weights::Init::Zeros)?;
    let norm = r.norm(tower.norm, &r.base(names.norm), h)?;
    Ok(TokenConvolution::new(weight, bias, spec.groups, activation(spec.activation), norm)?)
}

/// The word table (as a projection, which a tied head shares) and the absolute positions
/// (learned or sinusoidal) of a tower.
fn tables(tower: &TowerSpec, r: &Resolver) -> Result<(Linear, Option<AbsolutePositions>)> {
    let word = r.weights.table(
        &r.base(&format!("{}.weight", r.names.word)),
        &[tower.vocab_size, tower.embedding_width()],
        weights::Init::Normal,
    )?;
    Ok((word, position_table(tower, r)?))
}

/// The absolute positions (learned, sinusoidal or DALL-E's image grid) of a tower, if any.
fn position_table(tower: &TowerSpec, r: &Resolver) -> Result<Option<AbsolutePositions>> {
    let width = tower.side_table_width();
    let positions = match tower.positions {
        // DeBERTa's `position_biased_input`: a learned table besides the relative terms.
        PositionSpec::Deberta { absolute: true, .. } => {
            let name = r.base(&format!("{}.weight", r.names.positions));
            Some(AbsolutePositions::new(r.tensor(&name, &[tower.max_positions, width], weights::Init::Normal)?, 0))
        }
        PositionSpec::Learned { ids } => {
            let offset = match ids {
                PositionIdRule::Sequential { offset } => offset,
                PositionIdRule::PaddingAware { .. } => 0,
            };
            let table = r.tensor(
                &r.base(&format!("{}.weight", r.names.positions)),
                &[tower.max_positions + offset, width],
                weights::Init::Normal,
            )?;
            Some(AbsolutePositions::new(table, offset))
        }
        PositionSpec::ImageGrid { text_len, rows, cols } => {
            // DALL-E: a text table, then factorised row and column tables for the image.
            if Some(tower.max_positions) != rows.checked_mul(cols).and_then(|n| n.checked_add(text_len)) {
                return Err(Error::InvalidInput(format!(
                    "image grid positions: max_positions {} is not text {text_len} + {rows} × {cols} image tokens",
                    tower.max_positions
                )));
            }
            let table =
                |name: &str, n: usize| r.tensor(&r.base(&format!("{name}.weight")), &[n, width], weights::Init::Normal);
            let text = table(r.names.positions, text_len)?;
            let grid = image_grid_table(&text, &table("embed.image_rows", rows)?, &table("embed.image_cols", cols)?)?;
            Some(AbsolutePositions::new(grid, 0))
        }
        PositionSpec::Sinusoidal { layout } => {
            let layout = match layout {
                SinusoidalLayoutSpec::Interleaved => SinusoidalLayout::Interleaved,
                SinusoidalLayoutSpec::HalfSplit => SinusoidalLayout::HalfSplit,
            };
            let table = sinusoidal_table(tower.max_positions, width, layout, r.weights.dtype(), r.weights.device())?;
            Some(AbsolutePositions::new(table, 0))
        }
        _ => None,
    };
    Ok(positions)
}

fn embeddings(
    tower: &TowerSpec,
    r: &Resolver,
    word: impl Into<Linear>,
    positions: Option<AbsolutePositions>,
) -> Result<Embeddings> {
    let width = tower.side_table_width();
    let types = match tower.embeddings.token_types {
        0 => None,
        n => Some(r.tensor(&r.base(&format!("{}.weight", r.names.token_types)), &[n, width], weights::Init::Normal)?),
    };
    let norm = match tower.embeddings.norm {
        true => Some(r.norm(tower.norm, &r.base(r.names.embedding_norm), tower.embedding_norm_width())?),
        false => None,
    };
    let mut embeddings = Embeddings::new(word, positions, types, norm);
    if tower.embeddings.scale == EmbeddingScale::SqrtHidden {
        embeddings = embeddings.with_word_scale((tower.hidden_size as f64).sqrt());
    }
    if tower.embeddings.languages > 0 {
        let name = r.base(&format!("{}.weight", r.names.languages));
        embeddings =
            embeddings.with_languages(r.tensor(&name, &[tower.embeddings.languages, width], weights::Init::Normal)?);
    }
    match tower.embeddings.projection {
        // ALBERT's and ELECTRA's factorised embeddings: the normalised sum, projected to H.
        EmbeddingProjection::Summed { width } => {
            embeddings =
                embeddings.with_projection(r.linear(&r.base(r.names.project_in), width, tower.hidden_size, true)?);
        }
        // DeBERTa's `embed_proj`: the sum projected to H, then normalised.
        EmbeddingProjection::SummedBeforeNorm { width } => {
            let projection = r.linear(&r.base(r.names.project_in), width, tower.hidden_size, false)?;
            embeddings = embeddings.with_projection_before_norm(projection);
        }
        EmbeddingProjection::None | EmbeddingProjection::Words { .. } => {}
    }
    Ok(embeddings)
}

/// The LM head: a stored head when the checkpoint has one, else the token table when tied.
fn lm_head(tower: &TowerSpec, r: &Resolver, word: &Linear, tied: bool, bias: bool) -> Result<LmHead> {
    let name = r.names.lm_head;
    let width = match tower.embeddings.projection {
        EmbeddingProjection::Words { width } => width,
        _ => tower.hidden_size,
    };
    let bias_name = format!("{name}.bias");
    let bias_tensor = || -> Result<Option<Tensor>> {
        if bias && r.weights.contains(&bias_name) {
            Ok(Some(r.tensor(&bias_name, &[tower.vocab_size], weights::Init::Zeros)?))
        } else {
            Ok(None)
        }
    };
    // A synthetic source has every name: follow the spec there.
    let stored = if r.weights.is_synthetic() { !tied } else { r.has(name) };
    if stored {
        let weight = r.tensor(&format!("{name}.weight"), &[tower.vocab_size, width], weights::Init::Normal)?;
        return Ok(LmHead::new(Linear::new(weight, bias_tensor()?)));
    }
    if !tied {
        return Err(Error::MissingTensor {
            name: format!("{name}.weight (the LM head: the config does not tie it to the token embeddings)"),
            location: r.weights.location(),
        });
    }
    Ok(LmHead::new(word.clone().with_bias(bias_tensor()?)))
}

fn build_decoder(
    spec: &ArchSpec,
    tower: &TowerSpec,
    names: &WeightNames,
    weights: &dyn WeightSource,
) -> Result<DecoderModel> {
    check_buildable(tower)?;
    decoder_with_cross(spec, tower, names, weights, 0)
}

/// A decoder whose layers from `cross_from` on cross-attend when the tower says so (a
/// vision-language decoder; an encoder-decoder's decoder is built by [`seq2seq`]).
fn decoder_with_cross(
    spec: &ArchSpec,
    tower: &TowerSpec,
    names: &WeightNames,
    weights: &dyn WeightSource,
    cross_from: usize,
) -> Result<DecoderModel> {
    check_tower(tower)?;
    if tower.embeddings.segments == SegmentEncoding::Relative {
        return Err(not_implemented("relative segment encodings in a decoder (they are XLNet's encoder's)"));
    }
    if tower.convolution.is_some() {
        return Err(not_implemented(
            "a token convolution in a decoder (it reads whole sequences: DeBERTa-v2's encoder)",
        ));
    }
    let r = Resolver::new(names, weights)?;
    let shared = shared_positions(tower, &r)?;
    let (word, positions) = tables(tower, &r)?;
    let stack = stack_from(tower, &r, &shared, cross_from)?;
    let mut head = None;
    let mut reward = None;
    for spec_head in &spec.heads {
        match *spec_head {
            HeadSpec::Lm { tied, bias } if head.is_none() => head = Some(lm_head(tower, &r, &word, tied, bias)?),
            HeadSpec::SoftcappedLm { tied, cap } if head.is_none() => {
                head = Some(lm_head(tower, &r, &word, tied, false)?.with_logit_softcap(cap));
            }
            HeadSpec::Reward => reward = Some(r.linear("score", tower.hidden_size, 1, false)?),
            other => return Err(not_implemented(format!("the decoder head {other:?}"))),
        }
    }
    let head = head.ok_or_else(|| not_implemented("a decoder without an LM head"))?;
    // Every preset decoder has a scalar (reward / value) head; a checkpoint saved with one
    // (transformers' sequence classification with one label: reward and value models) carries
    // `score.weight`.
    if reward.is_none() && (weights.is_synthetic() || weights.contains("score.weight")) {
        reward = Some(r.linear("score", tower.hidden_size, 1, false)?);
    }
    let (eos, pad) = (spec.tokens.eos.clone(), spec.tokens.pad);
    let (limit, capped) = decoder_limit(tower);
    let limited = |model: DecoderModel| match &capped {
        Some(why) => model.with_position_limit(why.clone()),
        None => model,
    };
    match tower.embeddings.projection {
        EmbeddingProjection::Words { width } => {
            let h = tower.hidden_size;
            let project_in = r.linear(&r.base(names.project_in), width, h, false)?;
            let project_out = r.linear(&r.base(names.project_out), h, width, false)?;
            let embeddings = embeddings(tower, &r, word.clone(), None)?;
            let model = limited(DecoderModel::new(embeddings, stack, head, limit, eos, pad)).with_width_projection(
                project_in,
                positions,
                project_out,
            );
            Ok(match reward {
                Some(reward) => model.with_reward_head(reward),
                None => model,
            })
        }
        _ => {
            let embeddings = embeddings(tower, &r, word.clone(), positions)?;
            let model = limited(DecoderModel::new(embeddings, stack, head, limit, eos, pad));
            Ok(match reward {
                Some(reward) => model.with_reward_head(reward),
                None => model,
            })
        }
    }
}

fn build_encoder(
    spec: &ArchSpec,
    tower: &TowerSpec,
    names: &WeightNames,
    weights: &dyn WeightSource,
) -> Result<EncoderModel> {
    check_buildable(tower)?;
    let r = Resolver::new(names, weights)?;
    let shared = shared_positions(tower, &r)?;
    let (word, positions) = tables(tower, &r)?;
    let rule = match tower.positions {
        PositionSpec::Learned { ids: PositionIdRule::PaddingAware { padding_idx } } => {
            PositionRule::PaddingAware { padding_idx }
        }
        PositionSpec::Learned { ids: PositionIdRule::Sequential { offset } } if offset > 0 => {
            return Err(not_implemented("position offsets in an encoder-only model"));
        }
        _ => PositionRule::Sequential,
    };
    let embeddings = embeddings(tower, &r, word.clone(), positions)?;
    let stack = stack(tower, &r, &shared)?;
    let knowledge = tower.entity_fusion.map(|fusion| knowledge_encoder(tower, &r, fusion)).transpose()?;
    let h = tower.hidden_size;
    let mut pooler = None;
    let mut mlm = None;
    let (mut lm, mut sentence_order, mut replaced_token, mut conditioning) = (None, None, None, None);
    for head in &spec.heads {
        match head {
            HeadSpec::Pooler if r.has(&r.base(names.pooler)) => {
                pooler = Some(Pooler::new(r.linear(&r.base(names.pooler), h, h, true)?));
            }
            HeadSpec::Mlm => {
                let choices = MlmChoices {
                    tied: None,
                    transform_bias: true,
                    activation: tower.feed_forward.activation,
                    decoder_bias: true,
                };
                mlm = mlm_head(tower, &r, &word, choices)?;
            }
            &HeadSpec::MaskedLm { tied, transform_bias, activation, decoder_bias } => {
                let choices = MlmChoices { tied: Some(tied), transform_bias, activation, decoder_bias };
                mlm = mlm_head(tower, &r, &word, choices)?;
            }
            HeadSpec::Pooler => {}
            // A vocabulary projection tied to the token table (XLM's `pred_layer`), when the
            // checkpoint has one (its bias, or an untied weight).
            HeadSpec::Lm { tied, bias } => {
                let name = names.lm_head;
                if weights.contains(&format!("{name}.bias")) || r.has(name) {
                    lm = Some(lm_head(tower, &r, &word, *tied, *bias)?);
                }
            }
            HeadSpec::SentenceOrder if r.has(names.sentence_order) => {
                sentence_order = Some(r.linear(names.sentence_order, h, 2, true)?);
            }
            HeadSpec::ReplacedToken => {
                if let Some(rt) = names.replaced_token.filter(|rt| r.has(rt.dense)) {
                    replaced_token = Some(ReplacedTokenHead::new(
                        r.linear(rt.dense, h, h, true)?,
                        activation(tower.feed_forward.activation),
                        r.linear(rt.prediction, h, 1, true)?,
                    ));
                }
            }
            HeadSpec::SentenceOrder => {}
            HeadSpec::TextConditioning { kind, image_width, heads, bias } => {
                conditioning = Some(text_conditioning(tower, &r, *kind, *image_width, *heads, *bias)?);
            }
            other => return Err(not_implemented(format!("the encoder head {other:?}"))),
        }
    }
    let mut model =
        EncoderModel::new(embeddings, stack, pooler, mlm, rule, tower.embeddings.token_types, spec.tokens.pad);
    if tower.embeddings.segments == SegmentEncoding::Relative {
        model = model.with_relative_segments();
    }
    if let Some(lm) = lm {
        model = model.with_lm_head(lm);
    }
    if let Some(classifier) = sentence_order {
        model = model.with_sentence_order_head(classifier);
    }
    if let Some(head) = replaced_token {
        model = model.with_replaced_token_head(head);
    }
    if let Some(block) = conditioning {
        model = model.with_text_conditioning(block);
    }
    Ok(match knowledge {
        Some(knowledge) => model.with_knowledge(knowledge),
        None => model,
    })
}

/// A diffusion U-Net's text-conditioning layer reading the tower's states: image tokens
/// `image_width` wide in `heads` heads (see [`TextConditioning`]).
fn text_conditioning(
    tower: &TowerSpec,
    r: &Resolver,
    kind: ConditioningSpec,
    image_width: usize,
    heads: usize,
    bias: bool,
) -> Result<TextConditioning> {
    if r.names.conditioning.is_empty() {
        return Err(not_implemented("a text-conditioning layer in this family's weight names"));
    }
    if heads == 0 || image_width == 0 || !image_width.is_multiple_of(heads) {
        return Err(Error::InvalidInput(format!(
            "text conditioning: image width {image_width} does not split into {heads} heads"
        )));
    }
    let (h, w) = (tower.hidden_size, image_width);
    let at = |name: &str| join(r.names.conditioning, name);
    let norm = r.norm(NormSpec::LayerNorm { eps: 1e-5, bias: true }, &at("norm"), w)?;
    let key_input = match kind {
        ConditioningSpec::CrossAttention => h,
        ConditioningSpec::ConcatenatedKeys => w,
    };
    let qkv = QkvProjection::Separate {
        q: r.linear(&at("attn.q"), w, w, bias)?,
        k: r.linear(&at("attn.k"), key_input, w, bias)?,
        v: r.linear(&at("attn.v"), key_input, w, bias)?,
    };
    let attention = MultiHeadAttention::new(qkv, r.linear(&at("attn.out"), w, w, true)?, heads, heads, w / heads)?;
    Ok(match kind {
        ConditioningSpec::CrossAttention => TextConditioning::cross_attention(norm, attention),
        ConditioningSpec::ConcatenatedKeys => {
            TextConditioning::concatenated_keys(norm, attention, r.linear(&at("text_kv"), h, 2 * w, true)?)?
        }
    })
}

/// ERNIE-THU's knowledgeable encoder: the entity table and `fusion.layers` layers of token
/// attention, entity attention and [`EntityFusion`] (the paper's activated outputs, σ = the
/// tower's activation), with the fused width of the tower's feed-forward.
fn knowledge_encoder(tower: &TowerSpec, r: &Resolver, fusion: EntityFusionSpec) -> Result<KnowledgeEncoder> {
    let (h, e, inner) = (tower.hidden_size, fusion.entity_dim, tower.feed_forward.inner);
    if fusion.entity_heads == 0 || !e.is_multiple_of(fusion.entity_heads) {
        return Err(Error::InvalidInput(format!(
            "entity fusion: entity_dim {e} does not split into {} heads",
            fusion.entity_heads
        )));
    }
    let attention = |prefix: String, width: usize, heads: usize| -> Result<MultiHeadAttention> {
        let lin = |n: &str| r.linear(&join(&prefix, n), width, width, true);
        let qkv = QkvProjection::stacked(lin("q")?, lin("k")?, lin("v")?);
        Ok(MultiHeadAttention::new(qkv, lin("out")?, heads, heads, width / heads)?)
    };
    let entity_table =
        r.tensor(&r.base("knowledge.entities.weight"), &[fusion.entity_vocab, e], weights::Init::Normal)?;
    let layers = (0..fusion.layers)
        .map(|i| {
            let at = |n: &str| r.base(&format!("knowledge.layers.{i}.{n}"));
            Ok(KnowledgeLayer {
                token_attention: attention(at("tokens"), h, tower.attention.num_heads)?,
                entity_attention: attention(at("entities"), e, fusion.entity_heads)?,
                fusion: EntityFusion::new(
                    r.linear(&at("fusion.token_in"), h, inner, true)?,
                    r.linear(&at("fusion.entity_in"), e, inner, true)?,
                    r.linear(&at("fusion.token_out"), inner, h, true)?,
                    r.linear(&at("fusion.entity_out"), inner, e, true)?,
                    activation(tower.feed_forward.activation),
                )?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(KnowledgeEncoder { entity_table, layers })
}

/// The choices of a masked-LM head (see [`HeadSpec::MaskedLm`]).
#[derive(Clone, Copy)]
struct MlmChoices {
    /// Whether the decoder is the token table; `None`: whatever the checkpoint holds.
    tied: Option<bool>,
    transform_bias: bool,
    activation: tcat_spec::ActivationKind,
    decoder_bias: bool,
}

/// The masked-LM head when the checkpoint has one (a bare base model has none).
fn mlm_head(tower: &TowerSpec, r: &Resolver, word: &Linear, choices: MlmChoices) -> Result<Option<MlmHead>> {
    let Some(names) = r.names.mlm else { return Ok(None) };
    if !r.has(names.transform) {
        return Ok(None);
    }
    // The transform maps H to the token table's width (E < H in ALBERT and ELECTRA's generator).
    let (h, e, vocab) = (tower.hidden_size, tower.side_table_width(), tower.vocab_size);
    // An untied decoder must be stored (a missing one is an error naming it); a synthetic
    // source has every name, so it follows the spec.
    let stored = match (choices.tied, r.weights.is_synthetic()) {
        (Some(tied), true) => !tied,
        (Some(false), false) => true,
        _ => r.has(names.decoder),
    };
    let decoder = if stored {
        Linear::new(r.tensor(&format!("{}.weight", names.decoder), &[vocab, e], weights::Init::Normal)?, None)
    } else {
        word.clone()
    };
    let bias = match choices.decoder_bias {
        true => {
            let bias_name = names.bias.iter().find(|b| r.weights.contains(b)).unwrap_or(&names.bias[0]);
            Some(r.tensor(bias_name, &[vocab], weights::Init::Zeros)?)
        }
        false => None,
    };
    Ok(Some(MlmHead::new(
        r.linear(names.transform, h, e, choices.transform_bias)?,
        activation(choices.activation),
        r.norm(tower.norm, names.norm, e)?,
        decoder.with_bias(bias),
    )))
}
