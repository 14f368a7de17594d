//! RoBERTa (Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach") and
//! XLM-RoBERTa (Conneau et al. 2019): BERT's architecture under the `roberta.` prefix with an
//! `lm_head`, and positions that start at `padding_idx + 1`. Hugging Face `model_type`
//! `roberta` and `xlm-roberta`.

use tcat_core::Result;

use crate::bert::{Layout, load_with};
use crate::{Checkpoint, ConfigFile, EncoderModel, PositionRule};

const ROBERTA: Layout = Layout {
    base_prefixes: &["roberta", ""],
    mlm_prefix: "lm_head",
    positions: |cfg| PositionRule::PaddingAware { padding_idx: cfg.pad_token_id.unwrap_or(1) },
};

/// Loads a RoBERTa-layout encoder (base model and MLM head when present).
pub fn load(config: &ConfigFile, ckpt: &Checkpoint) -> Result<EncoderModel> {
    load_with(config, ckpt, &ROBERTA)
}
