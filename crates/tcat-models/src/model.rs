//! Dispatch on `model_type`: one entry point that loads any supported checkpoint.

use candle_core::{DType, Device};
use tcat_core::{Error, Result};

use crate::gguf::GgufFile;
use crate::{Checkpoint, ConfigFile, DecoderModel, EncoderModel, Format, ModelSource};

/// The `model_type` values tcat loads.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "bert",
    "bloom",
    "ctrl",
    "distilbert",
    "gpt2",
    "gpt_bigcode",
    "gpt_neo",
    "gpt_neox",
    "gptj",
    "llama",
    "mistral",
    "openai-gpt",
    "opt",
    "roberta",
    "xlm-roberta",
];

/// A loaded model, by what it computes.
#[derive(Debug, Clone)]
pub enum Model {
    /// A bidirectional encoder (hidden states, pooler, masked-LM head).
    Encoder(EncoderModel),
    /// A causal language model.
    Decoder(DecoderModel),
}

impl Model {
    /// Reads `config.json`, picks the family by `model_type`, and loads the weights.
    pub fn load(source: &ModelSource, device: &Device, dtype: DType) -> Result<Self> {
        if source.format == Format::Gguf {
            return Self::load_gguf(source, device, Some(dtype));
        }
        let config = ConfigFile::read(&source.config)?;
        Self::check_model_type(&config)?;
        Self::from_checkpoint(&config, &Checkpoint::open(source, device, dtype)?)
    }

    /// Loads a GGUF file, keeping its projections quantized when `dtype` is `None` and
    /// dequantizing everything to `dtype` otherwise.
    pub fn load_gguf(source: &ModelSource, device: &Device, dtype: Option<DType>) -> Result<Self> {
        let mut file = GgufFile::open(&source.weights[0])?;
        Ok(Model::Decoder(file.load_llama(device, dtype)?))
    }

    /// Builds the family named by `config`'s `model_type` from already opened weights.
    pub fn from_checkpoint(config: &ConfigFile, ckpt: &Checkpoint) -> Result<Self> {
        Self::check_model_type(config)?;
        Ok(match config.model_type()? {
            "bert" => Model::Encoder(crate::bert::load(config, ckpt)?),
            "roberta" | "xlm-roberta" => Model::Encoder(crate::roberta::load(config, ckpt)?),
            "distilbert" => Model::Encoder(crate::distilbert::load(config, ckpt)?),
            "ctrl" => Model::Decoder(crate::ctrl::load(config, ckpt)?),
            "openai-gpt" => Model::Decoder(crate::openai_gpt::load(config, ckpt)?),
            "bloom" => Model::Decoder(crate::bloom::load(config, ckpt)?),
            "gpt2" => Model::Decoder(crate::gpt2::load(config, ckpt)?),
            "gpt_neo" => Model::Decoder(crate::gpt_neo::load(config, ckpt)?),
            "gpt_neox" => Model::Decoder(crate::gpt_neox::load(config, ckpt)?),
            "gpt_bigcode" => Model::Decoder(crate::gpt2::load_bigcode(config, ckpt)?),
            "gptj" => Model::Decoder(crate::gptj::load(config, ckpt)?),
            "llama" | "mistral" => Model::Decoder(crate::llama::load(config, ckpt)?),
            "opt" => Model::Decoder(crate::opt::load(config, ckpt)?),
            _ => unreachable!("checked against SUPPORTED_MODEL_TYPES above"),
        })
    }

    fn check_model_type(config: &ConfigFile) -> Result<()> {
        let model_type = config.model_type()?.to_string();
        if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(Error::UnknownModelType {
                file: config.path.clone(),
                found: model_type,
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        Ok(())
    }

    /// The encoder, if this is one.
    pub fn as_encoder(&self) -> Option<&EncoderModel> {
        match self {
            Model::Encoder(m) => Some(m),
            Model::Decoder(_) => None,
        }
    }

    /// The decoder, if this is one.
    pub fn as_decoder(&self) -> Option<&DecoderModel> {
        match self {
            Model::Decoder(m) => Some(m),
            Model::Encoder(_) => None,
        }
    }

    /// The id used to pad batches.
    pub fn pad_token_id(&self) -> u32 {
        match self {
            Model::Encoder(m) => m.pad_token_id(),
            Model::Decoder(m) => m.pad_token_id(),
        }
    }
}
