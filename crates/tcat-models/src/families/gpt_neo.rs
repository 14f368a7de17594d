//! GPT-Neo (Black et al. 2021): a GPT-2-like pre-LN decoder whose layers alternate between
//! global attention and local attention over a window of recent tokens, with unscaled attention
//! scores (no `1/√d`). Hugging Face `model_type` `gpt_neo`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::*;

use crate::ConfigFile;
use crate::build::{QkvNames, WeightNames};
use crate::config::TokenIds;
use crate::decoder::special_ids;

/// The fields of the `config.json` that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Width of the feed-forward layer (`4 · hidden_size` when null).
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Keys seen by a local layer's queries, themselves included.
    pub window_size: usize,
    /// `[[["global", "local"], n], ...]`: attention kinds repeated `n` times.
    pub attention_types: Vec<(Vec<String>, usize)>,
    /// Feed-forward activation name.
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// LayerNorm ε.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// Padding token, when the config names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}

/// GPT-Neo's names.
pub const NAMES: WeightNames = WeightNames {
    base: &["transformer", ""],
    word: "wte",
    positions: "wpe",
    layer: "h.{i}",
    qkv: QkvNames::Separate { q: "attn.attention.q_proj", k: "attn.attention.k_proj", v: "attn.attention.v_proj" },
    attention_out: "attn.attention.out_proj",
    attention_norm: "ln_1",
    ffn_up: "mlp.c_fc",
    ffn_down: "mlp.c_proj",
    ffn_norm: "ln_2",
    final_norm: "ln_f",
    ..WeightNames::EMPTY
};

/// The spec of a GPT-Neo `config.json`: global and local (windowed) layers as its
/// `attention_types` list says, unscaled scores, no q/k/v biases.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: GptNeoConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_heads", cfg.num_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("window_size", cfg.window_size)?;
    // The expansion is sized by the config: checked against `num_layers` before it is made.
    let expanded = cfg
        .attention_types
        .iter()
        .try_fold(0usize, |acc, (kinds, n)| kinds.len().checked_mul(*n).and_then(|k| acc.checked_add(k)));
    if expanded != Some(cfg.num_layers) {
        return Err(config.error(format!(
            "`attention_types` expands to {} layers, `num_layers` is {}",
            expanded.map_or("more than usize::MAX".to_string(), |n| n.to_string()),
            cfg.num_layers
        )));
    }
    let kinds: Vec<String> =
        cfg.attention_types.iter().flat_map(|(kinds, n)| (0..*n).flat_map(move |_| kinds.iter().cloned())).collect();
    if kinds.len() != cfg.num_layers {
        return Err(config.error(format!(
            "`attention_types` expands to {} layers, `num_layers` is {}",
            kinds.len(),
            cfg.num_layers
        )));
    }
    let schedule = kinds
        .iter()
        .map(|k| match k.as_str() {
            "global" => Ok(AttentionPattern::Dense),
            "local" => Ok(AttentionPattern::Local { window: cfg.window_size }),
            bad => Err(config.error(format!("attention type `{bad}` is not `global` or `local`"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let h = cfg.hidden_size;
    let mut tower = TowerSpec::decoder(cfg.vocab_size, h, cfg.num_layers, cfg.num_heads, cfg.max_position_embeddings)
        .with_norm(NormSpec::LayerNorm { eps: cfg.layer_norm_epsilon, bias: true })
        .with_feed_forward(FeedForwardSpec::plain(
            cfg.intermediate_size.unwrap_or(h.saturating_mul(4)),
            config.activation("activation_function", &cfg.activation_function)?,
        ));
    tower.attention = AttentionSpec { qkv_bias: false, scale: ScaleRule::One, schedule, ..tower.attention };
    let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
    Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied: true, bias: false }).with_tokens(SpecialTokens {
        eos,
        pad,
        decoder_start: None,
    }))
}
