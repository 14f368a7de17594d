//! A family's weight names: where each part of a spec is stored in its checkpoints. One table
//! per family (and one for GGUF files) is all the loader needs.

use tcat_core::WeightLayout;

/// How the query, key and value projections are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkvNames {
    /// Three projections.
    Separate {
        /// Queries.
        q: &'static str,
        /// Keys.
        k: &'static str,
        /// Values.
        v: &'static str,
    },
    /// One projection whose output is `[Q | K | V]` (GPT-2's `c_attn`, multi-query BigCode).
    Fused(&'static str),
    /// One projection whose output is, per head, `[q_h | k_h | v_h]` (BLOOM, GPT-NeoX,
    /// multi-head BigCode).
    FusedPerHead(&'static str),
    /// DeBERTa v1's `in_proj`: one bias-free projection whose output is, per head,
    /// `[q_h | k_h | v_h]`, with a query bias and a value bias stored apart (no key bias).
    FusedPerHeadQvBias {
        /// The fused projection.
        fused: &'static str,
        /// The query bias, `[heads · head_dim]` (a bare parameter).
        q_bias: &'static str,
        /// The value bias, `[heads · head_dim]` (a bare parameter).
        v_bias: &'static str,
    },
    /// Multi-head latent attention's projections (DeepSeek-V2, V3): the queries directly (`q`)
    /// or through a normalised latent (`q_down`, `q_norm`, `q_up`), the key/value latent with
    /// the shared rotary key (`kv_down`), its norm and its expansion to per-head keys and values
    /// (`kv_up`).
    Latent {
        /// Direct query projection.
        q: &'static str,
        /// Query down-projection.
        q_down: &'static str,
        /// RMS norm of the query latent.
        q_norm: &'static str,
        /// Query up-projection.
        q_up: &'static str,
        /// Down-projection to the latent and the shared rotary key.
        kv_down: &'static str,
        /// RMS norm of the key/value latent.
        kv_norm: &'static str,
        /// Up-projection to per-head keys and values.
        kv_up: &'static str,
        /// llama.cpp's split of `kv_up`, read when `kv_up` is absent: the per-head key
        /// up-projections stored transposed, `[heads, rank, nope_dim]` (`attn_k_b`); empty when
        /// the family stores `kv_up` only.
        k_up: &'static str,
        /// The per-head value up-projections, `[heads, value_dim, rank]` (`attn_v_b`).
        v_up: &'static str,
    },
    /// Three bias-free einsum parameters `[hidden, heads, head_dim]` named without `.weight`
    /// (XLNet's `rel_attn.q`, `k`, `v`); the output projection, Transformer-XL's position
    /// projection and the segment parameters are then stored the same way.
    Einsum {
        /// Queries.
        q: &'static str,
        /// Keys.
        k: &'static str,
        /// Values.
        v: &'static str,
    },
}

/// Where Transformer-XL's relative positions and XLNet's relative segments keep their
/// parameters. The projection and segment parameters are under the layer; the biases `u`, `v`
/// under the base model when shared by the tower, under the layer when each has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XlNames {
    /// The projection `W_R` of the relative sinusoids.
    pub projection: &'static str,
    /// The global content bias `u`.
    pub content_bias: &'static str,
    /// The global position bias `v`.
    pub position_bias: &'static str,
    /// XLNet's segment bias `b`, `[heads, head_dim]`.
    pub segment_bias: &'static str,
    /// XLNet's segment vectors `s_+`, `s_−`, `[2, heads, head_dim]`.
    pub segment_embeddings: &'static str,
}

/// How the experts of a mixture-of-experts layer are stored (under the layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertNames {
    /// One set of projections per expert under `prefix` with `{e}` replaced by the expert's
    /// index (Hugging Face Mixtral: `block_sparse_moe.experts.{e}` with `w1/w3/w2`; Switch:
    /// `mlp.experts.expert_{e}` with `wi/wo`).
    PerExpert {
        /// One expert's prefix, with `{e}`.
        prefix: &'static str,
        /// The gate projection.
        gate: &'static str,
        /// The up projection.
        up: &'static str,
        /// The down projection.
        down: &'static str,
    },
    /// Stacked `[experts, out, in]` tensors (llama.cpp's `ffn_gate_exps`, `ffn_up_exps`,
    /// `ffn_down_exps`).
    Stacked {
        /// The stacked gate projections.
        gate: &'static str,
        /// The stacked up projections.
        up: &'static str,
        /// The stacked down projections.
        down: &'static str,
    },
}

/// Where a mixture of experts keeps its always-active shared expert (under the layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedExpertNames {
    /// The gate projection (gated experts).
    pub gate: &'static str,
    /// The up projection.
    pub up: &'static str,
    /// The down projection.
    pub down: &'static str,
    /// The `[1, hidden]` projection whose sigmoid scales the shared expert's output.
    pub sigmoid_gate: &'static str,
}

/// Names of ELECTRA's discriminator head, relative to the checkpoint root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplacedTokenNames {
    /// The `[hidden, hidden]` dense layer.
    pub dense: &'static str,
    /// The `[1, hidden]` prediction.
    pub prediction: &'static str,
}

/// Names of BERT-style masked-LM head parts, relative to the checkpoint root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlmNames {
    /// The transform projection.
    pub transform: &'static str,
    /// Its norm.
    pub norm: &'static str,
    /// The vocabulary projection (tied to the token table when absent).
    pub decoder: &'static str,
    /// The vocabulary bias tensors tried in order (full tensor names).
    pub bias: &'static [&'static str],
}

/// Where a decoder layer stores its cross-attention (under the layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossNames {
    /// Query, key and value projections (separate: the keys and values read the encoder).
    pub qkv: QkvNames,
    /// Output projection.
    pub out: &'static str,
    /// The branch's norm.
    pub norm: &'static str,
}

/// The second half of an encoder-decoder's names: the family's [`WeightNames`] table names the
/// encoder, this one the decoder (whose [`WeightNames::cross`] names the cross-attention) and
/// what the two share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq2seqNames {
    /// The decoder tower.
    pub decoder: WeightNames,
    /// The token table both towers share, from the root, tried in order when a tower has no
    /// table of its own (`shared`, `model.shared`).
    pub shared: &'static [&'static str],
    /// A bias added to the logits, from the root (BART's and Marian's `final_logits_bias`,
    /// `[1, vocab]`); empty when the family has none.
    pub final_logits_bias: &'static str,
}

/// Where a family stores each part. Names under the base model are relative to the first of
/// [`base`](Self::base) under which [`word`](Self::word)`.weight` exists; layer names replace
/// `{i}` with the layer index; heads are relative to the checkpoint root. An empty name means
/// the family has no such part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightNames {
    /// Prefixes of the base model, tried in order (`""` is the root).
    pub base: &'static [&'static str],
    /// The token table.
    pub word: &'static str,
    /// The learned position table.
    pub positions: &'static str,
    /// The segment table.
    pub token_types: &'static str,
    /// The norm after the embedding sum.
    pub embedding_norm: &'static str,
    /// The language table (XLM).
    pub languages: &'static str,
    /// Projection of narrow word vectors to the hidden width.
    pub project_in: &'static str,
    /// Projection of the final states back to the word width.
    pub project_out: &'static str,
    /// One layer's prefix, with `{i}` (empty when the parts are stored in per-part lists, as
    /// XLM's `attentions.{i}`: the names under the layer may then hold `{i}` themselves).
    pub layer: &'static str,
    /// Query, key and value projections, under the layer.
    pub qkv: QkvNames,
    /// Attention output projection, under the layer.
    pub attention_out: &'static str,
    /// The query norm (OLMoE, Qwen3), under the layer.
    pub q_norm: &'static str,
    /// The key norm, under the layer.
    pub k_norm: &'static str,
    /// The norm of the attention branch, under the layer.
    pub attention_norm: &'static str,
    /// The norm of the attention branch's output in a sandwich-norm layer (Gemma 2 and 3's
    /// `post_attention_layernorm`), under the layer.
    pub attention_out_norm: &'static str,
    /// The gate projection of gated networks, under the layer.
    pub ffn_gate: &'static str,
    /// The gate and up projections stored as one `[gate | up]` matrix (Phi-3's
    /// `mlp.gate_up_proj`); empty when they are stored apart.
    pub ffn_gate_up: &'static str,
    /// The up projection, under the layer.
    pub ffn_up: &'static str,
    /// The down projection, under the layer.
    pub ffn_down: &'static str,
    /// The norm of the feed-forward branch, under the layer.
    pub ffn_norm: &'static str,
    /// The norm of the feed-forward branch's output in a sandwich-norm layer (Gemma 2 and 3's
    /// `post_feedforward_layernorm`), under the layer.
    pub ffn_out_norm: &'static str,
    /// The router of a mixture-of-experts layer, under the layer.
    pub router: &'static str,
    /// The router's stored score correction (DeepSeek-V3's `noaux_tc` routing), under the
    /// layer; empty for Hugging Face's place beside the router's weight,
    /// `{router}.e_score_correction_bias` (llama.cpp: `exp_probs_b.bias`).
    pub score_correction: &'static str,
    /// The experts of a mixture-of-experts layer.
    pub experts: ExpertNames,
    /// The shared expert of a mixture-of-experts layer, if the family has one.
    pub shared_expert: Option<SharedExpertNames>,
    /// The norm after the last layer.
    pub final_norm: &'static str,
    /// The LM head, from the root.
    pub lm_head: &'static str,
    /// The pooler's dense layer, under the base model.
    pub pooler: &'static str,
    /// The masked-LM head, if the family has one.
    pub mlm: Option<MlmNames>,
    /// ALBERT's sentence-order classifier, from the root.
    pub sentence_order: &'static str,
    /// ELECTRA's discriminator, if the family has one.
    pub replaced_token: Option<ReplacedTokenNames>,
    /// T5's relative position bias table, under the base model (the first layer keeps it).
    pub relative_bias: &'static str,
    /// DeBERTa's relative position embeddings, under the base model.
    pub relative_embeddings: &'static str,
    /// The norm of DeBERTa's relative embeddings, under the base model.
    pub relative_norm: &'static str,
    /// A convolution beside the first layer (DeBERTa-v2's `encoder.conv`): its kernel and
    /// bias, and the norm after the sum.
    pub convolution: TokenConvolutionNames,
    /// DeBERTa's own key projection of the relative embeddings when keys are not shared
    /// (content-to-position), under the layer; a bias when the checkpoint has one.
    pub relative_key: &'static str,
    /// DeBERTa's own query projection of the relative embeddings when keys are not shared
    /// (position-to-content), under the layer.
    pub relative_query: &'static str,
    /// Transformer-XL's and XLNet's relative parameters.
    pub xl: XlNames,
    /// A diffusion U-Net's text-conditioning layer (presets), from the root.
    pub conditioning: &'static str,
    /// A decoder layer's cross-attention, if the family has one.
    pub cross: Option<CrossNames>,
    /// The decoder's names, when this table names an encoder-decoder's encoder.
    pub seq2seq: Option<&'static Seq2seqNames>,
    /// The image parts: an image tower's patch input, and a dual encoder's image tower and
    /// projections (ViT, CLIP).
    pub vision: Option<&'static super::VisionNames>,
    /// How projection weights are stored.
    pub layout: WeightLayout,
}

impl WeightNames {
    /// A table with no parts, to fill with struct-update syntax.
    pub const EMPTY: WeightNames = WeightNames {
        base: &[""],
        word: "",
        positions: "",
        token_types: "",
        embedding_norm: "",
        languages: "",
        project_in: "",
        project_out: "",
        layer: "",
        qkv: QkvNames::Fused(""),
        attention_out: "",
        q_norm: "",
        k_norm: "",
        attention_norm: "",
        attention_out_norm: "",
        ffn_gate: "",
        ffn_gate_up: "",
        ffn_up: "",
        ffn_down: "",
        ffn_norm: "",
        ffn_out_norm: "",
        router: "",
        score_correction: "",
        experts: ExpertNames::PerExpert { prefix: "", gate: "", up: "", down: "" },
        shared_expert: None,
        final_norm: "",
        lm_head: "lm_head",
        pooler: "",
        mlm: None,
        sentence_order: "",
        replaced_token: None,
        relative_bias: "relative_attention_bias",
        relative_embeddings: "",
        relative_norm: "",
        convolution: TokenConvolutionNames { kernel: "", norm: "" },
        relative_key: "",
        relative_query: "",
        conditioning: "",
        xl: XlNames {
            projection: "attn.r",
            content_bias: "r_w_bias",
            position_bias: "r_r_bias",
            segment_bias: "attn.segment_bias",
            segment_embeddings: "attn.segments",
        },
        cross: None,
        seq2seq: None,
        vision: None,
        layout: WeightLayout::OutIn,
    };

    /// The prefix of layer `i`.
    pub fn layer(&self, i: usize) -> String {
        self.layer.replace("{i}", &i.to_string())
    }

    /// The names preset weights use: a plain, readable layout (`layers.{i}.attn.q`, ...); an
    /// encoder-decoder's decoder has the same layout under `decoder.`.
    pub const PRESET: WeightNames =
        WeightNames { seq2seq: Some(&PRESET_SEQ2SEQ), vision: Some(&super::vision::PRESET_VISION), ..PRESET_TOWER };
}

/// Where a tower keeps its token convolution (see [`WeightNames::convolution`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenConvolutionNames {
    /// The convolution: `{kernel}.weight` `[hidden, hidden / groups, kernel]` and `{kernel}.bias`.
    pub kernel: &'static str,
    /// The norm after the residual sum.
    pub norm: &'static str,
}

/// One preset tower's names.
pub(super) const PRESET_TOWER: WeightNames = WeightNames {
    word: "embed.tokens",
    positions: "embed.positions",
    token_types: "embed.token_types",
    embedding_norm: "embed.norm",
    languages: "embed.languages",
    project_in: "embed.project_in",
    project_out: "project_out",
    layer: "layers.{i}",
    qkv: QkvNames::Separate { q: "attn.q", k: "attn.k", v: "attn.v" },
    attention_out: "attn.out",
    q_norm: "attn.q_norm",
    k_norm: "attn.k_norm",
    attention_norm: "attn_norm",
    attention_out_norm: "attn_out_norm",
    ffn_out_norm: "ffn_out_norm",
    ffn_gate: "ffn.gate",
    ffn_up: "ffn.up",
    ffn_down: "ffn.down",
    ffn_norm: "ffn_norm",
    router: "ffn.router",
    experts: ExpertNames::PerExpert { prefix: "ffn.experts.{e}", gate: "gate", up: "up", down: "down" },
    shared_expert: Some(SharedExpertNames {
        gate: "ffn.shared.gate",
        up: "ffn.shared.up",
        down: "ffn.shared.down",
        sigmoid_gate: "ffn.shared.sigmoid_gate",
    }),
    final_norm: "final_norm",
    lm_head: "lm_head",
    pooler: "pooler",
    sentence_order: "sentence_order",
    replaced_token: None,
    mlm: Some(MlmNames { transform: "mlm.transform", norm: "mlm.norm", decoder: "mlm.decoder", bias: &["mlm.bias"] }),
    relative_embeddings: "relative_positions",
    relative_norm: "relative_norm",
    convolution: TokenConvolutionNames { kernel: "conv.kernel", norm: "conv.norm" },
    conditioning: "conditioning",
    ..WeightNames::EMPTY
};

/// A preset's latent attention (its synthetic weights under these names, whatever the tower's
/// [`WeightNames::qkv`] says).
pub(super) const PRESET_LATENT: QkvNames = QkvNames::Latent {
    q: "attn.q",
    q_down: "attn.q_down",
    q_norm: "attn.q_latent_norm",
    q_up: "attn.q_up",
    kv_down: "attn.kv_down",
    kv_norm: "attn.kv_latent_norm",
    kv_up: "attn.kv_up",
    k_up: "",
    v_up: "",
};

/// A preset decoder that cross-attends: [`PRESET_TOWER`]'s layout under `decoder.`, with the
/// cross-attention at `layers.{i}.cross`.
pub(super) const PRESET_DECODER: WeightNames = WeightNames {
    base: &["decoder"],
    cross: Some(CrossNames {
        qkv: QkvNames::Separate { q: "cross.q", k: "cross.k", v: "cross.v" },
        out: "cross.out",
        norm: "cross_norm",
    }),
    ..PRESET_TOWER
};

/// The decoder half of [`WeightNames::PRESET`]: the same layout under `decoder.`, with the
/// cross-attention at `layers.{i}.cross`.
const PRESET_SEQ2SEQ: Seq2seqNames =
    Seq2seqNames { decoder: PRESET_DECODER, shared: &["embed.tokens"], final_logits_bias: "final_logits_bias" };

/// `prefix.name`, or `name` at the root.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
