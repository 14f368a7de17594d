//! RoBERTa (Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach") and
//! XLM-RoBERTa (Conneau et al. 2019): BERT's architecture under the `roberta.` prefix with an
//! `lm_head`, and positions that start at `padding_idx + 1`. Hugging Face `model_type`
//! `roberta` and `xlm-roberta`.

use tcat_core::Result;
use tcat_spec::{ArchSpec, PositionIdRule};

use crate::ConfigFile;
use crate::build::{MlmNames, WeightNames};

/// RoBERTa's names: BERT's under `roberta.`, with the `lm_head` masked-LM head.
pub const NAMES: WeightNames = WeightNames {
    base: &["roberta", ""],
    mlm: Some(MlmNames {
        transform: "lm_head.dense",
        norm: "lm_head.layer_norm",
        decoder: "lm_head.decoder",
        bias: &["lm_head.bias", "lm_head.decoder.bias"],
    }),
    ..crate::bert::NAMES
};

/// The spec of a RoBERTa or XLM-RoBERTa `config.json`: BERT's, with positions counted from
/// `padding_idx + 1`.
pub fn spec(config: &ConfigFile) -> Result<ArchSpec> {
    crate::bert::spec_with(config, |cfg| PositionIdRule::PaddingAware { padding_idx: cfg.pad_token_id.unwrap_or(1) })
}
