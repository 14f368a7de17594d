//! Reading `config.json` with errors that name the file and the field.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tcat_core::{Error, Result};

/// A parsed `config.json`.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its JSON value.
    pub json: serde_json::Value,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config { file: path.to_path_buf(), message: format!("malformed JSON: {e}") })?;
        if !json.is_object() {
            return Err(Error::Config { file: path.to_path_buf(), message: "expected a JSON object".into() });
        }
        Ok(Self { path: path.to_path_buf(), json })
    }

    /// The `model_type` field.
    pub fn model_type(&self) -> Result<&str> {
        match self.json.get("model_type") {
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            None | Some(serde_json::Value::Null) => Err(self.error("missing string field `model_type`")),
            Some(other) => Err(self.error(format!("`model_type`: invalid type: {other}, expected a string"))),
        }
    }

    /// Deserialises into a family's config struct; serde names the missing or mistyped field.
    ///
    /// A mistyped value is named by its path (`rope_scaling.factor`): serde_json's error
    /// from a `Value` carries no position, so the path is found by removing one field at a
    /// time: the field whose removal changes the error is the one at fault (missing fields are
    /// only reported after every present field has been read, so removing a correct field
    /// never changes a type error).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.json.clone()).map_err(|e| {
            let message = e.to_string();
            if message.starts_with("missing field") {
                return self.error(message);
            }
            match fault_path::<T>(&self.json, &message) {
                Some(path) => self.error(format!("`{path}`: {message}")),
                None => self.error(message),
            }
        })
    }

    /// A config error naming this file.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Config { file: self.path.clone(), message: message.into() }
    }

    /// Parses the activation named by `field` (`hidden_act`, `activation_function`, ...).
    pub fn activation(&self, field: &str, name: &str) -> Result<tcat_spec::ActivationKind> {
        name.parse().map_err(|e| self.error(format!("{field}: {e}")))
    }

    /// Fails when `field` is present and not `null`/`false`: a setting that changes the
    /// computation and that tcat does not honour, so it must not be silently ignored.
    pub fn refuse(&self, field: &str, why: &str) -> Result<()> {
        match self.json.get(field) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => Ok(()),
            Some(value) => Err(self.error(format!("`{field}` = {value} is not supported: {why}"))),
        }
    }

    /// transformers 5's `layer_types` as one flag per layer, true for `sliding_attention`, false
    /// for `full_attention`; a list of another length or another type is an error naming it.
    pub fn sliding_layers(&self, types: &[String], layers: usize) -> Result<Vec<bool>> {
        if types.len() != layers {
            return Err(self.error(format!("`layer_types` has {} entries for {layers} layers", types.len())));
        }
        types
            .iter()
            .map(|t| match t.as_str() {
                "sliding_attention" => Ok(true),
                "full_attention" => Ok(false),
                other => Err(self.error(format!("layer type `{other}` is not full_attention or sliding_attention"))),
            })
            .collect()
    }

    /// Fails unless `value` is positive, naming `field`.
    pub fn require_positive(&self, field: &str, value: usize) -> Result<()> {
        if value == 0 { Err(self.error(format!("`{field}` must be positive"))) } else { Ok(()) }
    }

    /// Fails unless `hidden` divides into `heads` heads.
    pub fn require_heads(&self, hidden_field: &str, hidden: usize, heads_field: &str, heads: usize) -> Result<()> {
        self.require_positive(heads_field, heads)?;
        self.require_positive(hidden_field, hidden)?;
        if !hidden.is_multiple_of(heads) {
            return Err(
                self.error(format!("`{hidden_field}` ({hidden}) is not divisible by `{heads_field}` ({heads})"))
            );
        }
        Ok(())
    }
}

/// The dotted path of the field at fault for `message`, the error `T` gives on `root`.
fn fault_path<T: DeserializeOwned>(root: &serde_json::Value, message: &str) -> Option<String> {
    let fails_same =
        |v: &serde_json::Value| serde_json::from_value::<T>(v.clone()).err().is_some_and(|e| e.to_string() == message);
    let mut path: Vec<String> = Vec::new();
    loop {
        let mut at = root;
        for key in &path {
            at = at.get(key)?;
        }
        let keys: Vec<String> = at.as_object()?.keys().cloned().collect();
        // One re-parse per key: a search bounded for hostile configs with very many fields.
        if keys.len() > 512 {
            break;
        }
        let culprit = keys.into_iter().find(|key| {
            let mut edited = root.clone();
            let mut node = &mut edited;
            for k in &path {
                node = node.get_mut(k).expect("the path was just walked");
            }
            node.as_object_mut().expect("an object").remove(key);
            !fails_same(&edited)
        });
        match culprit {
            Some(key) => path.push(key),
            None => break,
        }
        if !at.get(path.last()?).is_some_and(|v| v.is_object()) {
            break;
        }
    }
    if path.is_empty() { None } else { Some(path.join(".")) }
}

/// Token ids that configs store as a number, a list, or null.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// No token.
    #[default]
    None,
    /// One token.
    One(u32),
    /// Several tokens.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::None => vec![],
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}
