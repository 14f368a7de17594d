//! The four commands.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use tcat_models::{
    Batch, ChatMessage, ChatTemplate, Format, GenerationConfig, Model, ModelSource, Sampling, SentenceConfig,
    load_tokenizer,
};
use tokenizers::Tokenizer;

use crate::parse_ids;

/// Loads `model`; `dtype` `None` means f32, or quantized for GGUF files.
fn load(model: &str, device: &Device, dtype: Option<DType>) -> Result<(ModelSource, Model)> {
    if let Some(name) = model.strip_prefix("preset:") {
        let Some(entry) = tcat_catalog::find(name) else {
            let presets: Vec<&str> = tcat_catalog::entries()
                .iter()
                .filter(|e| e.level == tcat_catalog::Level::Preset)
                .map(|e| e.name)
                .collect();
            bail!("--model preset:{name}: no such catalog entry; presets: {}", presets.join(", "));
        };
        let loaded = crate::catalog::preset(entry, device, dtype.unwrap_or(DType::F32))
            .with_context(|| format!("building preset `{name}`"))?;
        let source = ModelSource::preset(model);
        return Ok((source, loaded));
    }
    let source = ModelSource::resolve(model)?;
    let loaded = match source.format {
        Format::Gguf => Model::load_gguf(&source, device, dtype),
        Format::HuggingFace | Format::Preset => Model::load(&source, device, dtype.unwrap_or(DType::F32)),
    }
    .with_context(|| format!("loading model `{model}`"))?;
    Ok((source, loaded))
}

fn tokenizer(source: &ModelSource) -> Result<Tokenizer> {
    match source.format {
        Format::Gguf => return Ok(tcat_models::gguf::tokenizer(&source.weights[0])?),
        Format::Preset => bail!("{}: presets have no tokenizer; give token ids (--ids, --prompt-ids)", source.name),
        Format::HuggingFace => {}
    }
    let path = source
        .tokenizer
        .as_ref()
        .with_context(|| format!("{}: no tokenizer.json beside the model", source.root.display()))?;
    Ok(load_tokenizer(path)?)
}

#[derive(Args)]
pub struct ForwardArgs {
    /// Model folder, weights file, or hub id.
    #[arg(long)]
    model: String,
    /// Token ids of one batch row, comma-separated; repeat for more rows. A CLIP model writes
    /// `text_embeds` `[batch, dim]` (L2-normalised).
    #[arg(long, required_unless_present = "pixel_values", allow_negative_numbers = true)]
    ids: Vec<String>,
    /// A safetensors file holding `pixel_values`, f32 `[batch, 3, H, W]`, already preprocessed
    /// (the image size the model's position table is for). A ViT writes `hidden_states`
    /// `[batch, tokens, hidden]`, a CLIP model `image_embeds` `[batch, dim]` (L2-normalised; with
    /// --ids too, also `text_embeds` and `logits_per_image` `[images, texts]`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["token_type_ids", "langs", "decoder_ids", "head", "router_stats"])]
    pixel_values: Option<PathBuf>,
    /// Segment ids of one row (one per --ids row when given).
    #[arg(long, allow_negative_numbers = true)]
    token_type_ids: Vec<String>,
    /// Language ids of one row, one per token (XLM's language embeddings), comma-separated;
    /// one --langs per --ids row when given.
    #[arg(long, allow_negative_numbers = true)]
    langs: Vec<String>,
    /// Decoder token ids of an encoder-decoder (T5, BART, Marian), comma-separated, one row per
    /// --ids row, each starting with the decoder start token: `logits` are then
    /// `[batch, decoder_seq, vocab]` (ragged rows are right-padded and masked).
    #[arg(long, allow_negative_numbers = true)]
    decoder_ids: Vec<String>,
    /// Which output to write: the model's own (`hidden_states` or `logits`), or `reward`
    /// (`rewards` `[batch]`, the scalar head of a decoder; presets and checkpoints with a
    /// `score.weight` have one).
    #[arg(long, value_enum)]
    head: Option<HeadArg>,
    /// Also write the routers' statistics of a mixture-of-experts model: `router_load`
    /// `[layers, experts]` (fraction of tokens per expert; an encoder-decoder's encoder layers
    /// first) and `aux_loss` (the load-balancing loss: over the real tokens for a decoder; for
    /// Switch Transformers the sum of `encoder_aux_loss` and `decoder_aux_loss`, also written
    /// with `encoder_z_loss` and `decoder_z_loss`, raw as transformers reports them).
    #[arg(long)]
    router_stats: bool,
    /// A safetensors file holding `latents` `[batch, tokens, image_width]`: image tokens a
    /// diffusion U-Net's text-conditioning layer reads the encoder's states into (the GLIDE,
    /// Latent Diffusion and Imagen presets); also writes `conditioned_latents`, same shape.
    #[arg(long)]
    latents: Option<PathBuf>,
    /// Output safetensors file, written atomically (a temporary file beside it, then renamed;
    /// a symbolic link is followed and stays a link; a failed write leaves a previous file intact).
    #[arg(long)]
    out: PathBuf,
}

/// A head `forward` can write instead of the model's default output.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum HeadArg {
    /// One scalar per row from the last real token (`rewards` `[batch]`).
    Reward,
}

pub fn forward(args: ForwardArgs, device: &Device, dtype: Option<DType>) -> Result<()> {
    let rows = args.ids.iter().map(|s| parse_ids("--ids", s)).collect::<Result<Vec<_>>>()?;
    let types = args.token_type_ids.iter().map(|s| parse_ids("--token-type-ids", s)).collect::<Result<Vec<_>>>()?;
    if !types.is_empty() && types.len() != rows.len() {
        bail!("--token-type-ids: given {} times for {} --ids rows; give one per row", types.len(), rows.len());
    }
    if let Some(i) = types.iter().zip(&rows).position(|(t, r)| t.len() != r.len()) {
        bail!(
            "--token-type-ids row {}: {} token type ids for {} --ids; expected one per token",
            i + 1,
            types[i].len(),
            rows[i].len()
        );
    }
    let langs = args.langs.iter().map(|s| parse_ids("--langs", s)).collect::<Result<Vec<_>>>()?;
    if !langs.is_empty() && langs.len() != rows.len() {
        bail!("--langs: given {} times for {} --ids rows; give one per row", langs.len(), rows.len());
    }
    if let Some(i) = langs.iter().zip(&rows).position(|(l, r)| l.len() != r.len()) {
        bail!(
            "--langs row {}: {} language ids for {} --ids; expected one per token",
            i + 1,
            langs[i].len(),
            rows[i].len()
        );
    }
    crate::output::check_writable("--out", &args.out)?;
    let pixels = args.pixel_values.as_deref().map(|path| read_pixel_values(path, device)).transpose()?;
    let (_, model) = load(&args.model, device, dtype)?;
    match &model {
        Model::Vision(_) | Model::DualEncoder(_) | Model::VisionLanguage(_) => {
            return forward_images(&args, &model, &rows, pixels.as_ref(), device);
        }
        _ if pixels.is_some() => {
            bail!(
                "--pixel-values: `{}` reads tokens, not images (ViT, CLIP and the vision-language presets read pixel \
                 values)",
                args.model
            )
        }
        _ => {}
    }
    let decoder_rows = args.decoder_ids.iter().map(|s| parse_ids("--decoder-ids", s)).collect::<Result<Vec<_>>>()?;
    match (&model, decoder_rows.len()) {
        (Model::Seq2seq(m), 0) => bail!(
            "--decoder-ids: `{}` is an encoder-decoder; give one --decoder-ids row per --ids row, each starting with \
             the decoder start token {}",
            args.model,
            m.tokens().decoder_start
        ),
        (Model::Seq2seq(_), n) if n != rows.len() => {
            bail!("--decoder-ids: given {n} times for {} --ids rows; give one per row", rows.len())
        }
        (Model::Seq2seq(_), _) => {}
        (_, 0) => {}
        (_, _) => bail!("--decoder-ids: `{}` is not an encoder-decoder model (T5, BART, Marian)", args.model),
    }
    let types = (!types.is_empty()).then_some(types.as_slice());
    let mut batch = Batch::right_padded(&rows, types, model.pad_token_id(), device)?;
    if !langs.is_empty() {
        match &model {
            Model::Encoder(m) if m.languages() > 0 => {
                if let Some(bad) = langs.iter().flatten().find(|&&l| l as usize >= m.languages()) {
                    bail!("--langs: language id {bad} is outside the model's {} languages (n_langs)", m.languages());
                }
                batch = batch.with_languages(&langs)?
            }
            _ => {
                bail!("--langs: `{}` has no language embeddings (XLM's `n_langs` > 1 with `use_lang_emb`)", args.model)
            }
        }
    }
    let decoder_batch = match &model {
        Model::Seq2seq(_) => Some(Batch::right_padded(&decoder_rows, None, model.pad_token_id(), device)?),
        _ => None,
    };
    if args.latents.is_some() && !matches!(model, Model::Encoder(_)) {
        bail!(
            "--latents: only a text encoder with a text-conditioning layer reads latents (GLIDE, LDM, Imagen presets)"
        );
    }
    let mut conditioned_latents = None;
    let (name, output) = match (&model, args.head) {
        (Model::Decoder(m), Some(HeadArg::Reward)) => ("rewards", m.rewards(&batch)?),
        (Model::Encoder(_), Some(HeadArg::Reward)) => bail!("--head reward: the reward head sits on decoders"),
        (Model::Encoder(m), None) => {
            if types.is_some() && !m.takes_token_types() {
                bail!("--token-type-ids: this model has no token type embeddings");
            }
            let hidden = m.hidden_states(&batch)?;
            if let Some(path) = &args.latents {
                let mut file = candle_core::safetensors::load(path, &Device::Cpu)
                    .with_context(|| format!("--latents: reading {}", path.display()))?;
                let latents = file
                    .remove("latents")
                    .with_context(|| format!("--latents: {} holds no `latents` tensor", path.display()))?;
                let conditioned = m
                    .conditioned_latents(&hidden, &batch, &latents.to_device(device)?)
                    .with_context(|| format!("--latents {}", path.display()))?;
                conditioned_latents = Some(conditioned);
            }
            ("hidden_states", hidden)
        }
        (Model::Decoder(m), None) => {
            if types.is_some() {
                bail!("--token-type-ids: causal language models take no token types");
            }
            ("logits", m.logits(&batch)?)
        }
        (Model::Seq2seq(_), Some(HeadArg::Reward)) => bail!("--head reward: the reward head sits on decoders"),
        (Model::Seq2seq(m), None) => {
            if types.is_some() {
                bail!("--token-type-ids: encoder-decoders take no token types");
            }
            ("logits", m.logits(&batch, decoder_batch.as_ref().expect("built for encoder-decoders"))?)
        }
        (Model::Vision(_) | Model::DualEncoder(_) | Model::VisionLanguage(_), _) => {
            unreachable!("image models are run by forward_images")
        }
    };
    let host = |t: &candle_core::Tensor| -> Result<candle_core::Tensor> {
        Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
    };
    let mut tensors = HashMap::from([
        (name.to_string(), host(&output)?),
        ("attention_mask".to_string(), host(batch.attention_mask())?),
    ]);
    if let Some(decoder) = &decoder_batch {
        tensors.insert("decoder_attention_mask".into(), host(decoder.attention_mask())?);
    }
    if let Some(conditioned) = &conditioned_latents {
        tensors.insert("conditioned_latents".into(), host(conditioned)?);
    }
    if args.router_stats
        && let (Model::Seq2seq(m), Some(decoder)) = (&model, &decoder_batch)
    {
        let report = m.logits_with_router(&batch, decoder)?;
        if report.encoder.is_empty() && report.decoder.is_empty() {
            bail!("--router-stats: `{}` has no mixture-of-experts layers", args.model);
        }
        let layers: Vec<_> = report.encoder.iter().chain(&report.decoder).collect();
        let loads = layers.iter().map(|r| r.load.unsqueeze(0)).collect::<candle_core::Result<Vec<_>>>()?;
        tensors.insert("router_load".into(), host(&candle_core::Tensor::cat(&loads, 0)?)?);
        // Switch's losses per stack, as transformers reports them (raw, without coefficients),
        // and their sum as `aux_loss`.
        let mut aux = 0f32;
        for (stack, routers) in [("encoder", &report.encoder), ("decoder", &report.decoder)] {
            if routers.is_empty() {
                continue;
            }
            let loss = tcat_blocks::load_balancing_loss(routers)?;
            aux += loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            // The z-loss over the stack's concatenated router logits: the mean of the layers'.
            let zs = routers.iter().map(|r| r.z_loss.unsqueeze(0)).collect::<candle_core::Result<Vec<_>>>()?;
            tensors.insert(format!("{stack}_z_loss"), host(&candle_core::Tensor::cat(&zs, 0)?.mean_all()?)?);
            tensors.insert(format!("{stack}_aux_loss"), host(&loss)?);
        }
        tensors.insert("aux_loss".into(), candle_core::Tensor::new(aux, &Device::Cpu)?);
    } else if args.router_stats {
        let Model::Decoder(m) = &model else { bail!("--router-stats: `{}` is not a decoder", args.model) };
        let report = m.logits_with_router(&batch)?;
        let Some(aux_loss) = report.aux_loss else {
            bail!("--router-stats: `{}` has no mixture-of-experts layers", args.model);
        };
        tensors.insert("router_load".into(), host(&report.router_load)?);
        tensors.insert("aux_loss".into(), host(&aux_loss)?);
    }
    crate::output::write_atomically("--out", &args.out, |temp| Ok(candle_core::safetensors::save(&tensors, temp)?))
}

/// The `pixel_values` tensor of a safetensors file: f32 `[batch, channels, H, W]`, on `device`.
fn read_pixel_values(path: &std::path::Path, device: &Device) -> Result<candle_core::Tensor> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("--pixel-values: reading {} (expected a safetensors file)", path.display()))?;
    let Some(pixels) = tensors.get("pixel_values") else {
        let mut found: Vec<&str> = tensors.keys().map(String::as_str).collect();
        found.sort();
        bail!(
            "--pixel-values: {} has no tensor `pixel_values` (found: {}); expected f32 [batch, 3, height, width]",
            path.display(),
            if found.is_empty() { "none".to_string() } else { found.join(", ") }
        );
    };
    if pixels.dtype() != DType::F32 {
        bail!(
            "--pixel-values: `pixel_values` in {} is {:?}; expected f32 (preprocessed pixel values)",
            path.display(),
            pixels.dtype()
        );
    }
    if pixels.rank() != 4 || pixels.dim(0)? == 0 {
        bail!(
            "--pixel-values: `pixel_values` in {} has shape {:?}; expected [batch, 3, height, width] with batch ≥ 1",
            path.display(),
            pixels.dims()
        );
    }
    Ok(pixels.to_device(device)?)
}

/// `forward` on an image encoder (ViT), a text-image dual encoder (CLIP) or a vision-language
/// decoder (CoCa, PaLM-E: `logits` at the text positions, one image per `--ids` row).
fn forward_images(
    args: &ForwardArgs,
    model: &Model,
    rows: &[Vec<u32>],
    pixels: Option<&candle_core::Tensor>,
    device: &Device,
) -> Result<()> {
    if !args.token_type_ids.is_empty() || !args.langs.is_empty() || !args.decoder_ids.is_empty() {
        bail!("--token-type-ids, --langs and --decoder-ids: `{}` takes none of them", args.model);
    }
    if args.head.is_some() || args.router_stats {
        bail!("--head and --router-stats: `{}` has no reward head and no routers", args.model);
    }
    let host = |t: &candle_core::Tensor| -> Result<candle_core::Tensor> {
        Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
    };
    let mut tensors = HashMap::new();
    match model {
        Model::Vision(m) => {
            if !rows.is_empty() {
                bail!("--ids: `{}` is an image encoder (ViT); give --pixel-values FILE.safetensors", args.model);
            }
            let pixels = pixels.context("--pixel-values: an image encoder needs pixel values")?;
            let hidden = m.hidden_states(pixels).context("--pixel-values")?;
            tensors.insert("hidden_states".to_string(), host(&hidden)?);
        }
        Model::DualEncoder(m) => {
            let images = pixels.map(|p| m.image_embeds(p).context("--pixel-values")).transpose()?;
            let texts = if rows.is_empty() {
                None
            } else {
                let batch = Batch::right_padded(rows, None, m.pad_token_id(), device)?;
                let embeds = m.text_embeds(&batch).context("--ids")?;
                tensors.insert("attention_mask".to_string(), host(batch.attention_mask())?);
                Some(embeds)
            };
            if let (Some(images), Some(texts)) = (&images, &texts) {
                tensors.insert("logits_per_image".to_string(), host(&m.logits_per_image(images, texts)?)?);
            }
            if let Some(images) = images {
                tensors.insert("image_embeds".to_string(), host(&images)?);
            }
            if let Some(texts) = texts {
                tensors.insert("text_embeds".to_string(), host(&texts)?);
            }
        }
        Model::VisionLanguage(m) => {
            let pixels = pixels.context("--pixel-values: a vision-language model reads one image per --ids row")?;
            if rows.is_empty() {
                bail!("--ids: `{}` is a vision-language model; give one text row per image", args.model);
            }
            let batch = Batch::right_padded(rows, None, m.pad_token_id(), device)?;
            let logits = m.logits(pixels, &batch).context("--pixel-values and --ids")?;
            tensors.insert("logits".to_string(), host(&logits)?);
            tensors.insert("attention_mask".to_string(), host(batch.attention_mask())?);
        }
        _ => unreachable!("only image models come here"),
    }
    crate::output::write_atomically("--out", &args.out, |temp| Ok(candle_core::safetensors::save(&tensors, temp)?))
}

#[derive(Clone, Copy, ValueEnum)]
enum Pooling {
    Mean,
    Cls,
}

#[derive(Args)]
pub struct EmbedArgs {
    /// Model folder, weights file, or hub id (an encoder).
    #[arg(long)]
    model: String,
    /// Token pooling (default: the sentence-transformers config, else mean).
    #[arg(long, value_enum)]
    pooling: Option<Pooling>,
    /// L2-normalise embeddings (sentence-transformers models with a Normalize module always are).
    #[arg(long)]
    normalize: bool,
    /// Print one JSON object per line: {"text": ..., "embedding": [...]}.
    #[arg(long)]
    json: bool,
    /// Refuse texts longer than the model takes instead of truncating them. By default, as
    /// sentence-transformers does, a text is cut to the folder's `max_seq_length`
    /// (sentence_bert_config.json), else to the model's position limit, special tokens included.
    #[arg(long)]
    no_truncate: bool,
    /// An image to embed with a text-image model (CLIP): PNG, JPEG, GIF, BMP or WebP,
    /// preprocessed as the folder's preprocessor_config.json says; repeat for more. Given with
    /// texts, the image-text probabilities (softmax over the texts) are printed too.
    #[arg(long, value_name = "FILE")]
    image: Vec<PathBuf>,
    /// Texts to embed (an empty string is a valid text when the tokenizer adds special tokens).
    #[arg(required_unless_present = "image")]
    texts: Vec<String>,
}

pub fn embed(args: EmbedArgs, device: &Device, dtype: Option<DType>) -> Result<()> {
    let (source, model) = load(&args.model, device, dtype)?;
    if let Model::DualEncoder(m) = &model {
        return embed_text_image(&args, &source, m, device);
    }
    if !args.image.is_empty() {
        bail!("--image: `{}` is not a text-image model (CLIP); image embeddings need one", args.model);
    }
    let Model::Encoder(encoder) = &model else {
        let kind = match model {
            Model::Vision(_) => "an image encoder",
            Model::VisionLanguage(_) => "a vision-language model",
            _ => "a causal language model",
        };
        bail!("embed needs an encoder model (bert, roberta, distilbert, ...) or CLIP; `{}` is {kind}", args.model);
    };
    let tok = tokenizer(&source)?;
    let sentence = SentenceConfig::read(&source.root)?;
    let mut sentence = sentence.unwrap_or(SentenceConfig {
        pooling: tcat_blocks::SentencePooling::Mean,
        dense: Vec::new(),
        normalize: false,
    });
    match args.pooling {
        Some(Pooling::Mean) => sentence.pooling = tcat_blocks::SentencePooling::Mean,
        Some(Pooling::Cls) => sentence.pooling = tcat_blocks::SentencePooling::Cls,
        None => {}
    }
    sentence.normalize |= args.normalize;
    let limit = embed_limit(&source, encoder.max_sequence_len())?;
    let tok = limit_tokenizer(tok, limit.as_ref(), args.no_truncate)?;
    let rows = encode_texts(&tok, &args.texts)?;
    if let Some(limit) = &limit {
        limit.check(&rows, &args.texts)?;
    }
    let batch = Batch::right_padded(&rows, None, encoder.pad_token_id(), device)?;
    let hidden = encoder.hidden_states(&batch)?;
    let pooled = sentence.embed(&hidden, batch.attention_mask())?;
    let vectors: Vec<Vec<f32>> = pooled.to_dtype(DType::F32)?.to_vec2()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for (text, v) in args.texts.iter().zip(&vectors) {
            writeln!(out, "{}", serde_json::json!({"text": text, "embedding": v}))?;
        }
        return Ok(());
    }
    for (text, v) in args.texts.iter().zip(&vectors) {
        let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:+.4}")).collect();
        writeln!(out, "{text:?}: [{}, …] ({} dims)", head.join(", "), v.len())?;
    }
    if vectors.len() > 1 {
        writeln!(out, "\ncosine similarity:")?;
        for (i, a) in vectors.iter().enumerate() {
            let row: Vec<String> = vectors.iter().map(|b| format!("{:6.3}", cosine(a, b))).collect();
            writeln!(out, "  [{i}] {}", row.join(" "))?;
        }
    }
    Ok(())
}

/// `embed` with a text-image model (CLIP): the L2-normalised embeddings of the images and the
/// texts, and given both, each image's probabilities over the texts (a softmax of
/// `exp(logit_scale)` × cosine, CLIP's `logits_per_image`: zero-shot classification).
fn embed_text_image(
    args: &EmbedArgs,
    source: &ModelSource,
    model: &tcat_models::DualEncoderModel,
    device: &Device,
) -> Result<()> {
    if args.pooling.is_some() || args.normalize {
        bail!("--pooling and --normalize: `{}` pools and normalises as CLIP does; drop them", args.model);
    }
    let image_embeds = if args.image.is_empty() {
        None
    } else {
        let config = source.root.join("preprocessor_config.json");
        if source.format != Format::HuggingFace || !config.is_file() {
            bail!(
                "--image: no preprocessor_config.json in {} (the image size, crop and normalisation come from it)",
                source.root.display()
            );
        }
        let processor = tcat_models::image_processor::ImageProcessor::read(&config)?;
        let images = args
            .image
            .iter()
            .map(|path| tcat_models::image_processor::RgbImage::open(path).with_context(|| "--image".to_string()))
            .collect::<Result<Vec<_>>>()?;
        let pixels = processor.pixel_values(&images, device).context("--image")?;
        Some(model.image_embeds(&pixels).with_context(|| format!("--image: {}", config.display()))?)
    };
    let text_embeds = if args.texts.is_empty() {
        None
    } else {
        let tok = tokenizer(source)?;
        let limit = TokenLimit {
            tokens: model.text().max_sequence_len(),
            source: "the text position table (text_config.max_position_embeddings)".into(),
        };
        let tok = limit_tokenizer(tok, Some(&limit), args.no_truncate)?;
        let rows = encode_texts(&tok, &args.texts)?;
        limit.check(&rows, &args.texts)?;
        let batch = Batch::right_padded(&rows, None, model.pad_token_id(), device)?;
        Some(model.text_embeds(&batch)?)
    };
    let probabilities = match (&image_embeds, &text_embeds) {
        (Some(images), Some(texts)) => {
            let logits = model.logits_per_image(images, texts)?;
            Some(candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?.to_vec2::<f32>()?)
        }
        _ => None,
    };
    let vectors = |t: &Option<candle_core::Tensor>| -> Result<Vec<Vec<f32>>> {
        Ok(match t {
            Some(t) => t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2()?,
            None => Vec::new(),
        })
    };
    let (images, texts) = (vectors(&image_embeds)?, vectors(&text_embeds)?);
    let names: Vec<String> = args.image.iter().map(|p| p.display().to_string()).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        for (name, v) in names.iter().zip(&images) {
            writeln!(out, "{}", serde_json::json!({"image": name, "embedding": v}))?;
        }
        for (text, v) in args.texts.iter().zip(&texts) {
            writeln!(out, "{}", serde_json::json!({"text": text, "embedding": v}))?;
        }
        for (name, p) in names.iter().zip(probabilities.iter().flatten()) {
            writeln!(out, "{}", serde_json::json!({"image": name, "texts": args.texts, "probabilities": p}))?;
        }
        return Ok(());
    }
    let head = |v: &[f32]| v.iter().take(4).map(|x| format!("{x:+.4}")).collect::<Vec<_>>().join(", ");
    for (name, v) in names.iter().zip(&images) {
        writeln!(out, "image {name:?}: [{}, …] ({} dims)", head(v), v.len())?;
    }
    for (text, v) in args.texts.iter().zip(&texts) {
        writeln!(out, "text {text:?}: [{}, …] ({} dims)", head(v), v.len())?;
    }
    if let Some(probabilities) = &probabilities {
        writeln!(out, "\nimage-text probabilities (softmax over the texts):")?;
        for (name, p) in names.iter().zip(probabilities) {
            let row: Vec<String> = args.texts.iter().zip(p).map(|(t, p)| format!("{t:?} {p:.4}")).collect();
            writeln!(out, "  {name:?}: {}", row.join(", "))?;
        }
    }
    Ok(())
}

/// The longest token sequence `embed` gives the model, and where that limit comes from.
#[derive(Debug, Clone, PartialEq)]
struct TokenLimit {
    tokens: usize,
    source: String,
}

impl TokenLimit {
    /// Refuses a row longer than the limit (only reached with `--no-truncate`: otherwise the
    /// tokenizer already truncated).
    fn check(&self, rows: &[Vec<u32>], texts: &[String]) -> Result<()> {
        if let Some(i) = rows.iter().position(|r| r.len() > self.tokens) {
            let text: String = texts[i].chars().take(40).collect();
            let more = if texts[i].chars().count() > 40 { "…" } else { "" };
            bail!(
                "--no-truncate: text {} ({text:?}{more}) is {} tokens; expected at most {} ({}); drop --no-truncate to truncate it as sentence-transformers does",
                i + 1,
                rows[i].len(),
                self.tokens,
                self.source
            );
        }
        Ok(())
    }
}

/// sentence-transformers' limit: `max_seq_length` of the folder's sentence_bert_config.json
/// (capped by the position table), else the model's position limit `max_len`; `None` when
/// neither bounds the length (no sentence config and no position table).
fn embed_limit(source: &ModelSource, max_len: usize) -> Result<Option<TokenLimit>> {
    let path = source.root.join("sentence_bert_config.json");
    let configured = if source.format == Format::HuggingFace && path.is_file() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON; expected a JSON object", path.display()))?;
        match json.get("max_seq_length") {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => match value.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) if n > 0 => Some(n),
                _ => bail!("{}: max_seq_length is {value}; expected a positive integer", path.display()),
            },
        }
    } else {
        None
    };
    let table = "the model's position table (max_position_embeddings)".to_string();
    Ok(match configured {
        Some(n) if n <= max_len => {
            Some(TokenLimit { tokens: n, source: format!("max_seq_length in {}", path.display()) })
        }
        Some(_) => Some(TokenLimit { tokens: max_len, source: table }),
        None if max_len == usize::MAX => None,
        None => Some(TokenLimit { tokens: max_len, source: table }),
    })
}

/// The tokenizer `embed` encodes with: truncating to `limit` (its own truncation setting
/// replaced), or with no truncation at all under `--no-truncate`, so a long text is seen.
fn limit_tokenizer(mut tok: Tokenizer, limit: Option<&TokenLimit>, no_truncate: bool) -> Result<Tokenizer> {
    let truncation = match limit {
        Some(limit) if !no_truncate => {
            // The special tokens the post-processor adds must fit (the tokenizers crate would
            // underflow below that).
            let special = tok.get_post_processor().map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, false));
            if limit.tokens < special {
                bail!(
                    "{}: a limit of {} tokens cannot hold the tokenizer's {special} special tokens; expected at least {special}",
                    limit.source,
                    limit.tokens
                );
            }
            Some(tokenizers::TruncationParams { max_length: limit.tokens, ..Default::default() })
        }
        _ => None,
    };
    if let (Err(e), Some(limit)) = (tok.with_truncation(truncation).map(|_| ()), limit) {
        bail!(
            "{}: {} tokens cannot hold the special tokens ({e}); expected a larger limit",
            limit.source,
            limit.tokens
        );
    }
    Ok(tok)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// The ids of each text to embed; a text without tokens (an empty string, with a tokenizer
/// that adds no special tokens) has no embedding and is an error naming it.
fn encode_texts(tok: &Tokenizer, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    let rows = texts.iter().map(|t| encode(tok, t)).collect::<Result<Vec<_>>>()?;
    if let Some(i) = rows.iter().position(Vec::is_empty) {
        bail!(
            "text {:?} tokenizes to no tokens (this tokenizer adds no special tokens), so it has no embedding",
            texts[i]
        );
    }
    Ok(rows)
}

fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = tok.encode(text, true).map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
    Ok(enc.get_ids().to_vec())
}

#[derive(Args)]
pub struct FillMaskArgs {
    /// Model folder, weights file, or hub id (with a masked-LM head).
    #[arg(long)]
    model: String,
    /// Predictions per masked position.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    top_k: usize,
    /// Print one JSON object per prediction.
    #[arg(long)]
    json: bool,
    /// Text containing the tokenizer's mask token ([MASK] or <mask>).
    text: String,
}

pub fn fill_mask(args: FillMaskArgs, device: &Device, dtype: Option<DType>) -> Result<()> {
    let (source, model) = load(&args.model, device, dtype)?;
    let Model::Encoder(encoder) = &model else {
        bail!("fill-mask needs an encoder with a masked-LM head; `{}` is a causal language model", args.model);
    };
    if !encoder.has_mlm_head() {
        bail!("fill-mask: `{}` has no masked-LM head", args.model);
    }
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let tok = tokenizer(&source)?;
    let (mask_token, mask_id) = ["[MASK]", "<mask>"]
        .iter()
        .find_map(|t| tok.token_to_id(t).map(|id| (*t, id)))
        .context("the tokenizer has no mask token ([MASK] or <mask>)")?;
    let ids = encode(&tok, &args.text)?;
    let positions: Vec<usize> = ids.iter().enumerate().filter(|(_, id)| **id == mask_id).map(|(i, _)| i).collect();
    if positions.is_empty() {
        bail!("the text has no {mask_token} token to fill");
    }
    let batch = Batch::right_padded(std::slice::from_ref(&ids), None, encoder.pad_token_id(), device)?;
    let hidden = encoder.hidden_states(&batch)?;
    let logits = encoder.mlm_logits(&hidden)?.squeeze(0)?;
    let mut out = std::io::stdout().lock();
    for &pos in &positions {
        let probs = candle_nn::ops::softmax_last_dim(&logits.get(pos)?.to_dtype(DType::F32)?)?;
        // Rank on the device; only the top k (id, probability) pairs come to the host.
        let k = args.top_k.min(probs.dim(0)?);
        let top = probs.arg_sort_last_dim(false)?.narrow(0, 0, k)?;
        let scores: Vec<f32> = probs.gather(&top, 0)?.to_vec1()?;
        for (id, score) in top.to_vec1::<u32>()?.into_iter().zip(scores) {
            let token = tok.id_to_token(id).unwrap_or_default();
            let mut filled = ids.clone();
            filled[pos] = id;
            let sequence = tok.decode(&filled, true).map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
            if args.json {
                let line = serde_json::json!({"position": pos, "token_id": id, "token": token, "score": score, "sequence": sequence});
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{score:.4}  {token:<15} {sequence}")?;
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder, weights file, or hub id (a causal language model).
    #[arg(long)]
    model: String,
    /// Prompt text (repeat for a batch).
    #[arg(long, conflicts_with = "prompt_ids", required_unless_present = "prompt_ids")]
    prompt: Vec<String>,
    /// Prompt token ids, comma-separated (repeat for a batch).
    #[arg(long, allow_negative_numbers = true)]
    prompt_ids: Vec<String>,
    /// Tokens to generate at most.
    #[arg(long, allow_negative_numbers = true)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f64,
    /// Sample among the k most likely tokens.
    #[arg(long, allow_negative_numbers = true)]
    top_k: Option<usize>,
    /// Sample from the smallest set of tokens with this much probability.
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f64>,
    /// Sampler seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Penalise tokens already present (1 = off; CTRL used 1.2).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repetition_penalty: f64,
    /// Stop a row when its generated text ends with this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Wrap each --prompt as a user message in the model's chat template.
    #[arg(long, requires = "prompt")]
    chat: bool,
    /// Print one JSON line per prompt: {"ids": [...], "text": ...}.
    #[arg(long)]
    json: bool,
    /// Beam search with this many beams, as transformers' `generate(num_beams=K)`; 1 (the
    /// default) decodes greedily or samples. Beams print when done (no streaming).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    num_beams: usize,
    /// Beam search: a finished hypothesis scores its summed log-probability divided by its
    /// generated length to this power (> 0 favours longer outputs, < 0 shorter; default 1).
    #[arg(long, allow_negative_numbers = true)]
    length_penalty: Option<f64>,
    /// Beam search: stop a prompt as soon as it has --num-beams finished hypotheses
    /// (transformers' `early_stopping=True`); without it, transformers' default heuristic
    /// (stop when no running beam can beat the worst finished one at the current length).
    #[arg(long)]
    early_stopping: bool,
    /// Never generate an n-gram of this size twice in a row (prompt included; 0 = off); greedy,
    /// sampling and beams.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    no_repeat_ngram_size: usize,
    /// Print timings to stderr when done: the model's load time, the prompt's tokens/s (its
    /// forward, up to the first generated token) and the generated tokens/s (the tokens after
    /// the first).
    #[arg(long)]
    stats: bool,
}

/// When the tokens of a generation came, for `--stats`.
struct TokenTiming {
    start: std::time::Instant,
    /// Rows of the batch: the first step generates one token per row.
    rows: usize,
    first: Option<std::time::Instant>,
    last: Option<std::time::Instant>,
    tokens: usize,
}

impl TokenTiming {
    fn start(rows: usize) -> Self {
        Self { start: std::time::Instant::now(), rows, first: None, last: None, tokens: 0 }
    }

    fn token(&mut self) {
        let now = std::time::Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.tokens += 1;
    }
}

fn rate(tokens: usize, seconds: f64) -> String {
    match seconds > 0.0 && tokens > 0 {
        true => format!("{:.1} tokens/s", tokens as f64 / seconds),
        false => "- tokens/s".into(),
    }
}

/// `--stats` on stderr: the load time, the prompt's forward (up to the first token) and the
/// tokens generated after it; beam search (`timing` `None`) reports its whole time.
fn print_stats(
    load: std::time::Duration,
    prompt_tokens: usize,
    timing: Option<&TokenTiming>,
    total: std::time::Duration,
) {
    eprintln!("load time: {:.3} s", load.as_secs_f64());
    let Some(t) = timing else {
        eprintln!(
            "prompt and beam search: {prompt_tokens} prompt tokens, {:.3} s together (beams are not timed apart)",
            total.as_secs_f64()
        );
        return;
    };
    let prompt_s = t.first.map_or(total, |f| f - t.start).as_secs_f64();
    eprintln!("prompt: {prompt_tokens} tokens in {prompt_s:.3} s ({})", rate(prompt_tokens, prompt_s));
    let after_first = t.tokens.saturating_sub(t.rows.min(t.tokens));
    let gen_s = match (t.first, t.last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    eprintln!(
        "generation: {after_first} tokens in {gen_s:.3} s ({}), {} generated in all",
        rate(after_first, gen_s),
        t.tokens
    );
}

pub fn generate(args: GenerateArgs, device: &Device, dtype: Option<DType>) -> Result<()> {
    use tcat_models::generation::{BeamSettings, EarlyStopping, SearchLimits, generate_beam};
    if args.num_beams == 0 {
        bail!("--num-beams must be at least 1 (1 is greedy decoding)");
    }
    let beams = args.num_beams > 1;
    if beams {
        let sampling_flag = [
            (args.temperature != 0.0, "--temperature"),
            (args.top_k.is_some(), "--top-k"),
            (args.top_p.is_some(), "--top-p"),
        ];
        if let Some((_, flag)) = sampling_flag.iter().find(|(given, _)| *given) {
            bail!(
                "{flag} samples, but --num-beams {} searches deterministically: use one or the other",
                args.num_beams
            );
        }
        if args.repetition_penalty != 1.0 {
            bail!("--repetition-penalty is not supported with --num-beams > 1");
        }
        if !args.stop.is_empty() {
            bail!("--stop is not supported with --num-beams > 1 (beams end at the model's EOS or --max-new-tokens)");
        }
    } else if args.length_penalty.is_some() || args.early_stopping {
        let flag = if args.early_stopping { "--early-stopping" } else { "--length-penalty" };
        bail!("{flag} applies to beam search: add --num-beams K with K > 1");
    }
    if let Some(lp) = args.length_penalty
        && !lp.is_finite()
    {
        bail!("--length-penalty must be a finite number, got {lp}");
    }
    let sampling = Sampling::from_options(args.temperature, args.top_k, args.top_p)?;
    let load_start = std::time::Instant::now();
    let (source, model) = load(&args.model, device, dtype)?;
    let load_time = load_start.elapsed();
    if let Model::Encoder(_) | Model::Vision(_) | Model::DualEncoder(_) = &model {
        bail!("generate needs a causal language model or an encoder-decoder; `{}` is an encoder", args.model);
    }
    if let Model::VisionLanguage(_) = &model {
        bail!(
            "generate: `{}` is a vision-language model, which reads an image; run `tcat forward --pixel-values FILE \
             --ids ...` for its logits",
            args.model
        );
    }
    if args.chat && matches!(model, Model::Seq2seq(_)) {
        bail!("--chat: `{}` is an encoder-decoder; its prompt is the encoder input, give it as --prompt", args.model);
    }
    let tok = (source.tokenizer.is_some() || source.format == Format::Gguf).then(|| tokenizer(&source)).transpose()?;
    let prompts: Vec<Vec<u32>> = if !args.prompt_ids.is_empty() {
        args.prompt_ids.iter().map(|s| parse_ids("--prompt-ids", s)).collect::<Result<_>>()?
    } else {
        let tok = tok.as_ref().context("--prompt needs a tokenizer.json beside the model; use --prompt-ids")?;
        let prompts = if args.chat {
            let template = ChatTemplate::from_source(&source)?.context("--chat: the model ships no chat template")?;
            args.prompt
                .iter()
                .map(|p| {
                    let text = template.render(&[ChatMessage::user(p.as_str())], true)?;
                    // The template writes the special tokens itself.
                    let enc =
                        tok.encode(text.as_str(), false).map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
                    Ok(enc.get_ids().to_vec())
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            args.prompt.iter().map(|p| encode(tok, p)).collect::<Result<Vec<_>>>()?
        };
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            bail!("--prompt {:?} tokenizes to no tokens", args.prompt[i]);
        }
        prompts
    };
    let stop_sequences = match &tok {
        Some(tok) => args
            .stop
            .iter()
            .map(|s| {
                Ok(tok
                    .encode(s.as_str(), false)
                    .map_err(|e| anyhow::anyhow!("tokenizing --stop {s:?}: {e}"))?
                    .get_ids()
                    .to_vec())
            })
            .collect::<Result<Vec<_>>>()?,
        None if args.stop.is_empty() => vec![],
        None => bail!("--stop needs a tokenizer"),
    };
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
        seed: args.seed,
        stop_tokens: None,
        stop_sequences,
        repetition_penalty: args.repetition_penalty,
        no_repeat_ngram_size: args.no_repeat_ngram_size,
        ..Default::default()
    };
    let decode = |ids: &[u32]| -> Result<String> {
        let tok = tok.as_ref().expect("decode is only called with a tokenizer");
        tok.decode(ids, true).map_err(|e| anyhow::anyhow!("decoding: {e}"))
    };
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock, outputs: &[Vec<u32>]| -> Result<()> {
        for ids in outputs {
            if args.json {
                let mut line = serde_json::json!({"ids": ids});
                if tok.is_some() {
                    line["text"] = serde_json::Value::String(decode(ids)?);
                }
                writeln!(out, "{line}")?;
            } else if tok.is_some() {
                writeln!(out, "{}", decode(ids)?)?;
            } else {
                let list: Vec<String> = ids.iter().map(u32::to_string).collect();
                writeln!(out, "{}", list.join(","))?;
            }
        }
        Ok(())
    };
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    if beams {
        let started = std::time::Instant::now();
        let settings = BeamSettings {
            num_beams: args.num_beams,
            length_penalty: args.length_penalty.unwrap_or(1.0),
            early_stopping: if args.early_stopping { EarlyStopping::OnBeamsDone } else { EarlyStopping::Heuristic },
            no_repeat_ngram_size: args.no_repeat_ngram_size,
        };
        let outputs = match &model {
            Model::Decoder(decoder) => {
                let limits =
                    SearchLimits::new(args.max_new_tokens, decoder.eos_token_ids().to_vec(), decoder.pad_token_id());
                generate_beam(decoder, &prompts, &settings, &limits)?
            }
            Model::Seq2seq(m) => tcat_models::generation::generate_seq2seq_beam(m, &prompts, &config, &settings)?,
            Model::Encoder(_) | Model::Vision(_) | Model::DualEncoder(_) | Model::VisionLanguage(_) => {
                unreachable!("refused above")
            }
        };
        let total = started.elapsed();
        print(&mut out, &outputs)?;
        if args.stats {
            print_stats(load_time, prompt_tokens, None, total);
        }
        return Ok(());
    }
    let mut timing = TokenTiming::start(prompts.len());
    let decoder = match &model {
        Model::Decoder(decoder) => decoder,
        Model::Seq2seq(m) => {
            // The decoder sequence (from the decoder start token) is printed when done.
            let outputs = tcat_models::generate_seq2seq(m, &prompts, &config, |_, _| timing.token())?;
            let total = timing.start.elapsed();
            print(&mut out, &outputs)?;
            if args.stats {
                print_stats(load_time, prompt_tokens, Some(&timing), total);
            }
            return Ok(());
        }
        Model::Encoder(_) | Model::Vision(_) | Model::DualEncoder(_) | Model::VisionLanguage(_) => {
            unreachable!("refused above")
        }
    };
    let stream = !args.json && prompts.len() == 1 && tok.is_some();
    let mut shown = String::new();
    let mut so_far = prompts[0].clone();
    // A chat prompt is the template's text: stream only the reply. Another prompt is echoed
    // with the first generated token, so a refused generation prints nothing on stdout.
    let mut echoed = args.chat;
    if stream {
        shown = decode(&so_far)?;
    }
    let outputs = tcat_models::generate(decoder, &prompts, &config, |_, id| {
        timing.token();
        if !stream {
            return;
        }
        if !echoed {
            let _ = write!(out, "{shown}");
            echoed = true;
        }
        so_far.push(id);
        if let Ok(text) = decode(&so_far)
            && !text.ends_with('\u{FFFD}')
            && let Some(new) = text.strip_prefix(&shown)
        {
            let _ = write!(out, "{new}");
            let _ = out.flush();
            shown = text;
        }
    })?;
    let total = timing.start.elapsed();
    if stream {
        if !echoed {
            write!(out, "{shown}")?;
        }
        // Flush what was held back waiting for the rest of a multi-byte character.
        let text = decode(&so_far)?;
        writeln!(out, "{}", text.strip_prefix(&shown).unwrap_or(""))?;
    } else {
        print(&mut out, &outputs)?;
    }
    if args.stats {
        out.flush()?;
        print_stats(load_time, prompt_tokens, Some(&timing), total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer without special tokens or a post-processor: "" gives no ids.
    fn bare_tokenizer() -> Tokenizer {
        let json = r#"{
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "cat": 1, "mat": 2}, "unk_token": "[UNK]"}
        }"#;
        json.parse().unwrap()
    }

    #[test]
    fn a_text_without_tokens_is_named() {
        let tok = bare_tokenizer();
        let texts = ["cat mat".to_string()];
        assert_eq!(encode_texts(&tok, &texts).unwrap(), [vec![1, 2]]);
        let texts = ["cat".to_string(), String::new()];
        let err = encode_texts(&tok, &texts).unwrap_err().to_string();
        assert!(err.contains("text \"\" tokenizes to no tokens"), "{err}");
    }
}
