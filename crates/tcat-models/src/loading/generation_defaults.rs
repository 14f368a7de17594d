//! The generation token ids as transformers' `generate` reads them: from
//! `generation_config.json` beside `config.json` when it exists, otherwise from the generation
//! fields of `config.json` itself (`GenerationConfig.from_pretrained`, then
//! `_prepare_special_tokens`).

use std::path::Path;

use serde::Deserialize;
use tcat_core::{Error, Result};

use crate::config::TokenIds;
use crate::{ConfigFile, Seq2seqTokens};

/// The token fields of a generation config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationDefaults {
    /// `bos_token_id`: the decoder start when `decoder_start_token_id` is absent.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// `eos_token_id`: one id or a list (none: generation runs to its length limit).
    #[serde(default)]
    pub eos_token_id: TokenIds,
    /// `pad_token_id` (the first EOS when absent).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// `decoder_start_token_id`.
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
    /// `forced_bos_token_id`: the first generated token.
    #[serde(default)]
    pub forced_bos_token_id: Option<u32>,
    /// `forced_eos_token_id`: the last token when generation reaches its length limit.
    #[serde(default)]
    pub forced_eos_token_id: TokenIds,
    /// `bad_words_ids`: token sequences never generated.
    #[serde(default)]
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
    /// Whether the values came from `generation_config.json` (else from `config.json`).
    #[serde(skip)]
    pub from_generation_config: bool,
}

impl GenerationDefaults {
    /// Reads `generation_config.json` beside `config`, else `config`'s own fields.
    pub fn read(config: &ConfigFile) -> Result<Self> {
        let path = config.path.with_file_name("generation_config.json");
        if path.is_file() {
            let file = ConfigFile::read(&path)?;
            return Ok(Self { from_generation_config: true, ..file.parse()? });
        }
        config.parse()
    }

    /// An encoder-decoder's generation ids, as transformers settles them: the decoder start
    /// falls back to `bos_token_id`, the padding id to the first EOS.
    pub fn seq2seq_tokens(&self, fallback: &Seq2seqTokens, source: &Path) -> Result<Seq2seqTokens> {
        let eos = self.eos_token_id.to_vec();
        let forced_eos = self.forced_eos_token_id.to_vec();
        if forced_eos.len() > 1 {
            return Err(Error::NotImplemented {
                what: format!("{}: several `forced_eos_token_id`s ({forced_eos:?})", source.display()),
            });
        }
        Ok(Seq2seqTokens {
            decoder_start: self.decoder_start_token_id.or(self.bos_token_id).unwrap_or(fallback.decoder_start),
            pad: self.pad_token_id.or(eos.first().copied()).unwrap_or(fallback.pad),
            eos,
            forced_bos: self.forced_bos_token_id,
            forced_eos: forced_eos.first().copied(),
            bad_words: self.bad_words_ids.clone().unwrap_or_default(),
        })
    }
}
