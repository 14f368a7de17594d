//! GGUF files (llama.cpp's container): LLaMA-architecture metadata mapped to the same blocks as
//! the `llama` family (`qwen2`, `qwen3` and `phi3` metadata to those of their families, `gemma2` /
//! `gemma3` metadata to the Gemma families' blocks: Gemma Team 2024, "Gemma 2"; Gemma 3 technical
//! report 2025; and `deepseek2` metadata to the `deepseek_v2` / `deepseek_v3` families' multi-head
//! latent attention and DeepSeekMoE: DeepSeek-AI 2024, arXiv 2405.04434 and 2412.19437), tensors
//! kept quantized (candle's quantized matmul) or dequantized to a dtype, and the tokenizer stored
//! in the metadata rebuilt as a `tokenizers` tokenizer.
//!
//! llama.cpp's converter permutes the rows of the query and key projections so that its rotary
//! kernel can rotate adjacent pairs. Rather than permuting quantized rows back, tcat applies
//! rotary in the matching [`RotaryLayout::Interleaved`] layout: queries and keys carry the same
//! permutation of features within each head, so their dot products, and the model's outputs,
//! are those of the Hugging Face weights with half-split rotary.
//!
//! `deepseek2` rows are as in the checkpoint: llama.cpp rotates that architecture in adjacent
//! pairs, which is transformers' DeepSeek-V2 rotation (and V3's with `rope_interleave`). Its
//! converter splits the key/value up-projection into per-head halves (`attn_k_b`, transposed,
//! and `attn_v_b`); the builder joins them back into the dense matrix latent attention absorbs
//! (so that projection is dequantized whatever the requested dtype).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use std::cell::RefCell;

use candle_core::quantized::{QStorage, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use tcat_core::quantized::{BlockFormat, BlockMatrix};
use tcat_core::{Error, Linear, Result, WeightLayout};
use tcat_spec::{
    ActivationKind, ArchSpec, AttentionPattern, AttentionSpec, EmbeddingScale, FeedForwardKind, FeedForwardSpec,
    HeadSpec, LatentSpec, Masking, MoeSpec, NormSpec, PositionSpec, QkNormSpec, ResidualSpec, RopeScalingSpec,
    RotaryLayoutSpec, RotarySpec, RouterSpec, RoutingRule, ScaleRule, SharedExpertSpec, SpecialTokens, TowerSpec,
};

use super::gguf_header::Keep;
use crate::DecoderModel;
use crate::build::{ExpertNames, Init, QkvNames, SharedExpertNames, WeightNames, WeightSource};

/// llama.cpp's tensor names for the `llama` architecture.
pub const NAMES: WeightNames = WeightNames {
    base: &[""],
    word: "token_embd",
    layer: "blk.{i}",
    qkv: QkvNames::Separate { q: "attn_q", k: "attn_k", v: "attn_v" },
    attention_out: "attn_output",
    attention_norm: "attn_norm",
    ffn_gate: "ffn_gate",
    ffn_up: "ffn_up",
    ffn_down: "ffn_down",
    ffn_norm: "ffn_norm",
    router: "ffn_gate_inp",
    experts: ExpertNames::Stacked { gate: "ffn_gate_exps", up: "ffn_up_exps", down: "ffn_down_exps" },
    final_norm: "output_norm",
    lm_head: "output",
    ..WeightNames::EMPTY
};

/// llama.cpp's tensor names for the `gemma2` and `gemma3` architectures: LLaMA's, with the
/// sandwich norms (`post_attention_norm`, `ffn_norm` before the feed-forward branch,
/// `post_ffw_norm`) and Gemma 3's per-head `attn_q_norm` / `attn_k_norm`. llama.cpp's converter
/// stores Gemma's norm gains with the `1 + w` already added.
pub const GEMMA_NAMES: WeightNames = WeightNames {
    attention_out_norm: "post_attention_norm",
    ffn_out_norm: "post_ffw_norm",
    q_norm: "attn_q_norm",
    k_norm: "attn_k_norm",
    ..NAMES
};

/// llama.cpp's tensor names for the `qwen2` and `qwen3` architectures: LLaMA's, with biases on
/// `attn_q` / `attn_k` / `attn_v` (Qwen2) and per-head `attn_q_norm` / `attn_k_norm` (Qwen3);
/// the rows are as in the checkpoint (llama.cpp rotates them half-split).
pub const QWEN_NAMES: WeightNames = WeightNames { q_norm: "attn_q_norm", k_norm: "attn_k_norm", ..NAMES };

/// llama.cpp's tensor names for the `phi3` architecture: the fused `attn_qkv` and the fused
/// `[gate | up]` stored as `ffn_up`; LongRoPE's factors as `rope_factors_short` /
/// `rope_factors_long` (the builder's names for them).
pub const PHI3_NAMES: WeightNames =
    WeightNames { qkv: QkvNames::Fused("attn_qkv"), ffn_gate: "", ffn_gate_up: "ffn_up", ffn_up: "", ..NAMES };

/// llama.cpp's tensor names for the `deepseek2` architecture (DeepSeek-V2, V2-Lite, V3): the
/// latent attention's `attn_q` (no `q_lora_rank`) or `attn_q_a` / `attn_q_a_norm` / `attn_q_b`,
/// `attn_kv_a_mqa` (latent and shared rotary key), `attn_kv_a_norm`, and the key/value
/// up-projection as older converters stored it (`attn_kv_b`) or split as current ones do
/// (`attn_k_b` `[heads, rank, nope]`, transposed, and `attn_v_b` `[heads, value, rank]`); the
/// routed experts stacked, the shared ones as `ffn_*_shexp`, V3's score correction as
/// `exp_probs_b.bias`; rows as in the checkpoint (llama.cpp rotates deepseek2 in adjacent pairs).
pub const DEEPSEEK2_NAMES: WeightNames = WeightNames {
    qkv: QkvNames::Latent {
        q: "attn_q",
        q_down: "attn_q_a",
        q_norm: "attn_q_a_norm",
        q_up: "attn_q_b",
        kv_down: "attn_kv_a_mqa",
        kv_norm: "attn_kv_a_norm",
        kv_up: "attn_kv_b",
        k_up: "attn_k_b",
        v_up: "attn_v_b",
    },
    score_correction: "exp_probs_b.bias",
    shared_expert: Some(SharedExpertNames {
        gate: "ffn_gate_shexp",
        up: "ffn_up_shexp",
        down: "ffn_down_shexp",
        sigmoid_gate: "",
    }),
    ..NAMES
};

/// A GGUF file's tensors as the builder's weight source: projections kept quantized (`dtype`
/// `None`) or dequantized to `dtype`; other tensors dequantized to the compute dtype.
struct GgufWeights {
    file: RefCell<GgufFile>,
    device: Device,
    dtype: Option<DType>,
    /// Whether the query and key rows are permuted for llama.cpp's adjacent-pair rotary (its
    /// converter does so for the `llama` architecture only; Gemma's rows are as in the
    /// checkpoint).
    interleaved_rows: bool,
}

impl GgufWeights {
    fn checked(&self, name: &str, shape: &[usize]) -> Result<Arc<QTensor>> {
        let mut file = self.file.borrow_mut();
        let q = file.qtensor(name, &self.device)?;
        if q.shape().dims() != shape {
            return Err(Error::ShapeMismatch {
                name: name.into(),
                location: file.path.display().to_string(),
                expected: shape.to_vec(),
                found: q.shape().dims().to_vec(),
            });
        }
        Ok(q)
    }
}

impl GgufWeights {
    /// The two-dimensional tensor `name` as tcat's block matrix, its bytes read straight from
    /// the file into the matrix (no `QTensor` and no copies, so that loading leaves no freed
    /// buffers behind for the allocator to keep), when it is on the CPU in a format the block
    /// kernels run and `accept` takes; `None` otherwise.
    fn blocks(&self, name: &str, shape: &[usize], accept: impl Fn(BlockFormat) -> bool) -> Result<Option<BlockMatrix>> {
        let mut file = self.file.borrow_mut();
        let Some(info) = file.content.tensor_infos.get(name) else {
            return Err(Error::MissingTensor { name: name.into(), location: file.path.display().to_string() });
        };
        if info.shape.dims() != shape {
            return Err(Error::ShapeMismatch {
                name: name.into(),
                location: file.path.display().to_string(),
                expected: shape.to_vec(),
                found: info.shape.dims().to_vec(),
            });
        }
        let Some(format) = BlockFormat::from_ggml(info.ggml_dtype) else { return Ok(None) };
        let &[rows, cols] = shape else { return Ok(None) };
        if !self.device.is_cpu() || !accept(format) || !cols.is_multiple_of(tcat_core::quantized::BLOCK) {
            return Ok(None);
        }
        // The header check (`gguf_header`) has already bounded every tensor's byte range by
        // the file's size, so the product cannot overflow for a file that reached here.
        let bytes = rows * (cols / tcat_core::quantized::BLOCK) * format.block_bytes();
        let start = file.content.tensor_data_offset.saturating_add(info.offset);
        let mut data = vec![0u8; bytes];
        let path = file.path.clone();
        let io = |source| Error::Io { path: path.clone(), source };
        file.file.seek(SeekFrom::Start(start)).map_err(io)?;
        file.file.read_exact(&mut data).map_err(io)?;
        Ok(Some(BlockMatrix::new(format, rows, cols, data)?))
    }
}

impl WeightSource for GgufWeights {
    fn location(&self) -> String {
        self.file.borrow().path.display().to_string()
    }

    fn dtype(&self) -> DType {
        self.dtype.unwrap_or(DType::F32)
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn contains(&self, name: &str) -> bool {
        self.file.borrow().has(name)
    }

    fn tensor(&self, name: &str, shape: &[usize], _init: Init) -> Result<Tensor> {
        Ok(self.checked(name, shape)?.dequantize(&self.device)?.to_dtype(self.dtype())?)
    }

    /// A Q8_0 token table stays quantized when the projections do (30 MB instead of a dense
    /// 113 MB for SmolLM2's 49152 × 576): rows are dequantized as they are looked up, and a tied
    /// head multiplies it with f32 inputs, which keeps the dense table's greedy answers (8-bit
    /// inputs do not). Other tables are dequantized as before.
    fn table(&self, name: &str, shape: &[usize], _init: Init) -> Result<Linear> {
        if self.dtype.is_none()
            && let Some(blocks) = self.blocks(name, shape, |f| f == BlockFormat::Q8_0)?
        {
            return Ok(Linear::from_blocks(blocks, None, true));
        }
        let q = self.checked(name, shape)?;
        Ok(Linear::new(q.dequantize(&self.device)?.to_dtype(self.dtype())?, None))
    }

    fn linear(&self, name: &str, input: usize, output: usize, bias: bool, _layout: WeightLayout) -> Result<Linear> {
        let bias = if bias { Some(self.tensor(&format!("{name}.bias"), &[output], Init::Zeros)?) } else { None };
        if self.dtype.is_none()
            && let Some(blocks) = self.blocks(&format!("{name}.weight"), &[output, input], |_| true)?
        {
            return Ok(Linear::from_blocks(blocks, bias, false));
        }
        let q = self.checked(&format!("{name}.weight"), &[output, input])?;
        Ok(match self.dtype {
            None => Linear::quantized(q, bias)?,
            Some(d) => Linear::new(q.dequantize(&self.device)?.to_dtype(d)?, bias),
        })
    }

    fn stacked_linears(&self, name: &str, count: usize, input: usize, output: usize) -> Result<Vec<Linear>> {
        let q = self.checked(&format!("{name}.weight"), &[count, output, input])?;
        if let Some(d) = self.dtype {
            let stack = q.dequantize(&self.device)?.to_dtype(d)?;
            return (0..count).map(|e| Ok(Linear::new(stack.get(e)?.contiguous()?, None))).collect();
        }
        // Quantized rows are whole blocks (candle checks `input` against the block size), so
        // expert `e` is the `e`-th of `count` equal byte ranges.
        let dtype = q.dtype();
        let per_expert = output * (input / dtype.block_size()) * dtype.type_size();
        let data = q.data()?;
        if count == 0 || data.len() != count * per_expert {
            return Err(self.file.borrow().error(format!(
                "`{name}.weight` holds {} bytes, expected {count} experts × {per_expert} ({output} × {input} {dtype:?})",
                data.len()
            )));
        }
        (0..count)
            .map(|e| {
                let bytes = std::borrow::Cow::Borrowed(&data[e * per_expert..(e + 1) * per_expert]);
                let storage = QStorage::from_data(bytes, &self.device, q.dtype())?;
                Ok(Linear::quantized(Arc::new(QTensor::new(storage, (output, input))?), None)?)
            })
            .collect()
    }

    fn rotary_rows_interleaved(&self) -> bool {
        self.interleaved_rows
    }

    fn stored_elements(&self) -> Option<u64> {
        Some(self.file.borrow().header.total_elements())
    }

    fn resident_bytes(&self) -> Option<u64> {
        let file = self.file.borrow();
        Some(match self.dtype {
            // Quantized tensors stay as stored: at most the file's size.
            None => file.file.metadata().map(|m| m.len()).unwrap_or(0),
            Some(d) => file.header.total_elements().saturating_mul(d.size_in_bytes() as u64),
        })
    }
}

/// An opened GGUF file: its metadata and a reader for its tensors.
pub struct GgufFile {
    path: std::path::PathBuf,
    content: gguf_file::Content,
    file: File,
    header: super::gguf_header::GgufHeader,
}

impl GgufFile {
    /// Reads the header and metadata of `path`, checked by tcat's own reader as it goes
    /// (counts, alignment, tensor dimensions, types and data ranges inside the file).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_keeping(path, Keep::All)
    }

    /// As [`open`](Self::open), without the tokenizer's vocabulary arrays (`tokenizer.ggml.tokens`,
    /// `scores`, `token_type`, `merges`): everything loading the model and its spec read, without
    /// the many small strings that would otherwise stay in the loaded model's footprint (13 MB
    /// for SmolLM2's 49152 tokens and merges). [`tokenizer`] opens the file whole.
    pub fn open_without_vocabulary(path: &Path) -> Result<Self> {
        Self::open_keeping(path, Keep::WithoutVocabulary)
    }

    fn open_keeping(path: &Path, keep: Keep) -> Result<Self> {
        let (header, content) = super::gguf_header::read(path, keep)?;
        let file = File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Ok(Self { path: path.to_path_buf(), content, file, header })
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

    /// A size from the metadata that must be positive, named when it is not.
    fn positive(&self, key: &str) -> Result<usize> {
        match self.u32(key)? {
            0 => Err(self.error(format!("metadata `{key}` is 0, expected a positive size"))),
            n => Ok(n as usize),
        }
    }

    /// An f32 metadata value as the f64 a `config.json` would hold: the shortest decimal that
    /// reads back as the same f32 (`1e-6`, not `9.99999997e-7`), so that both paths build
    /// equal specs.
    fn f32_or(&self, key: &str, default: f32) -> Result<f64> {
        let value = match self.content.metadata.get(key) {
            None => default,
            Some(v) => v.to_f32().map_err(|e| self.error(format!("metadata `{key}`: {e}")))?,
        };
        Ok(value.to_string().parse().unwrap_or(value as f64))
    }

    /// The `general.architecture` value.
    pub fn architecture(&self) -> Result<&str> {
        self.value("general.architecture")?
            .to_string()
            .map_err(|e| self.error(format!("metadata `general.architecture`: {e}")))
            .map(String::as_str)
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

    fn u32_or(&self, key: &str, default: Option<u32>) -> Result<Option<u32>> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(v) => Ok(Some(v.to_u32().map_err(|e| self.error(format!("metadata `{key}`: {e}")))?)),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(v) => v.to_bool().map_err(|e| self.error(format!("metadata `{key}`: {e}"))),
        }
    }

    fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.content.tensor_infos.get(name).map(|info| info.shape.dims().to_vec())
    }

    /// The vocabulary: the rows of `token_embd.weight`, which must be `[vocab, hidden]`.
    fn vocab_size(&self, hidden: usize) -> Result<usize> {
        match self.shape_of("token_embd.weight") {
            Some(shape) if shape.len() == 2 && shape[1] == hidden => Ok(shape[0]),
            Some(shape) => {
                Err(self.error(format!("token_embd.weight has shape {shape:?}, expected [vocab, {hidden}]")))
            }
            None => Err(Error::MissingTensor {
                name: "token_embd.weight".into(),
                location: self.path.display().to_string(),
            }),
        }
    }

    /// The spec of a LLaMA-architecture file: the same [`ArchSpec`] the `llama` family builds
    /// from the equivalent `config.json`. Rope scaling comes from `llama.rope.scaling.*` (or the
    /// older `llama.rope.scale_linear`) and from a `rope_freqs.weight` tensor (Llama 3.1);
    /// scaling types tcat cannot honour are refused.
    ///
    /// `gemma2` and `gemma3` files map onto the specs of the `gemma2` and `gemma3_text`
    /// families ([`GgufFile::gemma_spec`]), `deepseek2` files onto those of `deepseek_v2` /
    /// `deepseek_v3` ([`GgufFile::deepseek_spec`]).
    pub fn spec(&self) -> Result<ArchSpec> {
        let arch = self.architecture()?.to_string();
        match arch.as_str() {
            "llama" | "qwen2" | "qwen3" | "phi3" => {}
            "gemma2" | "gemma3" => return self.gemma_spec(&arch),
            "deepseek2" => return self.deepseek_spec(),
            _ => {
                return Err(self.error(format!(
                    "general.architecture `{arch}` is not supported yet (supported: llama, qwen2, qwen3, phi3, gemma2, \
                     gemma3, deepseek2)"
                )));
            }
        }
        let key = |k: &str| format!("{arch}.{k}");
        let layers = self.positive(&key("block_count"))?;
        let hidden = self.positive(&key("embedding_length"))?;
        let heads = self.positive(&key("attention.head_count"))?;
        let kv_heads = self.u32_or(&key("attention.head_count_kv"), Some(heads as u32))?.unwrap_or(0) as usize;
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || !hidden.is_multiple_of(heads) {
            return Err(
                self.error(format!("inconsistent head counts: {heads} heads, {kv_heads} kv heads, width {hidden}"))
            );
        }
        let head_dim = self.u32_or(&key("attention.key_length"), Some((hidden / heads) as u32))?.unwrap_or(0) as usize;
        let context = self.positive(&key("context_length"))?;
        let eps = self.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)?;
        let base = self.f32_or(&key("rope.freq_base"), 10000.0)?;
        let rotary_dim = self.u32_or(&key("rope.dimension_count"), Some(head_dim as u32))?.unwrap_or(0) as usize;
        if rotary_dim == 0 || rotary_dim > head_dim || !rotary_dim.is_multiple_of(2) {
            return Err(self.error(format!("llama.rope.dimension_count {rotary_dim} for heads of {head_dim} features")));
        }
        let scaling = match self.has(crate::build::LONG_ROPE_LONG) {
            // Phi-3's LongRoPE: the factor tensors, the pretraining context and the attention
            // factor (llama.cpp's defaults when absent: the context, and √(1 + ln s / ln L)).
            true => {
                let original = self.positive(&key("rope.scaling.original_context_length"))?;
                let s = context as f64 / original as f64;
                let default = if s <= 1.0 { 1.0 } else { (1.0 + s.ln() / (original as f64).ln()).sqrt() };
                let attention_factor = match self.content.metadata.contains_key(&key("rope.scaling.attn_factor")) {
                    true => self.f32_or(&key("rope.scaling.attn_factor"), 1.0)?,
                    false => default,
                };
                RopeScalingSpec::LongRope { original_max_positions: original, attention_factor }
            }
            false => self.rope_scaling_of(&arch)?,
        };
        let vocab = self.vocab_size(hidden)?;
        let inner = match self.u32_or(&key("feed_forward_length"), None)? {
            Some(n) => n as usize,
            // Phi-3's `ffn_up` holds `[gate | up]`.
            None if arch == "phi3" => {
                self.shape_of("blk.0.ffn_up.weight").and_then(|s| s.first().map(|n| n / 2)).unwrap_or(0)
            }
            None => self.shape_of("blk.0.ffn_up.weight").and_then(|s| s.first().copied()).unwrap_or(0),
        };
        let window = match arch.as_str() {
            "phi3" => self.u32_or(&key("attention.sliding_window"), None)?.filter(|w| *w > 0),
            _ => None,
        };
        let eos: Vec<u32> = self.u32_or("tokenizer.ggml.eos_token_id", None)?.into_iter().collect();
        let pad = self.u32_or("tokenizer.ggml.padding_token_id", None)?.or(eos.first().copied()).unwrap_or(0);
        let tower = TowerSpec::decoder(vocab, hidden, layers, heads, context)
            .with_positions(PositionSpec::Rotary(RotarySpec {
                fraction: rotary_dim as f64 / head_dim as f64,
                base,
                layout: RotaryLayoutSpec::HalfSplit,
                scaling,
            }))
            .with_norm(NormSpec::RmsNorm { eps })
            .with_attention(AttentionSpec {
                num_heads: heads,
                num_kv_heads: kv_heads,
                head_dim,
                // Qwen2's q/k/v biases (no output bias).
                qkv_bias: self.has("blk.0.attn_q.bias"),
                out_bias: false,
                scale: ScaleRule::InverseSqrtHeadDim,
                masking: Masking::Causal,
                schedule: window.map(|w| vec![AttentionPattern::Local { window: w as usize }]).unwrap_or_default(),
                // Qwen3's per-head query and key norms.
                qk_norm: self.has("blk.0.attn_q_norm.weight").then_some(QkNormSpec::Head),
                logit_softcap: None,
                local_rotary: None,
                latent: None,
            })
            .with_feed_forward(FeedForwardSpec::gated(inner, ActivationKind::Silu));
        let mut tower = tower;
        // Mixtral-architecture files: `llama.expert_count` experts per layer, the top
        // `llama.expert_used_count` chosen with their gates renormalised.
        if let Some(experts) = self.u32_or(&key("expert_count"), None)? {
            let used = self
                .u32_or(&key("expert_used_count"), None)?
                .ok_or_else(|| self.error("llama.expert_count is set but llama.expert_used_count is missing"))?;
            tower.feed_forward.experts = Some(MoeSpec {
                num_experts: experts as usize,
                expert_kind: FeedForwardKind::Gated,
                expert_inner: inner,
                router: RouterSpec {
                    rule: RoutingRule::TopK { k: used as usize, renormalize: true },
                    bias: false,
                    float32: false,
                    jitter: 0.0,
                },
                every: 1,
                offset: 0,
                shared_expert: None,
                first_dense: 0,
            });
        }
        let tied = !self.has("output.weight");
        Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied, bias: false }).with_tokens(SpecialTokens {
            eos,
            pad,
            decoder_start: None,
        }))
    }

    /// The spec of a `gemma2` or `gemma3` file (llama.cpp's names for Gemma 2 and Gemma 3's text
    /// decoder), the same [`ArchSpec`] as the `gemma2` / `gemma3_text` families build, with the
    /// differences llama.cpp's format makes:
    ///
    /// - norm gains are stored with Gemma's `1 + w` already added, so they are plain RMSNorms;
    /// - the score scale is `{arch}.attention.scale` when the file has it; else llama.cpp's rule,
    ///   `1/√key_length`, except for the 27B models (46 layers in Gemma 2, 62 in Gemma 3):
    ///   `1/√(hidden / heads)` (their `query_pre_attn_scalar`), since llama.cpp's converter does
    ///   not store `query_pre_attn_scalar`;
    /// - local layers: `{arch}.attention.sliding_window` keys (4096 by default), every
    ///   `{arch}.attention.sliding_window_pattern`-th layer global (2 for Gemma 2, 6 for Gemma 3);
    /// - Gemma 2's soft-caps from `gemma2.attn_logit_softcapping` and
    ///   `gemma2.final_logit_softcapping` (50 and 30 by default, as llama.cpp); Gemma 3's logit
    ///   cap only when `gemma3.final_logit_softcapping` is set, and a score cap is refused;
    /// - Gemma 3's global layers rotate with `gemma3.rope.freq_base` (1,000,000 by default) and
    ///   its scaling, the local ones with `gemma3.rope.freq_base_swa` (10,000 by default).
    pub fn gemma_spec(&self, arch: &str) -> Result<ArchSpec> {
        let key = |k: &str| format!("{arch}.{k}");
        let gemma3 = arch == "gemma3";
        let layers = self.positive(&key("block_count"))?;
        let hidden = self.positive(&key("embedding_length"))?;
        let heads = self.positive(&key("attention.head_count"))?;
        let kv_heads = self.u32_or(&key("attention.head_count_kv"), Some(heads as u32))?.unwrap_or(0) as usize;
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(self.error(format!("inconsistent head counts: {heads} heads, {kv_heads} kv heads")));
        }
        let head_dim = self.positive(&key("attention.key_length"))?;
        let context = self.positive(&key("context_length"))?;
        let eps = self.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-6)?;
        let inner = self.positive(&key("feed_forward_length"))?;
        let vocab = self.vocab_size(hidden)?;
        let scale = match self.content.metadata.get(&key("attention.scale")) {
            Some(_) => match self.f32_or(&key("attention.scale"), 0.0)? {
                s if s > 0.0 && s.is_finite() => ScaleRule::Fixed { scale: s },
                s => {
                    return Err(
                        self.error(format!("metadata `{}` is {s}, expected a positive scale", key("attention.scale")))
                    );
                }
            },
            None if layers == if gemma3 { 62 } else { 46 } => {
                ScaleRule::Fixed { scale: 1.0 / ((hidden / heads) as f64).sqrt() }
            }
            None => ScaleRule::InverseSqrtHeadDim,
        };
        let window = self.u32_or(&key("attention.sliding_window"), Some(4096))?.unwrap_or(0) as usize;
        let pattern = match self.content.metadata.get(&key("attention.sliding_window_pattern")) {
            None => {
                if gemma3 {
                    6
                } else {
                    2
                }
            }
            Some(v) => v.to_u32().map_err(|e| {
                self.error(format!(
                    "metadata `{}`: {e} (a period is supported)",
                    key("attention.sliding_window_pattern")
                ))
            })? as usize,
        };
        if window == 0 || pattern == 0 {
            return Err(self.error(format!("{arch}: sliding window {window} and pattern {pattern} must be positive")));
        }
        // Layer `i` is global when `i + 1` is a multiple of the period (as transformers and
        // llama.cpp place them), one entry per layer as the families write it.
        let schedule = (0..layers)
            .map(|i| {
                if (i + 1).is_multiple_of(pattern) {
                    AttentionPattern::Dense
                } else {
                    AttentionPattern::Local { window }
                }
            })
            .collect();
        let positive_or_none = |k: &str, default: Option<f64>| -> Result<Option<f64>> {
            match (self.content.metadata.get(&key(k)), default) {
                (None, d) => Ok(d),
                (Some(_), _) => match self.f32_or(&key(k), 0.0)? {
                    v if v > 0.0 && v.is_finite() => Ok(Some(v)),
                    v => Err(self.error(format!("metadata `{}` is {v}, expected a positive cap", key(k)))),
                },
            }
        };
        let (softcap, final_softcap) = if gemma3 {
            if self.content.metadata.contains_key(&key("attn_logit_softcapping")) {
                return Err(self.error("gemma3.attn_logit_softcapping is set, but Gemma 3 has no score soft-capping"));
            }
            (None, positive_or_none("final_logit_softcapping", None)?)
        } else {
            (
                positive_or_none("attn_logit_softcapping", Some(50.0))?,
                positive_or_none("final_logit_softcapping", Some(30.0))?,
            )
        };
        let base = self.f32_or(&key("rope.freq_base"), if gemma3 { 1e6 } else { 10000.0 })?;
        let rotary = RotarySpec { scaling: self.rope_scaling_of(arch)?, ..RotarySpec::full(base) };
        if rotary.scaling == RopeScalingSpec::StoredFactors {
            return Err(self.error(format!("{arch}: rope_freqs.weight is not supported for Gemma files")));
        }
        let local_rotary = gemma3
            .then(|| -> Result<RotarySpec> { Ok(RotarySpec::full(self.f32_or(&key("rope.freq_base_swa"), 10000.0)?)) });
        let local_rotary = local_rotary.transpose()?;
        let eos: Vec<u32> = self.u32_or("tokenizer.ggml.eos_token_id", None)?.into_iter().collect();
        let pad = self.u32_or("tokenizer.ggml.padding_token_id", None)?.or(eos.first().copied()).unwrap_or(0);
        let mut tower = TowerSpec::decoder(vocab, hidden, layers, heads, context)
            .with_positions(PositionSpec::Rotary(rotary))
            .with_norm(NormSpec::RmsNorm { eps })
            .with_residual(ResidualSpec::Sandwich)
            .with_attention(AttentionSpec {
                num_heads: heads,
                num_kv_heads: kv_heads,
                head_dim,
                qkv_bias: false,
                out_bias: false,
                scale,
                masking: Masking::Causal,
                schedule,
                qk_norm: gemma3.then_some(QkNormSpec::Head),
                logit_softcap: softcap,
                latent: None,
                local_rotary,
            })
            .with_feed_forward(FeedForwardSpec::gated(inner, ActivationKind::GeluTanh));
        tower.embeddings.scale = EmbeddingScale::SqrtHidden;
        let tied = !self.has("output.weight");
        let head = match final_softcap {
            Some(cap) => HeadSpec::SoftcappedLm { tied, cap },
            None => HeadSpec::Lm { tied, bias: false },
        };
        Ok(ArchSpec::decoder(tower, head).with_tokens(SpecialTokens { eos, pad, decoder_start: None }))
    }

    /// The spec of a `deepseek2` file (DeepSeek-V2, V2-Lite, V3 as llama.cpp's converter writes
    /// them), the same [`ArchSpec`] as the `deepseek_v2` / `deepseek_v3` families build from the
    /// equivalent `config.json`:
    ///
    /// - latent attention sized by `deepseek2.attention.q_lora_rank` (absent or 0: direct
    ///   queries), `kv_lora_rank`, `rope.dimension_count` and the per-head MLA widths
    ///   `attention.key_length_mla` / `value_length_mla` (older files, without them, hold those
    ///   widths in `key_length` / `value_length`); the latents' RMS norms take transformers'
    ///   ε 1e-6 (llama.cpp uses the file's `layer_norm_rms_epsilon`; the published models have
    ///   1e-6 for both); attention biases when the file has `attn_kv_a_mqa.bias`;
    /// - rotary in adjacent pairs over the decoupled part (llama.cpp's rope type for deepseek2,
    ///   and transformers' V2 rotation; its converter permutes no rows); YaRN from
    ///   `rope.scaling.*` with the score scale `mscale²/√(nope + rope)`, `mscale = 1 + 0.1 ·
    ///   mscale_all_dim · ln factor` where `mscale_all_dim` is `rope.scaling.yarn_log_multiplier /
    ///   0.1` (the converter's legacy factor), and the cos/sin tables unscaled (llama.cpp takes
    ///   `mscale` equal to `mscale_all_dim`, as the published configs have it);
    /// - the first `leading_dense_block_count` layers dense (`feed_forward_length`), the others
    ///   `expert_count` routed experts of `expert_feed_forward_length`, `expert_used_count` per
    ///   token, plus `expert_shared_count` shared ones; `expert_gating_func` 1 (softmax, also the
    ///   default as in llama.cpp) routes as DeepSeek-V2 (greedy, or group-limited by the best
    ///   expert of each of `expert_group_count` groups, `expert_group_used_count` kept — transformers'
    ///   rule; llama.cpp's kernel scores groups by their two best), 2 (sigmoid) as DeepSeek-V3's
    ///   `noaux_tc` with `exp_probs_b.bias`, gates renormalised when `expert_weights_norm`, times
    ///   `expert_weights_scale`;
    /// - `nextn_predict_layers` trailing multi-token-prediction blocks are not part of the
    ///   decoder and are left unread, as llama.cpp does when it decodes.
    ///
    /// What neither transformers' DeepSeek models nor this mapping can honour is refused by its
    /// key: other gating functions, renormalised softmax gates, YaRN without
    /// `yarn_log_multiplier` or with an attention or extrapolation factor, other rope scalings,
    /// `rope_freqs.weight`, attention temperature scaling.
    pub fn deepseek_spec(&self) -> Result<ArchSpec> {
        let key = |k: &str| format!("deepseek2.{k}");
        let blocks = self.positive(&key("block_count"))?;
        let nextn = self.u32_or(&key("nextn_predict_layers"), Some(0))?.unwrap_or(0) as usize;
        if nextn >= blocks {
            return Err(self.error(format!(
                "metadata `{}` ({nextn}) leaves no decoder layers of `{}` ({blocks})",
                key("nextn_predict_layers"),
                key("block_count")
            )));
        }
        let layers = blocks - nextn;
        let hidden = self.positive(&key("embedding_length"))?;
        let heads = self.positive(&key("attention.head_count"))?;
        let context = self.positive(&key("context_length"))?;
        let eps = self.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-6)?;
        let kv_rank = self.positive(&key("attention.kv_lora_rank"))?;
        let q_rank = self.u32_or(&key("attention.q_lora_rank"), None)?.filter(|&r| r > 0).map(|r| r as usize);
        let rope_dim = self.positive(&key("rope.dimension_count"))?;
        if !rope_dim.is_multiple_of(2) {
            return Err(self.error(format!("metadata `{}` ({rope_dim}) must be even", key("rope.dimension_count"))));
        }
        // The per-head widths: the MLA keys of current files, else (older files) the plain ones.
        let (qk_key, value_key) = match (
            self.u32_or(&key("attention.key_length_mla"), None)?.filter(|&n| n > 0),
            self.u32_or(&key("attention.value_length_mla"), None)?.filter(|&n| n > 0),
        ) {
            (Some(_), Some(_)) => (key("attention.key_length_mla"), key("attention.value_length_mla")),
            (None, None) => (key("attention.key_length"), key("attention.value_length")),
            (Some(_), None) | (None, Some(_)) => {
                return Err(self.error(format!(
                    "metadata `{}` and `{}` must both be set (or neither)",
                    key("attention.key_length_mla"),
                    key("attention.value_length_mla")
                )));
            }
        };
        let (qk_dim, value_dim) = (self.positive(&qk_key)?, self.positive(&value_key)?);
        if qk_dim <= rope_dim {
            return Err(self.error(format!(
                "metadata `{qk_key}` ({qk_dim}) must exceed `{}` ({rope_dim}): keys are [nope | rope]",
                key("rope.dimension_count")
            )));
        }
        let latent = LatentSpec { q_rank, kv_rank, nope_dim: qk_dim - rope_dim, rope_dim, value_dim, norm_eps: 1e-6 };
        let vocab = self.vocab_size(hidden)?;
        if let Some(t) = self.content.metadata.get(&key("attention.temperature_scale")) {
            let t = t
                .to_f32()
                .map_err(|e| self.error(format!("metadata `{}`: {e}", key("attention.temperature_scale"))))?;
            if t != 0.0 {
                return Err(self.error(format!(
                    "metadata `{}` ({t}): attention temperature scaling is not supported",
                    key("attention.temperature_scale")
                )));
            }
        }
        if self.has("rope_freqs.weight") {
            return Err(self.error("deepseek2: rope_freqs.weight is not supported"));
        }
        let (scaling, scale) = self.deepseek_rope_scaling(latent.qk_dim())?;
        let rotary = RotarySpec {
            fraction: 1.0,
            base: self.f32_or(&key("rope.freq_base"), 10000.0)?,
            layout: RotaryLayoutSpec::Interleaved,
            scaling,
        };
        let (moe, inner) = self.deepseek_experts(layers, vocab)?;
        let bias = self.has("blk.0.attn_kv_a_mqa.bias");
        let mut tower = TowerSpec::decoder(vocab, hidden, layers, heads, context)
            .with_positions(PositionSpec::Rotary(rotary))
            .with_norm(NormSpec::RmsNorm { eps })
            .with_attention(AttentionSpec {
                num_heads: heads,
                num_kv_heads: heads,
                head_dim: rope_dim,
                qkv_bias: bias,
                out_bias: bias,
                scale,
                masking: Masking::Causal,
                schedule: Vec::new(),
                qk_norm: None,
                logit_softcap: None,
                local_rotary: None,
                latent: Some(latent),
            });
        tower.feed_forward =
            FeedForwardSpec { bias: false, experts: Some(moe), ..FeedForwardSpec::gated(inner, ActivationKind::Silu) };
        let eos: Vec<u32> = self.u32_or("tokenizer.ggml.eos_token_id", None)?.into_iter().collect();
        let pad = self.u32_or("tokenizer.ggml.padding_token_id", None)?.or(eos.first().copied()).unwrap_or(0);
        let tied = !self.has("output.weight");
        Ok(ArchSpec::decoder(tower, HeadSpec::Lm { tied, bias: false }).with_tokens(SpecialTokens {
            eos,
            pad,
            decoder_start: None,
        }))
    }

    /// A `deepseek2` file's rope scaling and score scale (see [`GgufFile::deepseek_spec`]).
    fn deepseek_rope_scaling(&self, qk_dim: usize) -> Result<(RopeScalingSpec, ScaleRule)> {
        let key = |k: &str| format!("deepseek2.rope.scaling.{k}");
        let kind = match self.content.metadata.get(&key("type")) {
            None => None,
            Some(v) => Some(v.to_string().map_err(|e| self.error(format!("metadata `{}`: {e}", key("type"))))?.clone()),
        };
        match kind.as_deref() {
            None | Some("none") => return Ok((RopeScalingSpec::None, ScaleRule::InverseSqrtHeadDim)),
            Some("yarn") => {}
            Some(other) => {
                return Err(self
                    .error(format!("metadata `{}` is `{other}` (supported for deepseek2: none, yarn)", key("type"))));
            }
        }
        let factor = self.f32_or(&key("factor"), 0.0)?;
        if !(factor > 0.0 && factor.is_finite()) {
            return Err(self.error(format!("metadata `{}` is {factor}, expected a positive factor", key("factor"))));
        }
        let original = self.positive(&key("original_context_length"))?;
        // Factors llama.cpp would apply beyond what transformers' DeepSeek YaRN does.
        for k in ["attn_factor", "yarn_attn_factor", "yarn_ext_factor"] {
            let value = self.f32_or(&key(k), 1.0)?;
            if value != 1.0 {
                return Err(self.error(format!(
                    "metadata `{}` ({value}): deepseek2 YaRN with a factor other than 1 is not supported",
                    key(k)
                )));
            }
        }
        let log_mul = self.f32_or(&key("yarn_log_multiplier"), 0.0)?;
        if !(log_mul > 0.0 && log_mul.is_finite()) {
            return Err(self.error(format!(
                "deepseek2 YaRN needs a positive metadata `{}` (0.1 · mscale_all_dim), found {log_mul}",
                key("yarn_log_multiplier")
            )));
        }
        let mscale = tcat_position::yarn_mscale(factor, log_mul / 0.1);
        let scaling = RopeScalingSpec::Yarn {
            factor,
            original_max_positions: original,
            beta_fast: self.f32_or(&key("yarn_beta_fast"), 32.0)?,
            beta_slow: self.f32_or(&key("yarn_beta_slow"), 1.0)?,
            attention_factor: 1.0,
            truncate: true,
        };
        Ok((scaling, ScaleRule::Fixed { scale: mscale * mscale / (qk_dim as f64).sqrt() }))
    }

    /// A `deepseek2` file's mixture of experts and dense width (see
    /// [`GgufFile::deepseek_spec`]).
    fn deepseek_experts(&self, layers: usize, vocab: usize) -> Result<(MoeSpec, usize)> {
        let key = |k: &str| format!("deepseek2.{k}");
        let inner = self.positive(&key("feed_forward_length"))?;
        let experts = self.positive(&key("expert_count"))?;
        let k = self.positive(&key("expert_used_count"))?;
        let expert_inner = self.positive(&key("expert_feed_forward_length"))?;
        let shared = self.u32(&key("expert_shared_count"))? as usize;
        let first_dense = self.u32_or(&key("leading_dense_block_count"), Some(0))?.unwrap_or(0) as usize;
        let scale = self.f32_or(&key("expert_weights_scale"), 1.0)?;
        if !scale.is_finite() {
            return Err(self.error(format!("metadata `{}` ({scale}) must be finite", key("expert_weights_scale"))));
        }
        let renormalize = self.bool_or(&key("expert_weights_norm"), false)?;
        let groups = self.u32_or(&key("expert_group_count"), Some(1))?.unwrap_or(1) as usize;
        let topk_groups = self.u32_or(&key("expert_group_used_count"), Some(groups as u32))?.unwrap_or(1) as usize;
        if groups == 0 || !experts.is_multiple_of(groups) {
            return Err(self.error(format!(
                "metadata `{}` ({experts}) must split into `{}` ({groups}) groups",
                key("expert_count"),
                key("expert_group_count")
            )));
        }
        if topk_groups == 0 || topk_groups > groups {
            return Err(self.error(format!(
                "metadata `{}` ({topk_groups}) must be between 1 and `{}` ({groups})",
                key("expert_group_used_count"),
                key("expert_group_count")
            )));
        }
        if k > topk_groups * (experts / groups) {
            return Err(self.error(format!(
                "metadata `{}` ({k}) exceeds the {} experts of the kept groups",
                key("expert_used_count"),
                topk_groups * (experts / groups)
            )));
        }
        // llama.cpp's default when the key is absent: softmax, except GLM-4.7-Flash's shape.
        let gating_key = key("expert_gating_func");
        let gating = match self.u32_or(&gating_key, None)? {
            Some(g) => g,
            None if matches!(layers, 47 | 48) && vocab == 154_880 => 2,
            None => 1,
        };
        let rule = match gating {
            1 if renormalize => {
                return Err(self.error(format!(
                    "metadata `{}` true with softmax gating: transformers' DeepSeek-V2 does not renormalise its \
                     gates (llama.cpp does); not supported",
                    key("expert_weights_norm")
                )));
            }
            1 => RoutingRule::GroupLimitedGreedy { k, groups, topk_groups, scale },
            2 => RoutingRule::NoAuxTc { k, groups, topk_groups, renormalize, scale },
            other => {
                return Err(self.error(format!(
                    "metadata `{gating_key}` is {other} (supported: 1 softmax, DeepSeek-V2; 2 sigmoid, DeepSeek-V3)"
                )));
            }
        };
        let moe = MoeSpec {
            num_experts: experts,
            expert_kind: FeedForwardKind::Gated,
            expert_inner,
            router: RouterSpec { rule, bias: false, float32: true, jitter: 0.0 },
            every: 1,
            offset: 0,
            shared_expert: (shared > 0).then(|| SharedExpertSpec { inner: shared * expert_inner, sigmoid_gate: false }),
            first_dense,
        };
        Ok((moe, inner))
    }

    /// The rope scaling of architecture `arch` (`{arch}.rope.scaling.*`).
    fn rope_scaling_of(&self, arch: &str) -> Result<RopeScalingSpec> {
        let type_key = format!("{arch}.rope.scaling.type");
        let kind = match self.content.metadata.get(&type_key) {
            None => None,
            Some(v) => Some(v.to_string().map_err(|e| self.error(format!("metadata `{type_key}`: {e}")))?.clone()),
        };
        let factor = self.f32_or(&format!("{arch}.rope.scaling.factor"), 0.0)?;
        let stored = self.has("rope_freqs.weight");
        Ok(match (kind.as_deref(), stored) {
            (Some("linear"), false) if factor > 0.0 => RopeScalingSpec::Linear { factor },
            (Some("linear"), _) => {
                return Err(self.error(format!(
                    "{arch}.rope.scaling.type `linear` needs a positive {arch}.rope.scaling.factor (and no rope_freqs.weight)"
                )));
            }
            (None | Some("none"), true) => RopeScalingSpec::StoredFactors,
            (None | Some("none"), false) => match self.f32_or(&format!("{arch}.rope.scale_linear"), 1.0)? {
                1.0 => RopeScalingSpec::None,
                factor if factor > 0.0 => RopeScalingSpec::Linear { factor },
                factor => return Err(self.error(format!("{arch}.rope.scale_linear {factor} must be positive"))),
            },
            (Some(other), _) => {
                return Err(self.error(format!(
                    "{arch}.rope.scaling.type `{other}` is not supported yet (supported: none, linear, and Llama 3.1's rope_freqs.weight)"
                )));
            }
        })
    }

    /// Loads a LLaMA-architecture model through the same builder as the `llama` family.
    /// `dtype` `None` keeps the projections quantized (and computes in f32); `Some(d)`
    /// dequantizes every tensor to `d`.
    pub fn load_llama(self, device: &Device, dtype: Option<DType>) -> Result<DecoderModel> {
        self.load(device, dtype)
    }

    /// Loads the decoder of a `llama`, `qwen2`, `qwen3`, `phi3`, `gemma2`, `gemma3` or `deepseek2` file through
    /// the family's builder
    /// path. `dtype` `None` keeps the projections quantized (and computes in f32); `Some(d)`
    /// dequantizes every tensor to `d`.
    pub fn load(mut self, device: &Device, dtype: Option<DType>) -> Result<DecoderModel> {
        let spec = self.spec()?;
        let arch = self.architecture()?.to_string();
        let value_key = format!("{arch}.attention.value_length");
        // deepseek2's value_length is the latent's width (its MLA widths are in the spec).
        let value_dim = if arch == "deepseek2" { None } else { self.u32_or(&value_key, None)? };
        // The metadata (for SmolLM2 about 100k tokenizer strings, several MB) has been read
        // into the spec; tensors are found through the tensor infos. Freed before the weights
        // are read, so that the loaded model's resident peak is the weights.
        self.content.metadata = HashMap::new();
        let interleaved_rows = arch == "llama";
        let names = match arch.as_str() {
            "llama" => &NAMES,
            "qwen2" | "qwen3" => &QWEN_NAMES,
            "phi3" => &PHI3_NAMES,
            "deepseek2" => &DEEPSEEK2_NAMES,
            _ => &GEMMA_NAMES,
        };
        let weights = GgufWeights { file: RefCell::new(self), device: device.clone(), dtype, interleaved_rows };
        // Values as wide as keys: tcat's attention has one head width. Checked after the sizes,
        // so that a hostile size is named as such first.
        if let (Some(value_dim), Some(tower)) = (value_dim, spec.single_tower()) {
            crate::build::check_sizes(&spec, &weights)?;
            let key_dim = tower.attention.head_dim;
            if value_dim as usize != key_dim {
                return Err(Error::InvalidInput(format!(
                    "{}: metadata `{value_key}` ({value_dim}) differs from the key width ({key_dim}); \
                     heads with different key and value widths are not supported",
                    weights.location()
                )));
            }
        }
        crate::build::build(&spec, names, &weights)?
            .into_decoder()
            .ok_or_else(|| Error::InvalidInput("a decoder spec built something else".into()))
    }

    /// The metadata entries as strings, for inspection.
    pub fn metadata_summary(&self) -> HashMap<String, String> {
        self.content.metadata.iter().map(|(k, v)| (k.clone(), format!("{v:?}").chars().take(80).collect())).collect()
    }

    /// Bytes of the tensors' data as stored (blocks of quantized formats included, metadata
    /// and padding not): what one decoding step reads when every weight is used once.
    pub fn tensor_bytes(&self) -> u64 {
        self.content
            .tensor_infos
            .values()
            .map(|t| {
                let elements = t.shape.elem_count() as u64;
                elements / t.ggml_dtype.block_size() as u64 * t.ggml_dtype.type_size() as u64
            })
            .sum()
    }

    /// A tensor dequantized to f32 (for tests and inspection).
    pub fn dequantized(&mut self, name: &str, device: &Device) -> Result<Tensor> {
        Ok(self.qtensor(name, device)?.dequantize(device)?)
    }
}

/// Rebuilds the tokenizer stored in a GGUF file's metadata as a `tokenizers` tokenizer, as
/// transformers rebuilds it when loading the file (`integrations/gguf`):
///
/// - `tokenizer.ggml.model = "gpt2"`: byte-level BPE, with the vocabulary and merges, the
///   pre-tokenizer named by `tokenizer.ggml.pre`, control tokens as special tokens, and the
///   byte-level decoder;
/// - `tokenizer.ggml.model = "llama"` in a `gemma`, `gemma2` or `gemma3` file: Gemma's
///   SentencePiece BPE ([`gemma_tokenizer`]). SentencePiece vocabularies of other architectures
///   are refused (transformers rebuilds those differently, and tcat has no reference for them).
pub fn tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let file = GgufFile::open(path)?;
    let model = file
        .value("tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| file.error(format!("metadata `tokenizer.ggml.model`: {e}")))?
        .clone();
    match model.as_str() {
        "gpt2" => byte_level_tokenizer(&file),
        "llama" => match file.architecture()? {
            "gemma" | "gemma2" | "gemma3" => gemma_tokenizer(&file),
            arch => Err(file.error(format!(
                "tokenizer.ggml.model `llama` (SentencePiece) is supported for Gemma files only (general.architecture \
                 gemma, gemma2 or gemma3), not `{arch}`"
            ))),
        },
        _ => Err(file.error(format!(
            "tokenizer.ggml.model `{model}` is not supported yet (supported: gpt2, byte-level BPE; llama, Gemma's \
             SentencePiece BPE)"
        ))),
    }
}

impl GgufFile {
    /// The array of strings `key`.
    fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.value(key)?
            .to_vec()
            .map_err(|e| self.error(format!("metadata `{key}`: {e}")))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| self.error(format!("metadata `{key}`: {e}"))))
            .collect()
    }

    /// `tokenizer.ggml.token_type`, one type per token (llama.cpp's: 1 normal, 3 control, 4
    /// user-defined, 6 byte); all normal when the file has none.
    fn token_types(&self, count: usize) -> Result<Vec<i32>> {
        let key = "tokenizer.ggml.token_type";
        match self.content.metadata.get(key) {
            Some(v) => v
                .to_vec()
                .map_err(|e| self.error(format!("metadata `{key}`: {e}")))?
                .iter()
                .map(|t| t.to_i32().map_err(|e| self.error(format!("metadata `{key}`: {e}"))))
                .collect(),
            None => Ok(vec![1; count]),
        }
    }

    /// The token string whose id is stored under `key`, if the key is set.
    fn token_named_by(&self, key: &str, tokens: &[String]) -> Result<Option<(String, u32)>> {
        match self.u32_or(key, None)? {
            None => Ok(None),
            Some(id) => match tokens.get(id as usize) {
                Some(token) => Ok(Some((token.clone(), id))),
                None => Err(self.error(format!("metadata `{key}` is {id}, past the {} tokens", tokens.len()))),
            },
        }
    }
}

/// The byte-level BPE of a `gpt2` tokenizer model.
fn byte_level_tokenizer(file: &GgufFile) -> Result<tokenizers::Tokenizer> {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::{AddedToken, PreTokenizerWrapper};

    let path = &file.path;
    let tokens = file.strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = file
        .strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_string(), b.to_string())),
            None => Err(file.error(format!("tokenizer.ggml.merges: `{m}` is not a pair"))),
        })
        .collect::<Result<_>>()?;
    let types = file.token_types(tokens.len())?;
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre = match file.content.metadata.get("tokenizer.ggml.pre") {
        None => None,
        Some(v) => Some(v.to_string().map_err(|e| file.error(format!("metadata `tokenizer.ggml.pre`: {e}")))?.as_str()),
    };
    let pre = match pre {
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

/// Python's `str.isspace` for one character (Unicode's White_Space, and the separators
/// U+001C..U+001F).
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// BPE merges recovered from a vocabulary that lists none, best first: every split of a token
/// into two tokens of the vocabulary is a merge, ranked by the token's position in the list
/// (earlier first), the splits of one token by the length of their left piece (longer first).
/// transformers' `generate_merges` with each token scored by minus its position, which
/// `gemma_tokenizer` (integrations/gguf) uses because Gemma's scores do not follow its merge
/// order while the token order does. A token listed twice ranks at its last position, as the
/// vocabulary maps it there.
pub fn merges_from_vocabulary(tokens: &[String], vocab: &tokenizers::models::bpe::Vocab) -> Vec<(String, String)> {
    let mut merges = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if vocab.get(token.as_str()) != Some(&(i as u32)) {
            continue;
        }
        for (at, _) in token.char_indices().skip(1).collect::<Vec<_>>().into_iter().rev() {
            let (left, right) = token.split_at(at);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                merges.push((left.to_string(), right.to_string()));
            }
        }
    }
    merges
}

/// Gemma's SentencePiece vocabulary (`tokenizer.ggml.model = "llama"` in a Gemma file), rebuilt
/// as transformers rebuilds it (`gemma_tokenizer` in integrations/gguf, handing the vocabulary
/// to `GemmaTokenizer`), which is the tokenizer Gemma's `tokenizer.json` describes:
///
/// - a BPE with byte fallback (`<0x..>` tokens) and `tokenizer.ggml.unknown_token_id`'s token
///   (else `<unk>`) for the rest, its merges recovered from the vocabulary in file order
///   ([`merges_from_vocabulary`]: the file lists none);
/// - tokens made only of whitespace with at least one space are stored with spaces, which the
///   normalizer writes as `▁`: they are respelled as that many `▁` first;
/// - spaces normalised to `▁`, no prefix space, and the decoder turning `▁` back into spaces
///   and byte tokens into text;
/// - `<bos>` (`tokenizer.ggml.bos_token_id`) added in front when `tokenizer.ggml.add_bos_token`
///   is set or absent, `<eos>` behind when `tokenizer.ggml.add_eos_token` is set;
/// - control tokens (type 3) as special tokens and user-defined ones (type 4, `\n`, `<table>`,
///   ...; those whose spelling was changed above excepted, as in transformers) as added tokens,
///   both matched whole and unnormalised.
fn gemma_tokenizer(file: &GgufFile) -> Result<tokenizers::Tokenizer> {
    use tokenizers::decoders::byte_fallback::ByteFallback;
    use tokenizers::decoders::fuse::Fuse;
    use tokenizers::decoders::sequence::Sequence as DecoderSequence;
    use tokenizers::models::bpe::BPE;
    use tokenizers::normalizers::replace::Replace;
    use tokenizers::pre_tokenizers::split::Split;
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior};

    let path = &file.path;
    let tok_error = |e: tokenizers::Error| Error::Tokenizer(format!("{}: {e}", path.display()));
    let tokens = file.strings("tokenizer.ggml.tokens")?;
    let types = file.token_types(tokens.len())?;
    let respelled: Vec<String> = tokens
        .iter()
        .map(|t| match t.contains(' ') && t.chars().all(python_space) {
            true => "\u{2581}".repeat(t.chars().count()),
            false => t.clone(),
        })
        .collect();
    let vocab: tokenizers::models::bpe::Vocab =
        respelled.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges = merges_from_vocabulary(&respelled, &vocab);
    let unk = file.token_named_by("tokenizer.ggml.unknown_token_id", &tokens)?.map_or("<unk>".into(), |(t, _)| t);
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(t, ty)| **ty == 4 && vocab.contains_key(t.as_str()))
        .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(unk)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(tok_error)?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_normalizer(Some(Replace::new(" ", "\u{2581}").map_err(tok_error)?));
    tok.with_pre_tokenizer(Some(
        Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false).map_err(tok_error)?,
    ));
    tok.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(tok_error)?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    // transformers' `TokenizersBackend.update_post_processor`.
    let add_bos = file.bool_or("tokenizer.ggml.add_bos_token", true)?;
    let add_eos = file.bool_or("tokenizer.ggml.add_eos_token", false)?;
    let mut ends = Vec::new();
    let mut side = |key: &str, add: bool| -> Result<Option<String>> {
        if !add {
            return Ok(None);
        }
        match file.token_named_by(key, &tokens)? {
            Some((token, id)) => {
                ends.push((token.clone(), id));
                Ok(Some(token))
            }
            None => Err(file.error(format!("the tokenizer adds the token `{key}` names, but the key is missing"))),
        }
    };
    let (bos, eos) = (side("tokenizer.ggml.bos_token_id", add_bos)?, side("tokenizer.ggml.eos_token_id", add_eos)?);
    if !ends.is_empty() {
        let sequence = |name: &str, type_id: u32| -> String {
            let mut parts = Vec::new();
            parts.extend(bos.iter().map(|b| format!("{b}:{type_id}")));
            parts.push(format!("${name}:{type_id}"));
            parts.extend(eos.iter().map(|e| format!("{e}:{type_id}")));
            parts.join(" ")
        };
        let template_error = |e: String| Error::Tokenizer(format!("{}: {e}", path.display()));
        let mut builder = TemplateProcessing::builder();
        builder.try_single(sequence("A", 0)).map_err(template_error)?;
        builder.try_pair(format!("{} {}", sequence("A", 0), sequence("B", 1))).map_err(template_error)?;
        builder.special_tokens(ends);
        let processor = builder.build().map_err(|e| template_error(e.to_string()))?;
        tok.with_post_processor(Some(processor));
    }
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == 3)
        .map(|(content, _)| AddedToken::from(content.clone(), true))
        .collect();
    tok.add_special_tokens(&special);
    tok.add_tokens(&added);
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
