//! GGUF files (llama.cpp's container): LLaMA-architecture metadata mapped to the same blocks as
//! the `llama` family, tensors kept quantized (candle's quantized matmul) or dequantized to a
//! dtype, and the tokenizer stored in the metadata rebuilt as a `tokenizers` tokenizer.
//!
//! llama.cpp's converter permutes the rows of the query and key projections so that its rotary
//! kernel can rotate adjacent pairs. Rather than permuting quantized rows back, tcat applies
//! rotary in the matching [`RotaryLayout::Interleaved`] layout: queries and keys carry the same
//! permutation of features within each head, so their dot products, and the model's outputs,
//! are those of the Hugging Face weights with half-split rotary.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use tcat_attention::{MultiHeadAttention, QkvProjection};
use tcat_blocks::{Activation, Embeddings, FeedForward, LmHead, Norm, Residual, Stack, TransformerLayer};
use tcat_core::{Error, Linear, Result};
use tcat_position::{RopeScaling, RotaryConfig, RotaryEmbedding, RotaryLayout};

use crate::DecoderModel;

/// An opened GGUF file: its metadata and a reader for its tensors.
pub struct GgufFile {
    path: std::path::PathBuf,
    content: gguf_file::Content,
    file: File,
}

impl GgufFile {
    /// Reads the header and metadata of `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| Error::InvalidInput(format!("{}: not a readable GGUF file: {e}", path.display())))?;
        Ok(Self { path: path.to_path_buf(), content, file })
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Config { file: self.path.clone(), message: message.into() }
    }

    fn value(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content.metadata.get(key).ok_or_else(|| self.error(format!("missing metadata `{key}`")))
    }

    fn u32(&self, key: &str) -> Result<u32> {
        self.value(key)?.to_u32().map_err(|e| self.error(format!("metadata `{key}`: {e}")))
    }

    fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(v) => v.to_f32().map_err(|e| self.error(format!("metadata `{key}`: {e}"))),
        }
    }

    /// The `general.architecture` value.
    pub fn architecture(&self) -> Result<&str> {
        Ok(self.value("general.architecture")?.to_string().map_err(|e| self.error(e.to_string()))?)
    }

    fn qtensor(&mut self, name: &str, device: &Device) -> Result<Arc<QTensor>> {
        if !self.content.tensor_infos.contains_key(name) {
            return Err(Error::MissingTensor { name: name.into(), location: self.path.display().to_string() });
        }
        Ok(Arc::new(self.content.tensor(&mut self.file, name, device)?))
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Loads a LLaMA-architecture model. `dtype` `None` keeps the projections quantized (and
    /// computes in f32); `Some(d)` dequantizes every tensor to `d`.
    pub fn load_llama(&mut self, device: &Device, dtype: Option<DType>) -> Result<DecoderModel> {
        let arch = self.architecture()?.to_string();
        if arch != "llama" {
            return Err(self.error(format!("general.architecture `{arch}` is not supported yet (supported: llama)")));
        }
        let key = |k: &str| format!("llama.{k}");
        let layers = self.u32(&key("block_count"))? as usize;
        let hidden = self.u32(&key("embedding_length"))? as usize;
        let heads = self.u32(&key("attention.head_count"))? as usize;
        let kv_heads = match self.content.metadata.get(&key("attention.head_count_kv")) {
            Some(v) => v.to_u32().map_err(|e| self.error(e.to_string()))? as usize,
            None => heads,
        };
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || !hidden.is_multiple_of(heads) {
            return Err(
                self.error(format!("inconsistent head counts: {heads} heads, {kv_heads} kv heads, width {hidden}"))
            );
        }
        let head_dim = hidden / heads;
        let context = self.u32(&key("context_length"))? as usize;
        let eps = self.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)? as f64;
        let base = self.f32_or(&key("rope.freq_base"), 10000.0)? as f64;
        let rotary_dim = match self.content.metadata.get(&key("rope.dimension_count")) {
            Some(v) => v.to_u32().map_err(|e| self.error(e.to_string()))? as usize,
            None => head_dim,
        };
        let scaling = match self.f32_or(&key("rope.scale_linear"), 1.0)? {
            1.0 => RopeScaling::None,
            factor => RopeScaling::Linear { factor: factor as f64 },
        };
        let compute = dtype.unwrap_or(DType::F32);
        let rotary = RotaryEmbedding::new(
            RotaryConfig { rotary_dim, base, layout: RotaryLayout::Interleaved, scaling },
            context,
            compute,
            device,
        )?;
        let embed_q = self.qtensor("token_embd.weight", device)?;
        let word = embed_q.dequantize(device)?.to_dtype(compute)?;
        let mut stack = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            let mut lin = |n: &str| -> Result<Linear> { self.linear(&p(n), device, dtype) };
            let qkv = QkvProjection::stacked(lin("attn_q")?, lin("attn_k")?, lin("attn_v")?);
            let out = lin("attn_output")?;
            let ffn = FeedForward::gated(lin("ffn_gate")?, lin("ffn_up")?, lin("ffn_down")?, Activation::Silu);
            let attention = MultiHeadAttention::new(qkv, out, heads, kv_heads, head_dim)?.with_rotary(rotary.clone());
            let attn_norm = self.norm(&p("attn_norm"), eps, compute, device)?;
            let ffn_norm = self.norm(&p("ffn_norm"), eps, compute, device)?;
            stack.push(TransformerLayer::new(attention, attn_norm, ffn, ffn_norm, Residual::PreNorm));
        }
        let final_norm = self.norm("output_norm.weight", eps, compute, device)?;
        let head = if self.has("output.weight") {
            LmHead::new(self.linear("output.weight", device, dtype)?)
        } else {
            // Tied: the f32 (or `dtype`) table the lookups use, also when the projections stay
            // quantized. The Q8_0 table with 8-bit inputs, as llama.cpp runs it, turned SmolLM2's
            // greedy chat reply into nonsense; the dense head costs bandwidth, not memory.
            LmHead::tied(&word)
        };
        let eos: Vec<u32> = self
            .content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
            .into_iter()
            .collect();
        let pad = self
            .content
            .metadata
            .get("tokenizer.ggml.padding_token_id")
            .and_then(|v| v.to_u32().ok())
            .or(eos.first().copied())
            .unwrap_or(0);
        Ok(DecoderModel::new(
            Embeddings::new(word, None, None, None),
            Stack::new(stack, Some(final_norm)),
            head,
            context,
            eos,
            pad,
        ))
    }

    fn linear(&mut self, name: &str, device: &Device, dtype: Option<DType>) -> Result<Linear> {
        let q = self.qtensor(name, device)?;
        Ok(match dtype {
            None => Linear::quantized(q, None)?,
            Some(d) => Linear::new(q.dequantize(device)?.to_dtype(d)?, None),
        })
    }

    fn norm(&mut self, name: &str, eps: f64, dtype: DType, device: &Device) -> Result<Norm> {
        let w = self.qtensor(name, device)?.dequantize(device)?.to_dtype(dtype)?;
        Ok(Norm::rms_norm(w, eps))
    }

    /// The metadata entries as strings, for inspection.
    pub fn metadata_summary(&self) -> HashMap<String, String> {
        self.content.metadata.iter().map(|(k, v)| (k.clone(), format!("{v:?}").chars().take(80).collect())).collect()
    }

    /// A tensor dequantized to f32 (for tests and inspection).
    pub fn dequantized(&mut self, name: &str, device: &Device) -> Result<Tensor> {
        Ok(self.qtensor(name, device)?.dequantize(device)?)
    }
}

/// Rebuilds the byte-level BPE tokenizer stored in a GGUF file's metadata
/// (`tokenizer.ggml.model = "gpt2"`) as a `tokenizers` tokenizer: vocabulary and merges, the
/// pre-tokenizer named by `tokenizer.ggml.pre`, control tokens as special tokens, and the
/// byte-level decoder.
pub fn tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{AddedToken, PreTokenizerWrapper};

    let file = GgufFile::open(path)?;
    let strings = |key: &str| -> Result<Vec<String>> {
        file.value(key)?
            .to_vec()
            .map_err(|e| file.error(format!("metadata `{key}`: {e}")))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| file.error(format!("metadata `{key}`: {e}"))))
            .collect()
    };
    let model = file.value("tokenizer.ggml.model")?.to_string().map_err(|e| file.error(e.to_string()))?.clone();
    if model != "gpt2" {
        return Err(file
            .error(format!("tokenizer.ggml.model `{model}` is not supported yet (supported: gpt2, byte-level BPE)")));
    }
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_string(), b.to_string())),
            None => Err(file.error(format!("tokenizer.ggml.merges: `{m}` is not a pair"))),
        })
        .collect::<Result<_>>()?;
    let types: Vec<i32> = match file.content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v.to_vec().map_err(|e| file.error(e.to_string()))?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre = match file.content.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map(String::as_str)
    {
        None | Some("default") | Some("gpt2") => PreTokenizerWrapper::ByteLevel(byte_level),
        Some("smollm") => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ])),
        Some(other) => {
            return Err(file.error(format!(
                "tokenizer.ggml.pre `{other}` is not supported yet (supported: default, gpt2, smollm)"
            )));
        }
    };
    tok.with_pre_tokenizer(Some(pre));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    // Control (3) and user-defined (4) tokens match whole, before the BPE model sees the text.
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(content, t)| AddedToken::from(content.clone(), *t == 3))
        .collect();
    tok.add_special_tokens(&special);
    Ok(tok)
}

/// The chat template in a GGUF file's metadata (`tokenizer.chat_template`), if any.
pub fn chat_template(path: &Path) -> Result<Option<crate::ChatTemplate>> {
    let file = GgufFile::open(path)?;
    let meta = &file.content.metadata;
    let Some(template) = meta.get("tokenizer.chat_template").and_then(|v| v.to_string().ok()) else {
        return Ok(None);
    };
    let tokens = meta.get("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok());
    let token = |key: &str| -> String {
        let id = meta.get(key).and_then(|v| v.to_u32().ok());
        match (id, tokens) {
            (Some(id), Some(tokens)) => {
                tokens.get(id as usize).and_then(|t| t.to_string().ok()).cloned().unwrap_or_default()
            }
            _ => String::new(),
        }
    };
    Ok(Some(crate::ChatTemplate::new(
        template.clone(),
        token("tokenizer.ggml.bos_token_id"),
        token("tokenizer.ggml.eos_token_id"),
    )))
}
