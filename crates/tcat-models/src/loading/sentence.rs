//! sentence-transformers folders (Reimers & Gurevych 2019): the pooling, dense projections and
//! normalisation that turn token states into one sentence embedding, read from `modules.json`
//! and each module's folder. LaBSE (Feng et al. 2020) adds a `Dense` layer (tanh) after its
//! [CLS] pooling; MiniLM pools the mean. A module tcat does not know is refused by name.

use std::path::{Path, PathBuf};

use candle_core::{DType, Module, Tensor};
use tcat_blocks::SentencePooling;
use tcat_core::{Error, Linear, Result};

/// A `Dense` module: `activation(W x + b)` on the pooled vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceDense {
    /// The module's folder (holding `model.safetensors` with `linear.weight` / `linear.bias`).
    pub dir: PathBuf,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// Whether the projection has a bias.
    pub bias: bool,
    /// Whether `tanh` follows (LaBSE); the identity otherwise.
    pub tanh: bool,
}

/// Pooling, dense layers and normalisation of a sentence-transformers model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceConfig {
    /// How token states are pooled.
    pub pooling: SentencePooling,
    /// Dense modules applied to the pooled vector, in order.
    pub dense: Vec<SentenceDense>,
    /// Whether the final vector is L2-normalised.
    pub normalize: bool,
}

impl SentenceConfig {
    /// Reads the folder's sentence-transformers modules; `None` when it is not such a folder.
    pub fn read(root: &Path) -> Result<Option<Self>> {
        let modules_path = root.join("modules.json");
        if !modules_path.is_file() {
            return Ok(None);
        }
        let modules: Vec<serde_json::Value> = read_json(&modules_path)?;
        let mut config = SentenceConfig { pooling: SentencePooling::Mean, dense: Vec::new(), normalize: false };
        for (i, module) in modules.iter().enumerate() {
            let string = |key: &str| -> Result<&str> {
                match module.get(key) {
                    None | Some(serde_json::Value::Null) => Ok(""),
                    Some(serde_json::Value::String(s)) => Ok(s.as_str()),
                    Some(other) => Err(Error::Config {
                        file: modules_path.clone(),
                        message: format!("`[{i}].{key}`: invalid type: {other}, expected a string"),
                    }),
                }
            };
            let (kind, path) = (string("type")?, string("path")?);
            if path.contains("..") || Path::new(path).is_absolute() {
                return Err(Error::Config {
                    file: modules_path.clone(),
                    message: format!("`[{i}].path` is `{path}`, expected a folder inside the model folder"),
                });
            }
            let name = kind.rsplit('.').next().unwrap_or(kind);
            match name {
                "Transformer" => {}
                "Normalize" => config.normalize = true,
                "Pooling" => config.pooling = pooling(&root.join(path).join("config.json"))?,
                "Dense" => config.dense.push(dense(&root.join(path))?),
                _ => {
                    return Err(Error::Config {
                        file: modules_path.clone(),
                        message: format!(
                            "module `{kind}` is not supported (supported: Transformer, Pooling, Dense, Normalize)"
                        ),
                    });
                }
            }
        }
        Ok(Some(config))
    }

    /// The sentence embeddings `[batch, dim]` of `hidden` `[batch, seq, hidden]` under `mask`
    /// `[batch, seq]`: pooled, through the dense modules (loaded on `hidden`'s device and
    /// dtype), and normalised when the folder says so.
    pub fn embed(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mut x = self.pooling.pool(hidden, mask)?;
        for layer in &self.dense {
            x = layer.load(hidden.dtype(), hidden.device())?.forward(&x)?;
            if layer.tanh {
                x = x.tanh()?;
            }
        }
        if self.normalize {
            x = SentencePooling::l2_normalize(&x)?;
        }
        Ok(x)
    }
}

impl SentenceDense {
    fn load(&self, dtype: DType, device: &candle_core::Device) -> Result<Linear> {
        let file = self.dir.join("model.safetensors");
        let location = file.display().to_string();
        // Integer tensors would be converted to `dtype` silently: refuse them by name first.
        for (name, stored) in crate::loading::safetensors_header::read(&file)? {
            if name.starts_with("linear.") && !stored.is_float() {
                return Err(Error::InvalidInput(format!(
                    "{location}: tensor `{name}` is stored as {}, expected a float dtype (F16, BF16, F32 or F64) to \
                     load as {dtype:?}",
                    stored.dtype
                )));
            }
        }
        // SAFETY: the file is not modified while mapped.
        let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(std::slice::from_ref(&file), dtype, device) }
            .map_err(|e| Error::InvalidInput(format!("{location}: cannot read weights: {e}")))?;
        Linear::load(vb.pp("linear"), self.in_features, self.out_features, self.bias, tcat_core::WeightLayout::OutIn)
            .map_err(|e| Error::from_weights(e, &location))
    }
}

/// Fails when `config` has `key` with a JSON type other than `expected` (a mistyped flag
/// would otherwise read as absent), naming the file and the key.
fn check_type(file: &Path, config: &serde_json::Value, key: &str, expected: &str) -> Result<()> {
    let ok = |v: &serde_json::Value| match expected {
        "a boolean" => v.is_boolean(),
        "a string" => v.is_string(),
        _ => v.is_u64(),
    };
    match config.get(key) {
        Some(v) if !v.is_null() && !ok(v) => Err(Error::Config {
            file: file.to_path_buf(),
            message: format!("`{key}`: invalid type: {v}, expected {expected}"),
        }),
        _ => Ok(()),
    }
}

fn pooling(file: &Path) -> Result<SentencePooling> {
    let config: serde_json::Value = read_json(file)?;
    if let Some(map) = config.as_object() {
        for key in map.keys().filter(|k| k.starts_with("pooling_mode_") || k.as_str() == "include_prompt") {
            check_type(file, &config, key, "a boolean")?;
        }
    }
    check_type(file, &config, "pooling_mode", "a string")?;
    let on = |key: &str| config.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    // sentence-transformers 6 writes `pooling_mode`; earlier versions one flag per mode.
    let mode = config.get("pooling_mode").and_then(|v| v.as_str());
    let (others, modes) = (["max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"], ["mean", "cls"]);
    if others.iter().any(|m| on(&format!("pooling_mode_{m}"))) || mode.is_some_and(|m| !modes.contains(&m)) {
        return Err(Error::Config {
            file: file.to_path_buf(),
            message: "only mean and cls pooling are supported".into(),
        });
    }
    if mode == Some("cls") || on("pooling_mode_cls_token") {
        Ok(SentencePooling::Cls)
    } else if mode == Some("mean") || on("pooling_mode_mean_tokens") {
        Ok(SentencePooling::Mean)
    } else {
        Err(Error::Config { file: file.to_path_buf(), message: "no pooling mode set (expected mean or cls)".into() })
    }
}

fn dense(dir: &Path) -> Result<SentenceDense> {
    let file = dir.join("config.json");
    let config: serde_json::Value = read_json(&file)?;
    for (key, expected) in [
        ("in_features", "a positive integer"),
        ("out_features", "a positive integer"),
        ("bias", "a boolean"),
        ("activation_function", "a string"),
    ] {
        check_type(&file, &config, key, expected)?;
    }
    let size = |key: &str| {
        config
            .get(key)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .filter(|v| *v > 0)
            .ok_or_else(|| Error::Config { file: file.clone(), message: format!("missing positive `{key}`") })
    };
    let activation =
        config.get("activation_function").and_then(|v| v.as_str()).unwrap_or("torch.nn.modules.linear.Identity");
    let tanh = match activation.rsplit('.').next() {
        Some("Tanh") => true,
        Some("Identity") => false,
        _ => {
            return Err(Error::Config {
                file,
                message: format!("Dense activation `{activation}` is not supported (supported: Tanh, Identity)"),
            });
        }
    };
    Ok(SentenceDense {
        dir: dir.to_path_buf(),
        in_features: size("in_features")?,
        out_features: size("out_features")?,
        bias: config.get("bias").and_then(|v| v.as_bool()).unwrap_or(true),
        tanh,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Config { file: path.to_path_buf(), message: format!("malformed JSON: {e}") })
}
