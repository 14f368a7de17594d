//! sentence-transformers folders (Reimers & Gurevych 2019): the pooling and normalisation that
//! turn token states into one sentence embedding, read from `modules.json` and
//! `1_Pooling/config.json`.

use std::path::Path;

use tcat_blocks::SentencePooling;
use tcat_core::{Error, Result};

/// Pooling and normalisation of a sentence-transformers model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceConfig {
    /// How token states are pooled.
    pub pooling: SentencePooling,
    /// Whether the pooled vector is L2-normalised.
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
        let mut config = SentenceConfig { pooling: SentencePooling::Mean, normalize: false };
        for module in &modules {
            let kind = module.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let path = module.get("path").and_then(|p| p.as_str()).unwrap_or("");
            if kind.ends_with("models.Normalize") {
                config.normalize = true;
            } else if kind.ends_with("models.Pooling") {
                let file = root.join(path).join("config.json");
                let pooling: serde_json::Value = read_json(&file)?;
                let on = |key: &str| pooling.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
                config.pooling = if on("pooling_mode_mean_tokens") {
                    SentencePooling::Mean
                } else if on("pooling_mode_cls_token") {
                    SentencePooling::Cls
                } else {
                    return Err(Error::Config {
                        file,
                        message: "only mean-token and cls-token pooling are supported".into(),
                    });
                };
            }
        }
        Ok(Some(config))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Config { file: path.to_path_buf(), message: format!("malformed JSON: {e}") })
}
