//! Dispatch on `model_type`: one entry point that loads any supported checkpoint.

use candle_core::{DType, Device};
use tcat_core::{Error, Result};

use crate::gguf::GgufFile;
use crate::{
    Checkpoint, ConfigFile, DecoderModel, DualEncoderModel, EncoderModel, Format, ModelSource, Seq2seqModel,
    VisionLanguageModel, VisionModel,
};

/// The `model_type` values tcat loads.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "albert",
    "bart",
    "bert",
    "bloom",
    "clip",
    "ctrl",
    "deberta",
    "deberta-v2",
    "deepseek_v2",
    "deepseek_v3",
    "distilbert",
    "electra",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gpt2",
    "gpt_bigcode",
    "gpt_neo",
    "gpt_neox",
    "gptj",
    "llama",
    "marian",
    "mbart",
    "mistral",
    "mixtral",
    "modernbert",
    "mt5",
    "olmoe",
    "openai-gpt",
    "opt",
    "phi3",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "roberta",
    "switch_transformers",
    "t5",
    "vit",
    "xlm",
    "xlm-roberta",
    "xlnet",
];

/// A loaded model, by what it computes.
#[derive(Debug, Clone)]
pub enum Model {
    /// A bidirectional encoder (hidden states, pooler, masked-LM head).
    Encoder(EncoderModel),
    /// A causal language model.
    Decoder(DecoderModel),
    /// An encoder-decoder language model (T5, BART, Marian).
    Seq2seq(Seq2seqModel),
    /// An image encoder (ViT).
    Vision(VisionModel),
    /// Text and image towers in a joint space (CLIP).
    DualEncoder(DualEncoderModel),
    /// An image tower feeding a text decoder (CoCa, PaLM-E).
    VisionLanguage(Box<VisionLanguageModel>),
}

impl Model {
    /// Reads `config.json`, picks the family by `model_type`, and loads the weights.
    pub fn load(source: &ModelSource, device: &Device, dtype: DType) -> Result<Self> {
        match source.format {
            Format::Gguf => return Self::load_gguf(source, device, Some(dtype)),
            Format::Preset => {
                return Err(Error::InvalidInput(format!(
                    "{}: presets are built from the catalog (tcat_catalog) with Model::preset",
                    source.name
                )));
            }
            Format::HuggingFace => {}
        }
        let config = ConfigFile::read(&source.config)?;
        Self::check_model_type(&config)?;
        Self::from_checkpoint(&config, &Checkpoint::open(source, device, dtype)?)
    }

    /// Loads a GGUF file, keeping its projections quantized when `dtype` is `None` and
    /// dequantizing everything to `dtype` otherwise.
    pub fn load_gguf(source: &ModelSource, device: &Device, dtype: Option<DType>) -> Result<Self> {
        let file = GgufFile::open_without_vocabulary(&source.weights[0])?;
        let context_key = format!("{}.context_length", file.architecture()?);
        Ok(Model::Decoder(file.load(device, dtype)?.with_default_position_limit(&context_key)))
    }

    /// A preset: the architecture `spec` with seeded random weights (normal, standard deviation
    /// 0.02; norms one, biases zero), named `preset:NAME` in messages. The same seed gives
    /// the same weights on every run.
    ///
    /// ```
    /// use tcat_models::spec::{ArchSpec, HeadSpec, TowerSpec};
    /// let spec = ArchSpec::decoder(TowerSpec::decoder(64, 16, 2, 2, 32), HeadSpec::Lm { tied: true, bias: false });
    /// let model = tcat_models::Model::preset(&spec, "tiny-gpt", 0, &candle_core::Device::Cpu, candle_core::DType::F32)?;
    /// assert_eq!(model.as_decoder().unwrap().vocab_size(), 64);
    /// # Ok::<(), tcat_core::Error>(())
    /// ```
    pub fn preset(spec: &tcat_spec::ArchSpec, name: &str, seed: u64, device: &Device, dtype: DType) -> Result<Self> {
        let weights = crate::build::RandomWeights::new(format!("preset:{name}"), seed, 0.02, dtype, device);
        crate::build::build(spec, &crate::build::WeightNames::PRESET, &weights)
    }

    /// Builds the family named by `config`'s `model_type` from already opened weights.
    pub fn from_checkpoint(config: &ConfigFile, ckpt: &Checkpoint) -> Result<Self> {
        Self::check_model_type(config)?;
        config.refuse("quantization_config", "tcat loads unquantized safetensors weights (or GGUF files)")?;
        let (spec, names) = crate::families::spec_and_names(config)?;
        // Tensors the config holds (LongRoPE's factor lists), as a GGUF file would store them.
        let rotary_dim = match spec.towers().last().map(|t| (t.positions, t.attention.head_dim)) {
            Some((tcat_spec::PositionSpec::Rotary(r), head_dim)) => r.rotary_dim(head_dim),
            _ => 0,
        };
        let extra = crate::rope_config::long_rope_factors(config, rotary_dim)?;
        let weights = crate::build::WithConfigTensors::new(ckpt, extra)?;
        let model = crate::build::build(&spec, &names, &weights)?;
        let defaults = crate::GenerationDefaults::read(config)?;
        let model = match model {
            // transformers stops at the generation config's EOS ids when the checkpoint has one.
            Model::Decoder(d) if defaults.from_generation_config && !defaults.eos_token_id.to_vec().is_empty() => {
                Model::Decoder(d.with_eos_token_ids(defaults.eos_token_id.to_vec()))
            }
            model => model,
        };
        Ok(match (model, crate::families::positions_field(config)) {
            (Model::Decoder(d), Some(field)) => Model::Decoder(d.with_default_position_limit(field)),
            (Model::Seq2seq(m), _) => {
                let tokens = defaults.seq2seq_tokens(m.tokens(), &config.path)?;
                Model::Seq2seq(m.with_tokens(tokens))
            }
            (model, _) => model,
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
            _ => None,
        }
    }

    /// The encoder-decoder, if this is one.
    pub fn as_seq2seq(&self) -> Option<&Seq2seqModel> {
        match self {
            Model::Seq2seq(m) => Some(m),
            _ => None,
        }
    }

    /// The image encoder, if this is one.
    pub fn as_vision(&self) -> Option<&VisionModel> {
        match self {
            Model::Vision(m) => Some(m),
            _ => None,
        }
    }

    /// The dual text-image encoder, if this is one.
    pub fn as_dual_encoder(&self) -> Option<&DualEncoderModel> {
        match self {
            Model::DualEncoder(m) => Some(m),
            _ => None,
        }
    }

    /// The vision-language model, if this is one.
    pub fn as_vision_language(&self) -> Option<&VisionLanguageModel> {
        match self {
            Model::VisionLanguage(m) => Some(m),
            _ => None,
        }
    }

    /// The decoder, by value, if this is one.
    pub fn into_decoder(self) -> Option<DecoderModel> {
        match self {
            Model::Decoder(m) => Some(m),
            _ => None,
        }
    }

    /// The decoder, if this is one.
    pub fn as_decoder(&self) -> Option<&DecoderModel> {
        match self {
            Model::Decoder(m) => Some(m),
            _ => None,
        }
    }

    /// The id used to pad batches (0 for an image encoder, which reads no tokens).
    pub fn pad_token_id(&self) -> u32 {
        match self {
            Model::Encoder(m) => m.pad_token_id(),
            Model::Decoder(m) => m.pad_token_id(),
            Model::Seq2seq(m) => m.pad_token_id(),
            Model::Vision(_) => 0,
            Model::DualEncoder(m) => m.pad_token_id(),
            Model::VisionLanguage(m) => m.pad_token_id(),
        }
    }
}
