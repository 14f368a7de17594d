//! CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision", §2.3–2.4): a causal pre-norm text Transformer whose sentence vector is its
//! final state at the end-of-text token, a ViT image tower with an extra LayerNorm before its
//! layers (`pre_layrnorm`) and its class token normed after them (`post_layernorm`), both with
//! `quick_gelu`, each linearly projected (no bias) into a joint space where `exp(logit_scale)`
//! times the cosine similarity is the image–text logit. Hugging Face `model_type` `clip`
//! (`CLIPModel`).
//!
//! The end-of-text rule follows `CLIPTextTransformer`: a config whose `eos_token_id` is 2 (the
//! legacy value saved before transformers fixed it) pools at each row's highest token id,
//! any other at the first occurrence of `eos_token_id` (see [`crate::EosPooling`]).
//!
//! ```
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip");
//! let config = tcat_models::ConfigFile::read(&dir.join("config.json")).unwrap();
//! let spec = tcat_models::clip::spec(&config).unwrap();
//! assert_eq!(spec.kind(), tcat_spec::ModelKind::Multimodal);
//! assert_eq!(spec.tokens.eos, [1]);
//! ```

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{DualNames, PatchNames, QkvNames, VisionNames, WeightNames};

/// The fields of CLIP's `text_config` that shape the text tower (transformers' defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    #[serde(default = "text_vocab")]
    pub vocab_size: usize,
    /// Width of the hidden states.
    #[serde(default = "text_hidden")]
    pub hidden_size: usize,
    /// Width of the feed-forward layer.
    #[serde(default = "text_inner")]
    pub intermediate_size: usize,
    /// Number of layers.
    #[serde(default = "twelve")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    #[serde(default = "text_heads")]
    pub num_attention_heads: usize,
    /// Rows of the position table (the longest text).
    #[serde(default = "text_positions")]
    pub max_position_embeddings: usize,
    /// Feed-forward activation name.
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// LayerNorm ε.
    #[serde(default = "clip_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default = "text_pad")]
    pub pad_token_id: u32,
    /// End-of-text token id (2 selects the legacy highest-id pooling).
    #[serde(default = "text_eos")]
    pub eos_token_id: u32,
}

/// The fields of CLIP's `vision_config` that shape the image tower (transformers' defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the hidden states.
    #[serde(default = "vision_hidden")]
    pub hidden_size: usize,
    /// Width of the feed-forward layer.
    #[serde(default = "vision_inner")]
    pub intermediate_size: usize,
    /// Number of layers.
    #[serde(default = "twelve")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    #[serde(default = "twelve")]
    pub num_attention_heads: usize,
    /// Colour channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Image side in pixels (the position table is for this size).
    #[serde(default = "vision_image")]
    pub image_size: usize,
    /// Patch side in pixels.
    #[serde(default = "vision_patch")]
    pub patch_size: usize,
    /// Feed-forward activation name.
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// LayerNorm ε.
    #[serde(default = "clip_eps")]
    pub layer_norm_eps: f64,
}

/// The fields of a CLIP `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// The text tower.
    #[serde(default = "empty")]
    pub text_config: serde_json::Value,
    /// The image tower.
    #[serde(default = "empty")]
    pub vision_config: serde_json::Value,
    /// Width of the joint space.
    #[serde(default = "projection")]
    pub projection_dim: usize,
}

fn empty() -> serde_json::Value {
    serde_json::json!({})
}
fn text_vocab() -> usize {
    49408
}
fn text_hidden() -> usize {
    512
}
fn text_inner() -> usize {
    2048
}
fn twelve() -> usize {
    12
}
fn text_heads() -> usize {
    8
}
fn text_positions() -> usize {
    77
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn clip_eps() -> f64 {
    1e-5
}
fn text_pad() -> u32 {
    1
}
fn text_eos() -> u32 {
    49407
}
fn vision_hidden() -> usize {
    768
}
fn vision_inner() -> usize {
    3072
}
fn three() -> usize {
    3
}
fn vision_image() -> usize {
    224
}
fn vision_patch() -> usize {
    32
}
fn projection() -> usize {
    512
}

/// CLIP's layer names, shared by both towers (under `text_model.` and `vision_model.`).
const LAYERS: WeightNames = WeightNames {
    layer: "encoder.layers.{i}",
    qkv: QkvNames::Separate { q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj" },
    attention_out: "self_attn.out_proj",
    attention_norm: "layer_norm1",
    ffn_up: "mlp.fc1",
    ffn_down: "mlp.fc2",
    ffn_norm: "layer_norm2",
    ..WeightNames::EMPTY
};

/// The image tower: `vision_model.`, `pre_layrnorm` before the layers, `post_layernorm` on the
/// class token.
pub const VISION_NAMES: WeightNames =
    WeightNames { base: &["vision_model"], embedding_norm: "pre_layrnorm", final_norm: "post_layernorm", ..LAYERS };

/// The image parts: the patch input (no bias) and the joint space.
pub const VISION: VisionNames = VisionNames {
    patches: PatchNames {
        projection: "embeddings.patch_embedding",
        class_token: "embeddings.class_embedding",
        positions: "embeddings.position_embedding.weight",
        batched: false,
    },
    dual: Some(DualNames {
        vision: &VISION_NAMES,
        text_projection: "text_projection",
        visual_projection: "visual_projection",
        logit_scale: "logit_scale",
    }),
    classifier: "",
    language: None,
};

/// CLIP's names: the text tower under `text_model.` (this table), the image tower and the
/// projections in [`VISION`].
pub const NAMES: WeightNames = WeightNames {
    base: &["text_model"],
    word: "embeddings.token_embedding",
    positions: "embeddings.position_embedding",
    final_norm: "final_layer_norm",
    vision: Some(&VISION),
    ..LAYERS
};

/// The spec of a CLIP `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: ClipConfig = config.parse()?;
    let sub = |field: &str, value: &serde_json::Value| -> ConfigFile {
        ConfigFile { path: config.path.clone(), json: serde_json::json!({ field: value.clone() }) }
    };
    // Parsed through the file's own error path (`text_config.hidden_size`: ...).
    #[derive(Deserialize)]
    struct Text {
        text_config: ClipTextConfig,
    }
    #[derive(Deserialize)]
    struct Vision {
        vision_config: ClipVisionConfig,
    }
    let text: ClipTextConfig = sub("text_config", &cfg.text_config).parse::<Text>()?.text_config;
    let vision: ClipVisionConfig = sub("vision_config", &cfg.vision_config).parse::<Vision>()?.vision_config;
    config.require_heads(
        "text_config.hidden_size",
        text.hidden_size,
        "text_config.num_attention_heads",
        text.num_attention_heads,
    )?;
    config.require_heads(
        "vision_config.hidden_size",
        vision.hidden_size,
        "vision_config.num_attention_heads",
        vision.num_attention_heads,
    )?;
    config.require_positive("text_config.vocab_size", text.vocab_size)?;
    config.require_positive("text_config.intermediate_size", text.intermediate_size)?;
    config.require_positive("text_config.max_position_embeddings", text.max_position_embeddings)?;
    config.require_positive("projection_dim", cfg.projection_dim)?;
    let text_tower = TowerSpec::decoder(
        text.vocab_size,
        text.hidden_size,
        text.num_hidden_layers,
        text.num_attention_heads,
        text.max_position_embeddings,
    )
    .with_norm(NormSpec::LayerNorm { eps: text.layer_norm_eps, bias: true })
    .with_feed_forward(FeedForwardSpec::plain(
        text.intermediate_size,
        config.activation("text_config.hidden_act", &text.hidden_act)?,
    ));
    let mut vision_tower = super::vit::image_tower(
        config,
        (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads, vision.intermediate_size),
        (vision.image_size, vision.patch_size, vision.num_channels),
        config.activation("vision_config.hidden_act", &vision.hidden_act)?,
        vision.layer_norm_eps,
    )?;
    // `pre_layrnorm` on the embeddings.
    vision_tower.embeddings.norm = true;
    if text.pad_token_id as usize >= text.vocab_size {
        return Err(config.error(format!(
            "`text_config.pad_token_id` {} is outside the vocabulary ({} tokens)",
            text.pad_token_id, text.vocab_size
        )));
    }
    Ok(ArchSpec {
        stacks: Stacks::DualEncoder { text: text_tower, vision: vision_tower, projection_dim: cfg.projection_dim },
        heads: Vec::new(),
        tokens: SpecialTokens { eos: vec![text.eos_token_id], pad: text.pad_token_id, decoder_start: None },
    })
}
