//! Parameter counts from a spec alone, without allocating: the sizes the papers quote.

use crate::{
    ArchSpec, AttentionSpec, ConditioningSpec, EmbeddingProjection, FeedForwardKind, HeadSpec, InputKind, LayerSharing,
    NormSpec, PositionSpec, QkNormSpec, ResidualSpec, SegmentEncoding, Stacks, TowerSpec, VisionConnection, XlBiases,
};

/// Parameters of a model: all of them, and those one token passes through (they differ for
/// mixtures of experts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ParamCount {
    /// Every parameter.
    pub total: u64,
    /// Parameters used per token (inactive experts left out).
    pub active: u64,
}

impl std::ops::Add for ParamCount {
    type Output = ParamCount;
    fn add(self, other: ParamCount) -> ParamCount {
        ParamCount { total: self.total + other.total, active: self.active + other.active }
    }
}

impl std::ops::AddAssign for ParamCount {
    fn add_assign(&mut self, other: ParamCount) {
        *self = *self + other;
    }
}

impl ParamCount {
    fn dense(n: u64) -> Self {
        Self { total: n, active: n }
    }
}

fn linear(i: usize, o: usize, bias: bool) -> u64 {
    (i * o + if bias { o } else { 0 }) as u64
}

fn norm(spec: NormSpec, width: usize) -> u64 {
    match spec {
        NormSpec::LayerNorm { bias: true, .. } => 2 * width as u64,
        NormSpec::LayerNorm { bias: false, .. } | NormSpec::RmsNorm { .. } | NormSpec::RmsNormPlusOne { .. } => {
            width as u64
        }
    }
}

fn attention(a: &AttentionSpec, hidden: usize, memory: usize) -> u64 {
    if let Some(l) = a.latent {
        let heads = a.num_heads;
        let q_out = heads * l.qk_dim();
        let query = match l.q_rank {
            None => linear(hidden, q_out, false),
            Some(r) => linear(hidden, r, a.qkv_bias) + r as u64 + linear(r, q_out, false),
        };
        return query
            + linear(memory, l.kv_rank + l.rope_dim, a.qkv_bias)
            + l.kv_rank as u64
            + linear(l.kv_rank, heads * (l.nope_dim + l.value_dim), false)
            + linear(heads * l.value_dim, hidden, a.out_bias);
    }
    linear(hidden, a.q_width(), a.qkv_bias)
        + 2 * linear(memory, a.kv_width(), a.qkv_bias)
        + linear(a.q_width(), hidden, a.out_bias)
        + match a.qk_norm {
            Some(QkNormSpec::Projection) => (a.q_width() + a.kv_width()) as u64,
            Some(QkNormSpec::Head) => 2 * a.head_dim as u64,
            None => 0,
        }
}

fn ffn(kind: FeedForwardKind, hidden: usize, inner: usize, bias: bool) -> u64 {
    let inputs = match kind {
        FeedForwardKind::Plain => 1,
        FeedForwardKind::Gated => 2,
    };
    inputs * linear(hidden, inner, bias) + linear(inner, hidden, bias)
}

impl TowerSpec {
    fn embedding_params(&self) -> u64 {
        let h = self.hidden_size;
        let e = self.side_table_width();
        let mut n = match self.embeddings.input {
            InputKind::Tokens => (self.vocab_size * self.embedding_width()) as u64,
            InputKind::Patches { image_size, patch_size, channels } => {
                let patches = (image_size / patch_size.max(1)).pow(2);
                // Patch projection with bias, class token, a position per patch and the class token.
                linear(channels * patch_size * patch_size, h, true) + h as u64 + ((patches + 1) * h) as u64
            }
        };
        n += ((self.embeddings.token_types + self.embeddings.languages) * e) as u64;
        n += match self.positions {
            PositionSpec::Learned { ids } if self.embeddings.input == InputKind::Tokens => {
                let offset = match ids {
                    crate::PositionIdRule::Sequential { offset } => offset,
                    crate::PositionIdRule::PaddingAware { padding_idx } => padding_idx as usize + 1,
                };
                ((self.max_positions + offset) * e) as u64
            }
            PositionSpec::Deberta { absolute: true, .. } => (self.max_positions * e) as u64,
            PositionSpec::ImageGrid { text_len, rows, cols } => ((text_len + rows + cols) * e) as u64,
            _ => 0,
        };
        if self.embeddings.norm {
            n += norm(self.norm, self.embedding_norm_width());
        }
        n += match self.embeddings.projection {
            EmbeddingProjection::None => 0,
            EmbeddingProjection::Summed { width } => linear(width, h, true),
            EmbeddingProjection::SummedBeforeNorm { width } => linear(width, h, false),
            // In and out, without biases (OPT-350m).
            EmbeddingProjection::Words { width } => linear(width, h, false) + linear(h, width, false),
        };
        n
    }

    /// Parameters of layer `layer` (dense or sparse).
    fn layer_params(&self, layer: usize) -> ParamCount {
        let h = self.hidden_size;
        let a = &self.attention;
        let mut n = attention(a, h, h);
        let norms = match self.residual {
            ResidualSpec::ParallelSharedNorm => 1,
            ResidualSpec::Post | ResidualSpec::Pre | ResidualSpec::Parallel => 2,
            ResidualSpec::Sandwich => 4,
        };
        n += norms * norm(self.norm, h);
        if layer == 0 && self.skip_first_attention_norm {
            n -= norm(self.norm, h);
        }
        if let Some(cross) = &self.cross_attention {
            n += attention(cross, h, h) + norm(self.norm, h);
        }
        n += match self.positions {
            // Transformer-XL: the projection of the relative sinusoids, per layer, and XLNet's
            // untied u and v.
            PositionSpec::TransformerXl { biases, .. } => {
                linear(h, a.q_width(), false) + if biases == XlBiases::PerLayer { 2 * a.q_width() as u64 } else { 0 }
            }
            _ => 0,
        };
        if self.embeddings.segments == SegmentEncoding::Relative {
            // XLNet's segment bias and the two segment vectors, per layer.
            n += 3 * a.q_width() as u64;
        }
        let f = &self.feed_forward;
        let mut count = ParamCount::dense(n);
        match f.experts {
            Some(moe) if moe.is_sparse(layer) => {
                let expert = ffn(moe.expert_kind, h, moe.expert_inner, f.bias);
                let router = linear(h, moe.num_experts, moe.router.bias);
                let shared = moe.shared_expert.map_or(0, |s| {
                    ffn(moe.expert_kind, h, s.inner, f.bias) + if s.sigmoid_gate { linear(h, 1, false) } else { 0 }
                });
                count += ParamCount {
                    total: router + shared + expert * moe.num_experts as u64,
                    active: router + shared + expert * moe.active_experts() as u64,
                };
            }
            _ => count += ParamCount::dense(ffn(f.kind, h, f.inner, f.bias)),
        }
        count
    }

    /// Parameters of the tower: embeddings, layers (shared ones counted once), stack-level
    /// position tables and the final norm; no heads.
    pub fn param_count(&self) -> ParamCount {
        let h = self.hidden_size;
        let mut count = ParamCount::dense(self.embedding_params());
        let distinct = match self.sharing {
            LayerSharing::None => self.num_layers,
            LayerSharing::Groups { groups } => groups,
        };
        for layer in 0..distinct {
            count += self.layer_params(layer);
        }
        count += ParamCount::dense(match self.positions {
            PositionSpec::T5Bias { num_buckets, .. } => (num_buckets * self.attention.num_heads) as u64,
            PositionSpec::Deberta { max_relative, buckets, normalised, .. } => {
                let rows = 2 * buckets.unwrap_or(max_relative);
                (rows * h) as u64 + if normalised { norm(self.norm, h) } else { 0 }
            }
            // The global content and position biases u and v.
            PositionSpec::TransformerXl { biases: XlBiases::Shared, .. } => 2 * self.attention.q_width() as u64,
            _ => 0,
        });
        if self.final_norm {
            count += ParamCount::dense(norm(self.norm, h));
        }
        if let Some(conv) = self.convolution {
            // The kernel [h, h / groups, k], its bias and the norm after the sum.
            let kernel = (h * (h / conv.groups.max(1)) * conv.kernel) as u64;
            count += ParamCount::dense(kernel + h as u64 + norm(self.norm, h));
        }
        if let Some(fusion) = self.entity_fusion {
            let (e, inner) = (fusion.entity_dim, self.feed_forward.inner);
            let entity_attention = 4 * linear(e, e, true);
            // Token and entity attentions, then the fusion's four projections (Zhang et al.
            // 2019, eq. 4-5).
            let fusion_layer = attention(&self.attention, h, h)
                + entity_attention
                + linear(h, inner, true)
                + linear(e, inner, true)
                + linear(inner, h, true)
                + linear(inner, e, true);
            count += ParamCount::dense((fusion.entity_vocab * e) as u64 + fusion.layers as u64 * fusion_layer);
        }
        count
    }
}

impl HeadSpec {
    /// Parameters of this head on `tower` (its width, vocabulary and embedding width).
    pub fn param_count(&self, tower: &TowerSpec) -> u64 {
        let (hidden, vocab, embedding) = (tower.hidden_size, tower.vocab_size, tower.embedding_width());
        match *self {
            HeadSpec::Lm { tied, bias } => {
                (if tied { 0 } else { hidden * vocab } + if bias { vocab } else { 0 }) as u64
            }
            HeadSpec::ScaledLm { tied, .. } | HeadSpec::SoftcappedLm { tied, .. } => {
                if tied {
                    0
                } else {
                    (hidden * vocab) as u64
                }
            }
            // Transform to the embedding width, its LayerNorm, and the vocabulary bias (the
            // decoder is tied; ALBERT's transform maps hidden to E).
            HeadSpec::Mlm => linear(hidden, embedding, true) + 2 * embedding as u64 + vocab as u64,
            HeadSpec::MaskedLm { tied, transform_bias, decoder_bias, .. } => {
                linear(hidden, embedding, transform_bias)
                    + norm(tower.norm, embedding)
                    + if tied { 0 } else { (vocab * embedding) as u64 }
                    + if decoder_bias { vocab as u64 } else { 0 }
            }
            HeadSpec::Pooler => linear(hidden, hidden, true),
            HeadSpec::Classification { labels } => linear(hidden, labels, true),
            HeadSpec::Reward => linear(hidden, 1, true),
            HeadSpec::SentenceOrder => linear(hidden, 2, true),
            HeadSpec::ReplacedToken => linear(hidden, hidden, true) + linear(hidden, 1, true),
            HeadSpec::TextConditioning { kind, image_width: w, bias, .. } => {
                let norm = 2 * w as u64;
                let text = match kind {
                    ConditioningSpec::CrossAttention => 2 * linear(hidden, w, bias),
                    ConditioningSpec::ConcatenatedKeys => 2 * linear(w, w, bias) + linear(hidden, 2 * w, true),
                };
                norm + linear(w, w, bias) + text + linear(w, w, true)
            }
        }
    }
}

impl ArchSpec {
    /// Every parameter and the per-token active ones, from the spec alone.
    ///
    /// ```
    /// use tcat_spec::*;
    /// // GPT-2 small: 124M.
    /// let gpt2 = ArchSpec::decoder(TowerSpec::decoder(50257, 768, 12, 12, 1024), HeadSpec::Lm { tied: true, bias: false });
    /// assert_eq!(gpt2.param_count().total, 124_439_808);
    /// ```
    pub fn param_count(&self) -> ParamCount {
        let mut count = ParamCount::default();
        for tower in self.towers() {
            count += tower.param_count();
        }
        let last = *self.towers().last().expect("every spec has a tower");
        for head in &self.heads {
            count += ParamCount::dense(head.param_count(last));
        }
        count += ParamCount::dense(match &self.stacks {
            Stacks::DualEncoder { text, vision, projection_dim } => {
                // Two bias-free projections and the logit scale.
                ((text.hidden_size + vision.hidden_size) * projection_dim + 1) as u64
            }
            Stacks::VisionLanguage { vision, decoder, connection } => match connection {
                VisionConnection::PrefixEmbeddings => linear(vision.hidden_size, decoder.hidden_size, true),
                VisionConnection::AttentionalPooling { queries, .. } => {
                    // The queries, their cross-attention, and the norms of the queries and of
                    // the image tokens.
                    (queries * decoder.hidden_size) as u64
                        + attention(&decoder.attention, decoder.hidden_size, vision.hidden_size)
                        + norm(decoder.norm, decoder.hidden_size)
                        + norm(vision.norm, vision.hidden_size)
                }
            },
            _ => 0,
        });
        if let Stacks::VisionLanguage {
            decoder,
            connection: VisionConnection::AttentionalPooling { unimodal_layers, .. },
            ..
        } = &self.stacks
            && let Some(cross) = &decoder.cross_attention
        {
            // The first `unimodal_layers` decoder layers have no cross-attention (CoCa).
            let h = decoder.hidden_size;
            let unimodal =
                (*unimodal_layers).min(decoder.num_layers) as u64 * (attention(cross, h, h) + norm(decoder.norm, h));
            count.total -= unimodal;
            count.active -= unimodal;
        }
        if let Stacks::EncoderDecoder { decoder, shared_embeddings: true, .. } = &self.stacks {
            // One token table serves both towers.
            let table = (decoder.vocab_size * decoder.embedding_width()) as u64;
            count.total -= table;
            count.active -= table;
        }
        count
    }
}
