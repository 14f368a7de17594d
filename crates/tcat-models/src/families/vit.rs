//! ViT (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words: Transformers for Image
//! Recognition at Scale", §3.1, eq. 1–4): the image cut into patches, each projected to the
//! hidden width, a learned class token in front and learned positions added; a pre-LayerNorm
//! encoder with exact GELU, a final LayerNorm on every token, and (when the checkpoint has one)
//! BERT's tanh pooler on the class token. Hugging Face `model_type` `vit` (`ViTModel`, and the
//! base model of `ViTForImageClassification` under `vit.`).
//!
//! ```
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vit");
//! let config = tcat_models::ConfigFile::read(&dir.join("config.json")).unwrap();
//! let spec = tcat_models::vit::spec(&config).unwrap();
//! assert_eq!(spec.kind(), tcat_spec::ModelKind::Vision);
//! ```

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{PatchNames, QkvNames, VisionNames, WeightNames};

/// The fields of a ViT `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct VitConfig {
    /// Width of the hidden states.
    #[serde(default = "default_hidden")]
    pub hidden_size: usize,
    /// Number of layers.
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    #[serde(default = "default_layers")]
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    #[serde(default = "default_inner")]
    pub intermediate_size: usize,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Image side in pixels (the position table is for this size).
    #[serde(default = "default_image")]
    pub image_size: usize,
    /// Patch side in pixels.
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Colour channels.
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    /// Whether the query, key and value projections have biases.
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The pooler's width (only the hidden width is supported).
    #[serde(default)]
    pub pooler_output_size: Option<usize>,
    /// The pooler's activation (only `tanh` is supported).
    #[serde(default = "default_pooler_act")]
    pub pooler_act: String,
    /// The saved classes (one label per class of an image classifier).
    #[serde(default)]
    pub id2label: Option<serde_json::Map<String, serde_json::Value>>,
    /// The model classes the checkpoint was saved from.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
}

fn default_hidden() -> usize {
    768
}
fn default_layers() -> usize {
    12
}
fn default_inner() -> usize {
    3072
}
fn default_act() -> String {
    "gelu".into()
}
fn default_image() -> usize {
    224
}
fn default_patch() -> usize {
    16
}
fn default_channels() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pooler_act() -> String {
    "tanh".into()
}

/// ViT's patch input: `embeddings.patch_embeddings.projection`, `embeddings.cls_token`
/// `[1, 1, hidden]`, `embeddings.position_embeddings` `[1, tokens, hidden]`.
pub const PATCHES: VisionNames = VisionNames {
    patches: PatchNames {
        projection: "embeddings.patch_embeddings.projection",
        class_token: "embeddings.cls_token",
        positions: "embeddings.position_embeddings",
        batched: true,
    },
    dual: None,
    classifier: "classifier",
    language: None,
};

/// ViT's names: `vit.` (or bare) base model, BERT-like layer names with pre-norm
/// `layernorm_before` / `layernorm_after`, final `layernorm`, `pooler.dense`.
pub const NAMES: WeightNames = WeightNames {
    base: &["vit", ""],
    layer: "encoder.layer.{i}",
    qkv: QkvNames::Separate {
        q: "attention.attention.query",
        k: "attention.attention.key",
        v: "attention.attention.value",
    },
    attention_out: "attention.output.dense",
    attention_norm: "layernorm_before",
    ffn_up: "intermediate.dense",
    ffn_down: "output.dense",
    ffn_norm: "layernorm_after",
    final_norm: "layernorm",
    pooler: "pooler.dense",
    vision: Some(&PATCHES),
    ..WeightNames::EMPTY
};

/// A pre-norm image tower over `image`-pixel squares in `patch`-pixel patches: learned positions
/// for every patch and the class token, a final norm.
pub(crate) fn image_tower(
    config: &ConfigFile,
    (hidden, layers, heads, inner): (usize, usize, usize, usize),
    (image, patch, channels): (usize, usize, usize),
    activation: ActivationKind,
    eps: f64,
) -> Result<TowerSpec> {
    config.require_positive("patch_size", patch)?;
    config.require_positive("num_channels", channels)?;
    config.require_positive("intermediate_size", inner)?;
    if image == 0 || !image.is_multiple_of(patch) {
        return Err(config.error(format!("`image_size` {image} is not a whole number of `patch_size` {patch} patches")));
    }
    let side = image / patch;
    let tokens = side.checked_mul(side).and_then(|n| n.checked_add(1)).ok_or_else(|| {
        config.error(format!("`image_size` {image} / `patch_size` {patch}: the number of patches overflows"))
    })?;
    let mut tower = TowerSpec::encoder(0, hidden, layers, heads, tokens)
        .with_residual(ResidualSpec::Pre)
        .with_norm(NormSpec::LayerNorm { eps, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(inner, activation))
        .with_positions(PositionSpec::Learned { ids: PositionIdRule::Sequential { offset: 0 } });
    tower.embeddings = EmbeddingSpec {
        input: InputKind::Patches { image_size: image, patch_size: patch, channels },
        ..EmbeddingSpec::tokens()
    };
    tower.final_norm = true;
    Ok(tower)
}

/// The spec of a ViT `config.json`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: VitConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_attention_heads", cfg.num_attention_heads)?;
    if cfg.pooler_output_size.is_some_and(|n| n != cfg.hidden_size) || cfg.pooler_act != "tanh" {
        return Err(config.error(format!(
            "a pooler of width {:?} with `{}` is not supported (only the hidden width with tanh)",
            cfg.pooler_output_size, cfg.pooler_act
        )));
    }
    let mut tower = image_tower(
        config,
        (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size),
        (cfg.image_size, cfg.patch_size, cfg.num_channels),
        config.activation("hidden_act", &cfg.hidden_act)?,
        cfg.layer_norm_eps,
    )?;
    tower.attention.qkv_bias = cfg.qkv_bias;
    let mut heads = vec![HeadSpec::Pooler];
    // ViTForImageClassification: a classifier over `id2label`'s classes on the class token.
    if cfg.architectures.iter().flatten().any(|a| a == "ViTForImageClassification") {
        let labels = cfg.id2label.as_ref().map_or(2, |m| m.len());
        config.require_positive("id2label", labels)?;
        heads.push(HeadSpec::Classification { labels });
    }
    Ok(ArchSpec::encoder(tower, heads))
}
