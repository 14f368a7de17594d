//! Finding a checkpoint: a local folder, a weights file beside its config, or a hub id.

use std::path::{Path, PathBuf};

use tcat_core::{Error, Result};

/// The files of one checkpoint on local disk.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// What the user named (folder, file or hub id), for messages.
    pub name: String,
    /// The folder holding `config.json` and the optional side files.
    pub root: PathBuf,
    /// `config.json` (a GGUF file carries its configuration in its metadata instead).
    pub config: PathBuf,
    /// How the checkpoint is stored.
    pub format: Format,
    /// Weight files: one `model.safetensors`, the shards of a sharded index, or
    /// `pytorch_model.bin`.
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`, when present.
    pub tokenizer: Option<PathBuf>,
}

/// How a checkpoint is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Hugging Face layout: `config.json` beside safetensors or PyTorch weights.
    HuggingFace,
    /// One llama.cpp GGUF file holding metadata, tokenizer and (usually quantized) tensors.
    Gguf,
    /// A catalog preset (`preset:NAME`): an architecture with seeded random weights and no
    /// files, so no tokenizer.
    Preset,
}

const SAFETENSORS: &str = "model.safetensors";
const SHARD_INDEX: &str = "model.safetensors.index.json";
const PYTORCH: &str = "pytorch_model.bin";
/// Files fetched beside the weights when a hub repository has them (none is required).
const SIDE_FILES: [&str; 5] =
    ["modules.json", "1_Pooling/config.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"];

impl ModelSource {
    /// Resolves `name`: an existing folder, an existing weights file (its folder holds
    /// `config.json`), a `.gguf` file, or else a hub id (`owner/name`, optionally `@revision`) fetched through
    /// hf-hub, which honours `HF_HOME`, `HF_ENDPOINT` and `HF_HUB_OFFLINE`.
    pub fn resolve(name: &str) -> Result<Self> {
        let path = Path::new(name);
        if path.is_dir() {
            return Self::from_dir(name, path);
        }
        if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
            return Ok(Self {
                name: name.to_string(),
                root,
                config: path.to_path_buf(),
                format: Format::Gguf,
                weights: vec![path.to_path_buf()],
                tokenizer: None,
            });
        }
        if path.is_file() {
            let root = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut source = Self::from_parts(name, root, vec![path.to_path_buf()])?;
            source.name = name.to_string();
            return Ok(source);
        }
        if looks_like_hub_id(name) {
            return crate::source::hub::fetch(name);
        }
        Err(Error::InvalidInput(format!(
            "model `{name}` is neither an existing folder or file nor a hub id of the form owner/name"
        )))
    }

    /// The source of a catalog preset named `name` (`preset:gpt-3`): no files.
    pub fn preset(name: &str) -> Self {
        Self {
            name: name.to_string(),
            root: PathBuf::new(),
            config: PathBuf::new(),
            format: Format::Preset,
            weights: Vec::new(),
            tokenizer: None,
        }
    }

    /// A local folder with `config.json` and weights.
    pub fn from_dir(name: &str, dir: &Path) -> Result<Self> {
        let weights = if dir.join(SAFETENSORS).is_file() {
            vec![dir.join(SAFETENSORS)]
        } else if dir.join(SHARD_INDEX).is_file() {
            shard_files(&dir.join(SHARD_INDEX))?.into_iter().map(|f| dir.join(f)).collect()
        } else if dir.join(PYTORCH).is_file() {
            vec![dir.join(PYTORCH)]
        } else {
            return Err(Error::InvalidInput(format!(
                "{}: no weights found (expected {SAFETENSORS}, {SHARD_INDEX} or {PYTORCH})",
                dir.display()
            )));
        };
        Self::from_parts(name, dir, weights)
    }

    fn from_parts(name: &str, root: &Path, weights: Vec<PathBuf>) -> Result<Self> {
        let config = root.join("config.json");
        if !config.is_file() {
            return Err(Error::InvalidInput(format!("{}: missing config.json", root.display())));
        }
        for w in &weights {
            if !w.is_file() {
                return Err(Error::InvalidInput(format!("{}: weight file not found", w.display())));
            }
        }
        let tokenizer = Some(root.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(Self {
            name: name.to_string(),
            root: root.to_path_buf(),
            config,
            format: Format::HuggingFace,
            weights,
            tokenizer,
        })
    }
}

fn looks_like_hub_id(name: &str) -> bool {
    let id = name.split('@').next().unwrap_or(name);
    let parts: Vec<&str> = id.split('/').collect();
    !id.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !p.starts_with('.')
        })
}

/// The distinct shard file names listed in a `model.safetensors.index.json`.
pub(crate) fn shard_files(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io { path: index.to_path_buf(), source })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config { file: index.to_path_buf(), message: format!("invalid JSON: {e}") })?;
    let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| Error::Config {
        file: index.to_path_buf(),
        message: "missing object field `weight_map`".into(),
    })?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::Config {
            file: index.to_path_buf(),
            message: "`weight_map` lists no shards (expected tensor names mapped to shard file names)".into(),
        });
    }
    if let Some(bad) = files.iter().find(|f| f.is_empty() || f.contains("..") || Path::new(f).is_absolute()) {
        return Err(Error::Config {
            file: index.to_path_buf(),
            message: format!("`weight_map` names the shard `{bad}`, expected a file name inside the folder"),
        });
    }
    Ok(files)
}

mod hub {
    //! Downloads through hf-hub (its cache layout, so Python and Rust share downloads).

    use super::*;
    use hf_hub::api::sync::{ApiBuilder, ApiRepo};
    use hf_hub::{Cache, CacheRepo, Repo, RepoType};

    fn offline() -> bool {
        std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }

    /// Where files come from: the local cache only (offline), or the hub.
    enum Remote {
        Cache(CacheRepo),
        Hub { api: ApiRepo, files: Vec<String> },
    }

    impl Remote {
        /// The local path of `file`, downloading it if needed; `None` if the repo lacks it.
        fn get(&self, name: &str, file: &str) -> Result<Option<PathBuf>> {
            match self {
                Remote::Cache(cache) => Ok(cache.get(file)),
                Remote::Hub { api, files } => {
                    if !files.iter().any(|f| f == file) {
                        return Ok(None);
                    }
                    api.get(file).map(Some).map_err(|e| Error::Hub(format!("{name}: downloading {file}: {e}")))
                }
            }
        }
    }

    pub(super) fn fetch(name: &str) -> Result<ModelSource> {
        let (id, revision) = match name.split_once('@') {
            Some((id, rev)) => (id, rev.to_string()),
            None => (name, "main".to_string()),
        };
        let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision);
        let cache = Cache::from_env();
        let remote = if offline() {
            Remote::Cache(cache.repo(repo))
        } else {
            let api = ApiBuilder::from_env()
                .with_progress(true)
                .build()
                .map_err(|e| Error::Hub(format!("{name}: {e}")))?
                .repo(repo.clone());
            match api.info() {
                Ok(info) => Remote::Hub { api, files: info.siblings.into_iter().map(|s| s.rfilename).collect() },
                // Like huggingface_hub: an unreachable hub falls back to what is cached.
                Err(e) if cache.repo(repo.clone()).get("config.json").is_some() => {
                    eprintln!("warning: {name}: hub unreachable ({e}); using the cached copy");
                    Remote::Cache(cache.repo(repo))
                }
                Err(e) => return Err(Error::Hub(format!("{name}: cannot list repository files: {e}"))),
            }
        };
        let get = |file: &str| remote.get(name, file);
        let config = get("config.json")?.ok_or_else(|| {
            Error::Hub(format!(
                "{name}: no config.json{}",
                if offline() {
                    format!(" in the local cache {} (HF_HUB_OFFLINE is set)", Cache::from_env().path().display())
                } else {
                    String::new()
                }
            ))
        })?;
        let weights = if let Some(p) = get(SAFETENSORS)? {
            vec![p]
        } else if let Some(index) = get(SHARD_INDEX)? {
            let mut paths = Vec::new();
            for shard in shard_files(&index)? {
                paths.push(get(&shard)?.ok_or_else(|| Error::Hub(format!("{name}: shard {shard} is missing")))?);
            }
            paths
        } else if let Some(p) = get(PYTORCH)? {
            vec![p]
        } else {
            return Err(Error::Hub(format!("{name}: no {SAFETENSORS}, {SHARD_INDEX} or {PYTORCH}")));
        };
        let tokenizer = get("tokenizer.json")?;
        // Side files, each optional: sentence-transformers' pooling setup, the tokenizer's
        // special tokens and chat template (`--chat`), the chat template as its own file (newer
        // repositories), and the generation defaults.
        for side in SIDE_FILES {
            get(side)?;
        }
        let root = config.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(ModelSource { name: name.to_string(), root, config, format: Format::HuggingFace, weights, tokenizer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        assert!(looks_like_hub_id("gpt2"));
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(looks_like_hub_id("owner/name@v1.0"));
        assert!(!looks_like_hub_id("./missing/dir/here"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }
}
