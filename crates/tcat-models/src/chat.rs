//! Chat templates: the Jinja template a chat model ships (`chat_template` in
//! `tokenizer_config.json`, or `tokenizer.chat_template` in GGUF metadata) rendered with
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
            Format::HuggingFace => Self::from_tokenizer_config(&source.root.join("tokenizer_config.json")),
        }
    }

    fn from_tokenizer_config(path: &Path) -> Result<Option<Self>> {
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config { file: path.to_path_buf(), message: format!("malformed JSON: {e}") })?;
        let token = |key: &str| match &json[key] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
            _ => String::new(),
        };
        Ok(json["chat_template"].as_str().map(|t| Self::new(t, token("bos_token"), token("eos_token"))))
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
