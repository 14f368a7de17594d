//! Chat templates: the Jinja template a chat model ships (`chat_template.jinja`, `chat_template`
//! in `tokenizer_config.json`, or `tokenizer.chat_template` in GGUF metadata) rendered with
//! minijinja, as Hugging Face's `apply_chat_template` does.

use std::path::Path;

use serde::Serialize;
use tcat_core::{Error, Result};

use crate::{Format, ModelSource};

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user".into(), content: content.into() }
    }
}

/// A model's chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    template: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// A template from its Jinja source and the special tokens it may reference.
    pub fn new(template: impl Into<String>, bos_token: impl Into<String>, eos_token: impl Into<String>) -> Self {
        Self { template: template.into(), bos_token: bos_token.into(), eos_token: eos_token.into() }
    }

    /// The template shipped with a model, if it has one.
    pub fn from_source(source: &ModelSource) -> Result<Option<Self>> {
        match source.format {
            Format::Gguf => crate::gguf::chat_template(&source.weights[0]),
            Format::HuggingFace => Self::from_folder(&source.root),
            Format::Preset => Ok(None),
        }
    }

    /// A Hugging Face folder's template: `chat_template.jinja` when the folder has one (newer
    /// `transformers` save it there, and it wins over the config's, as when `transformers`
    /// loads it), else `chat_template` in `tokenizer_config.json`; the special tokens come from
    /// `tokenizer_config.json`.
    fn from_folder(root: &Path) -> Result<Option<Self>> {
        let config = root.join("tokenizer_config.json");
        let json: serde_json::Value = if config.is_file() {
            let text = std::fs::read_to_string(&config).map_err(|source| Error::Io { path: config.clone(), source })?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Config { file: config.clone(), message: format!("malformed JSON: {e}") })?
        } else {
            serde_json::Value::Null
        };
        let token = |key: &str| match &json[key] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
            _ => String::new(),
        };
        let jinja = root.join("chat_template.jinja");
        let template = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).map_err(|source| Error::Io { path: jinja.clone(), source })?)
        } else {
            match &json["chat_template"] {
                serde_json::Value::String(t) => Some(t.clone()),
                // Several named templates: `[{"name": ..., "template": ...}]`; chat uses "default".
                serde_json::Value::Array(named) => named
                    .iter()
                    .find(|t| t["name"] == "default")
                    .and_then(|t| t["template"].as_str())
                    .map(str::to_string),
                _ => None,
            }
        };
        Ok(template.map(|t| Self::new(t, token("bos_token"), token("eos_token"))))
    }

    /// Renders `messages`; with `add_generation_prompt`, ends with the assistant's turn opener.
    ///
    /// ```
    /// use tcat_models::{ChatMessage, ChatTemplate};
    /// let t = ChatTemplate::new(
    ///     "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
    ///     "<s>",
    ///     "</s>",
    /// );
    /// assert_eq!(t.render(&[ChatMessage::user("hi")], true).unwrap(), "<user>hi<assistant>");
    /// ```
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        env.add_template("chat", &self.template).map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.get_template("chat")
            .and_then(|t| t.render(context))
            .map_err(|e| Error::Tokenizer(format!("chat template: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(tag: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tcat-chat-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    fn render(dir: &Path) -> Option<String> {
        let t = ChatTemplate::from_folder(dir).unwrap()?;
        Some(t.render(&[ChatMessage::user("hi")], true).unwrap())
    }

    #[test]
    fn template_sources_in_a_folder() {
        let config = r#"{"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template": "cfg {{ bos_token }}{{ messages[0].content }}"}"#;
        let dir = folder("config", &[("tokenizer_config.json", config)]);
        assert_eq!(render(&dir).as_deref(), Some("cfg <s>hi"));
        // chat_template.jinja wins over the config's template; the tokens still come from it.
        let dir =
            folder("jinja", &[("tokenizer_config.json", config), ("chat_template.jinja", "file {{ eos_token }}")]);
        assert_eq!(render(&dir).as_deref(), Some("file </s>"));
        let dir = folder("jinja-only", &[("chat_template.jinja", "alone {{ messages[0].content }}")]);
        assert_eq!(render(&dir).as_deref(), Some("alone hi"));
        let named = r#"{"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default {{ messages[0].role }}"}]}"#;
        let dir = folder("named", &[("tokenizer_config.json", named)]);
        assert_eq!(render(&dir).as_deref(), Some("default user"));
        let dir = folder("none", &[("tokenizer_config.json", r#"{"bos_token": "<s>"}"#)]);
        assert_eq!(render(&dir), None);
        let dir = folder("bad", &[("tokenizer_config.json", "{")]);
        let err = ChatTemplate::from_folder(&dir).unwrap_err().to_string();
        assert!(err.contains("tokenizer_config.json") && err.contains("malformed JSON"), "{err}");
    }
}
