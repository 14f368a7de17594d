//! GPT-Neo (Black et al. 2021): a GPT-2-like pre-LN decoder whose layers alternate between
//! global attention and local attention over a window of recent tokens, with unscaled attention
//! scores (no `1/√d`). Hugging Face `model_type` `gpt_neo`.

use candle_nn::VarBuilder;
use serde::Deserialize;
use tcat_attention::{AttentionSchedule, LayerAttention, MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Linear, Result, WeightLayout};
use tcat_position::AbsolutePositions;

use crate::config::TokenIds;
use crate::decoder::{lm_head_or_tied, special_ids};
use crate::{Checkpoint, ConfigFile, DecoderModel};

/// The fields of a GPT-Neo `config.json` that shape the network.
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

/// Loads a GPT-Neo language model.
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<DecoderModel> {
    let cfg: GptNeoConfig = config.parse()?;
    config.require_heads("hidden_size", cfg.hidden_size, "num_heads", cfg.num_heads)?;
    config.require_positive("vocab_size", cfg.vocab_size)?;
    config.require_positive("window_size", cfg.window_size)?;
    let kinds: Vec<String> =
        cfg.attention_types.iter().flat_map(|(kinds, n)| (0..*n).flat_map(move |_| kinds.iter().cloned())).collect();
    if kinds.len() != cfg.num_layers {
        return Err(config.error(format!(
            "`attention_types` expands to {} layers, `num_layers` is {}",
            kinds.len(),
            cfg.num_layers
        )));
    }
    if let Some(bad) = kinds.iter().find(|k| *k != "global" && *k != "local") {
        return Err(config.error(format!("attention type `{bad}` is not `global` or `local`")));
    }
    let act =
        cfg.activation_function.parse::<Activation>().map_err(|e| config.error(format!("activation_function: {e}")))?;
    let root = ckpt.vb();
    let prefix = ckpt.find_prefix(&["transformer", ""], "wte.weight")?;
    let vb = if prefix.is_empty() { root.clone() } else { root.pp(prefix) };
    let build = || -> candle_core::Result<DecoderModel> {
        let h = cfg.hidden_size;
        let word = vb.get((cfg.vocab_size, h), "wte.weight")?;
        let positions = AbsolutePositions::load(vb.pp("wpe"), cfg.max_position_embeddings, h, 0)?;
        let schedule = AttentionSchedule::cycle(
            kinds
                .iter()
                .map(|k| match k.as_str() {
                    "local" => LayerAttention::Local { window: cfg.window_size },
                    _ => LayerAttention::Dense,
                })
                .collect(),
        )?;
        let layers = (0..kinds.len())
            .map(|i| layer(vb.pp(format!("h.{i}")), &cfg, act, schedule.for_layer(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_norm = Norm::load_layer_norm(vb.pp("ln_f"), h, cfg.layer_norm_epsilon)?;
        let head = lm_head_or_tied(&root, &word)?;
        let (eos, pad) = special_ids(&cfg.eos_token_id, cfg.pad_token_id, 0);
        Ok(DecoderModel::new(
            Embeddings::new(word, Some(positions), None, None),
            Stack::new(layers, Some(final_norm)),
            head,
            cfg.max_position_embeddings,
            eos,
            pad,
        ))
    };
    build().map_err(|e| ckpt.error(e))
}

fn layer(
    vb: VarBuilder,
    cfg: &GptNeoConfig,
    act: Activation,
    kind: LayerAttention,
) -> candle_core::Result<TransformerLayer> {
    let h = cfg.hidden_size;
    let inner = cfg.intermediate_size.unwrap_or(4 * h);
    let lin = |name: &str, i, o, bias| Linear::load(vb.pp(name), i, o, bias, WeightLayout::OutIn);
    let qkv = QkvProjection::stacked(
        lin("attn.attention.q_proj", h, h, false)?,
        lin("attn.attention.k_proj", h, h, false)?,
        lin("attn.attention.v_proj", h, h, false)?,
    );
    let attention = MultiHeadAttention::new(
        qkv,
        lin("attn.attention.out_proj", h, h, true)?,
        cfg.num_heads,
        cfg.num_heads,
        h / cfg.num_heads,
    )?
    .with_scale(1.0);
    let attention = kind.apply(attention);
    Ok(TransformerLayer::new(
        attention,
        Norm::load_layer_norm(vb.pp("ln_1"), h, cfg.layer_norm_epsilon)?,
        FeedForward::new(lin("mlp.c_fc", h, inner, true)?, lin("mlp.c_proj", inner, h, true)?, act),
        Norm::load_layer_norm(vb.pp("ln_2"), h, cfg.layer_norm_epsilon)?,
        Residual::PreNorm,
    ))
}
