//! BLOOM (BigScience 2022, "BLOOM: A 176B-Parameter Open-Access Multilingual Language Model"):
//! no position embeddings but ALiBi biases, a LayerNorm on the word embeddings, fused QKV
//! stored head by head, pre-LN, tanh-approximated GELU. Hugging Face `model_type` `bloom`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// The fields of the `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct BloomConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    #[serde(alias = "n_embed")]
    pub hidden_size: usize,
    /// Number of layers.
    #[serde(alias = "num_hidden_layers")]
    pub n_layer: usize,
    /// Attention heads per layer.
    #[serde(alias = "num_attention_heads")]
    pub n_head: usize,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Residuals taken after the norms (true only in some early checkpoints).
    #[serde(default)]
    pub apply_residual_connection_post_layernorm: bool,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-5
}

/// ALiBi extrapolates; this bounds the KV cache of one generation.
const MAX_POSITIONS: usize = 8192;

/// BLOOM's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "word_embeddings",
    embedding_norm: "word_embeddings_layernorm",
    layer: "h.{i}",
    qkv: QkvNames::FusedPerHead("self_attention.query_key_value"),
    attention_out: "self_attention.dense",
    attention_norm: "input_layernorm",
    ffn_up: "mlp.dense_h_to_4h",
    ffn_down: "mlp.dense_4h_to_h",
    ffn_norm: "post_attention_layernorm",
    final_norm: "ln_f",
    ..WeightNames::EMPTY
};

/// The spec of a BLOOM `config.json`: ALiBi instead of positions, a LayerNorm on the
/// embeddings, GELU (tanh).
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: BloomConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "n_head", cfg.n_head)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    if cfg.apply_residual_connection_post_layernorm {
        return Err(config.error("`apply_residual_connection_post_layernorm` true is not supported yet"));
    }
    let h = cfg.hidden_size;
    let mut tower = TowerSpec::decoder(cfg.vocab_size, h, cfg.n_layer, cfg.n_head, MAX_POSITIONS)
        .with_positions(PositionSpec::Alibi)
        .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_epsilon, bias: true });
    tower.embeddings.norm = true;
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 3);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}
