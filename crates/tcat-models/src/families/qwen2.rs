//! Qwen2 (Qwen Team 2024, "Qwen2 Technical Report"): the LLaMA architecture with biases on the
//! query, key and value projections (none on the output), and sliding-window attention in the
//! layers its config names. Hugging Face `model_type` `qwen2`.

use serde::Deserialize;
use tcat_core::Result;
use tcat_spec::{ArchSpec, AttentionPattern, Stacks};

use crate::ConfigFile;
use crate::families::llama::{LlamaConfig, spec_with};

/// Qwen2's sliding-window settings (the rest is [`LlamaConfig`]).
#[derive(Debug, Clone, Deserialize)]
struct Qwen2Window {
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(default)]
    max_window_layers: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
}

/// The spec of a Qwen2 `config.json`. As transformers does, the window applies only with
/// `use_sliding_window`, in the layers `layer_types` marks `sliding_attention` (by default
/// those from `max_window_layers` on).
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    let cfg: LlamaConfig = config.parse()?;
    let w: Qwen2Window = config.parse()?;
    let window = if w.use_sliding_window { w.sliding_window } else { None };
    let layers = cfg.num_hidden_layers;
    let types = w.layer_types.unwrap_or_else(|| {
        let sliding = |i: usize| window.is_some() && i >= w.max_window_layers;
        (0..layers).map(|i| if sliding(i) { "sliding_attention" } else { "full_attention" }.to_string()).collect()
    });
    if types.len() != layers {
        return Err(config.error(format!("`layer_types` has {} entries for {layers} layers", types.len())));
    }
    let schedule = types
        .iter()
        .map(|t| match (t.as_str(), window) {
            ("full_attention", _) => Ok(AttentionPattern::Dense),
            ("sliding_attention", Some(window)) => Ok(AttentionPattern::Local { window }),
            ("sliding_attention", None) => Ok(AttentionPattern::Dense),
            (other, _) => Err(config.error(format!("layer type `{other}` is not full_attention or sliding_attention"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut spec = spec_with(config, &cfg, schedule)?;
    if let Stacks::Decoder { tower } = &mut spec.stacks {
        tower.attention.qkv_bias = true;
        tower.attention.out_bias = false;
    }
    Ok(spec)
}
