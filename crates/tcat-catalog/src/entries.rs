//! The catalog table: one [`Entry`] per model of `CATALOG.md`, in its order, with the papers
//! each cites and the spec function that describes it at a published size.

use tcat_spec::ModelKind::{Decoder, Encoder, Multimodal, Seq2seq, Vision};

use crate::specs::{beyond, decoders as dec, encoders as enc, multimodal as mm, seq2seq as s2s};
use crate::{Entry, Level, Paper};

const fn paper(title: &'static str, authors: &'static str, year: u16, arxiv: Option<&'static str>) -> Paper {
    Paper { title, authors, year, arxiv }
}

const BERT: Paper = paper(
    "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
    "Devlin et al.",
    2018,
    Some("1810.04805"),
);
const ROBERTA: Paper =
    paper("RoBERTa: A Robustly Optimized BERT Pretraining Approach", "Liu et al.", 2019, Some("1907.11692"));
const XLM: Paper = paper("Cross-lingual Language Model Pretraining", "Lample, Conneau", 2019, Some("1901.07291"));
const XLMR: Paper =
    paper("Unsupervised Cross-lingual Representation Learning at Scale", "Conneau et al.", 2019, Some("1911.02116"));
const ERNIE: Paper = paper(
    "ERNIE: Enhanced Language Representation with Informative Entities",
    "Zhang et al.",
    2019,
    Some("1905.07129"),
);
const ALBERT: Paper = paper(
    "ALBERT: A Lite BERT for Self-supervised Learning of Language Representations",
    "Lan et al.",
    2019,
    Some("1909.11942"),
);
const DISTILBERT: Paper = paper(
    "DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter",
    "Sanh et al.",
    2019,
    Some("1910.01108"),
);
const LABSE: Paper = paper("Language-agnostic BERT Sentence Embedding", "Feng et al.", 2020, Some("2007.01852"));
const ELECTRA: Paper = paper(
    "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators",
    "Clark et al.",
    2020,
    Some("2003.10555"),
);
const DEBERTA: Paper =
    paper("DeBERTa: Decoding-enhanced BERT with Disentangled Attention", "He et al.", 2020, Some("2006.03654"));
const DEBERTA_V3: Paper = paper(
    "DeBERTaV3: Improving DeBERTa using ELECTRA-Style Pre-Training with Gradient-Disentangled Embedding Sharing",
    "He et al.",
    2021,
    Some("2111.09543"),
);
const MINILM: Paper = paper(
    "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers",
    "Wang et al.",
    2020,
    Some("2002.10957"),
);
const SBERT: Paper = paper(
    "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    "Reimers, Gurevych",
    2019,
    Some("1908.10084"),
);
const VASWANI: Paper = paper("Attention Is All You Need", "Vaswani et al.", 2017, Some("1706.03762"));
const MARIAN: Paper =
    paper("Marian: Fast Neural Machine Translation in C++", "Junczys-Dowmunt et al.", 2018, Some("1804.00344"));
const GPT: Paper = paper("Improving Language Understanding by Generative Pre-Training", "Radford et al.", 2018, None);
const GPT2: Paper = paper("Language Models are Unsupervised Multitask Learners", "Radford et al.", 2019, None);
const TXL: Paper = paper(
    "Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context",
    "Dai et al.",
    2019,
    Some("1901.02860"),
);
const XLNET: Paper = paper(
    "XLNet: Generalized Autoregressive Pretraining for Language Understanding",
    "Yang et al.",
    2019,
    Some("1906.08237"),
);
const T5: Paper = paper(
    "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
    "Raffel et al.",
    2019,
    Some("1910.10683"),
);
const GLU: Paper = paper("GLU Variants Improve Transformer", "Shazeer", 2020, Some("2002.05202"));
const BART: Paper = paper(
    "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language Generation, Translation, and Comprehension",
    "Lewis et al.",
    2019,
    Some("1910.13461"),
);
const MBART: Paper =
    paper("Multilingual Denoising Pre-training for Neural Machine Translation", "Liu et al.", 2020, Some("2001.08210"));
const CTRL: Paper = paper(
    "CTRL: A Conditional Transformer Language Model for Controllable Generation",
    "Keskar et al.",
    2019,
    Some("1909.05858"),
);
const SPARSE: Paper =
    paper("Generating Long Sequences with Sparse Transformers", "Child et al.", 2019, Some("1904.10509"));
const GPT3: Paper = paper("Language Models are Few-Shot Learners", "Brown et al.", 2020, Some("2005.14165"));
const MT5: Paper =
    paper("mT5: A Massively Multilingual Pre-trained Text-to-Text Transformer", "Xue et al.", 2020, Some("2010.11934"));
const GPT_NEO: Paper =
    paper("GPT-Neo: Large Scale Autoregressive Language Modeling with Mesh-Tensorflow", "Black et al.", 2021, None);
const GPT_J: Paper =
    paper("GPT-J-6B: A 6 Billion Parameter Autoregressive Language Model", "Wang, Komatsuzaki", 2021, None);
const SWITCH: Paper = paper(
    "Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient Sparsity",
    "Fedus et al.",
    2021,
    Some("2101.03961"),
);
const GLAM: Paper =
    paper("GLaM: Efficient Scaling of Language Models with Mixture-of-Experts", "Du et al.", 2021, Some("2112.06905"));
const LAMDA: Paper =
    paper("LaMDA: Language Models for Dialog Applications", "Thoppilan et al.", 2022, Some("2201.08239"));
const NEOX: Paper =
    paper("GPT-NeoX-20B: An Open-Source Autoregressive Language Model", "Black et al.", 2022, Some("2204.06745"));
const PYTHIA: Paper = paper(
    "Pythia: A Suite for Analyzing Large Language Models Across Training and Scaling",
    "Biderman et al.",
    2023,
    Some("2304.01373"),
);
const DOLLY: Paper =
    paper("Free Dolly: Introducing the World's First Truly Open Instruction-Tuned LLM", "Conover et al.", 2023, None);
const BLOOM: Paper = paper(
    "BLOOM: A 176B-Parameter Open-Access Multilingual Language Model",
    "BigScience Workshop",
    2022,
    Some("2211.05100"),
);
const PALM: Paper =
    paper("PaLM: Scaling Language Modeling with Pathways", "Chowdhery et al.", 2022, Some("2204.02311"));
const MQA: Paper =
    paper("Fast Transformer Decoding: One Write-Head is All You Need", "Shazeer", 2019, Some("1911.02150"));
const OPT: Paper = paper("OPT: Open Pre-trained Transformer Language Models", "Zhang et al.", 2022, Some("2205.01068"));
const GOPHER: Paper = paper(
    "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
    "Rae et al.",
    2021,
    Some("2112.11446"),
);
const CHINCHILLA: Paper =
    paper("Training Compute-Optimal Large Language Models", "Hoffmann et al.", 2022, Some("2203.15556"));
const SANTACODER: Paper = paper("SantaCoder: don't reach for the stars!", "Allal et al.", 2023, Some("2301.03988"));
const STARCODER: Paper = paper("StarCoder: may the source be with you!", "Li et al.", 2023, Some("2305.06161"));
const LLAMA: Paper =
    paper("LLaMA: Open and Efficient Foundation Language Models", "Touvron et al.", 2023, Some("2302.13971"));
const ALPACA: Paper = paper("Alpaca: A Strong, Replicable Instruction-Following Model", "Taori et al.", 2023, None);
const KOALA: Paper = paper("Koala: A Dialogue Model for Academic Research", "Geng et al.", 2023, None);
const MIXTRAL: Paper = paper("Mixtral of Experts", "Jiang et al.", 2024, Some("2401.04088"));
const INSTRUCTGPT: Paper = paper(
    "Training language models to follow instructions with human feedback",
    "Ouyang et al.",
    2022,
    Some("2203.02155"),
);
const FLAN: Paper = paper("Scaling Instruction-Finetuned Language Models", "Chung et al.", 2022, Some("2210.11416"));
const SPARROW: Paper = paper(
    "Improving alignment of dialogue agents via targeted human judgements",
    "Glaese et al.",
    2022,
    Some("2209.14375"),
);
const GPT4: Paper = paper("GPT-4 Technical Report", "OpenAI", 2023, Some("2303.08774"));
const VIT: Paper = paper(
    "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
    "Dosovitskiy et al.",
    2020,
    Some("2010.11929"),
);
const CLIP: Paper = paper(
    "Learning Transferable Visual Models From Natural Language Supervision",
    "Radford et al.",
    2021,
    Some("2103.00020"),
);
const DALLE: Paper = paper("Zero-Shot Text-to-Image Generation", "Ramesh et al.", 2021, Some("2102.12092"));
const GLIDE: Paper = paper(
    "GLIDE: Towards Photorealistic Image Generation and Editing with Text-Guided Diffusion Models",
    "Nichol et al.",
    2021,
    Some("2112.10741"),
);
const LDM: Paper =
    paper("High-Resolution Image Synthesis with Latent Diffusion Models", "Rombach et al.", 2021, Some("2112.10752"));
const IMAGEN: Paper = paper(
    "Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding",
    "Saharia et al.",
    2022,
    Some("2205.11487"),
);
const COCA: Paper =
    paper("CoCa: Contrastive Captioners are Image-Text Foundation Models", "Yu et al.", 2022, Some("2205.01917"));
const PALME: Paper = paper("PaLM-E: An Embodied Multimodal Language Model", "Driess et al.", 2023, Some("2303.03378"));
const PALI: Paper =
    paper("PaLI: A Jointly-Scaled Multilingual Language-Image Model", "Chen et al.", 2022, Some("2209.06794"));

const QWEN2: Paper = paper("Qwen2 Technical Report", "Qwen Team (Yang et al.)", 2024, Some("2407.10671"));
const QWEN3: Paper = paper("Qwen3 Technical Report", "Qwen Team (Yang et al.)", 2025, Some("2505.09388"));
const OLMOE: Paper =
    paper("OLMoE: Open Mixture-of-Experts Language Models", "Muennighoff et al.", 2024, Some("2409.02060"));
const GEMMA2: Paper = paper(
    "Gemma 2: Improving Open Language Models at a Practical Size",
    "Gemma Team (Riviere et al.)",
    2024,
    Some("2408.00118"),
);
const GEMMA3: Paper = paper("Gemma 3 Technical Report", "Gemma Team (Kamath et al.)", 2025, Some("2503.19786"));
const PHI3: Paper = paper(
    "Phi-3 Technical Report: A Highly Capable Language Model Locally on Your Phone",
    "Abdin et al.",
    2024,
    Some("2404.14219"),
);
const MODERNBERT: Paper = paper(
    "Smarter, Better, Faster, Longer: A Modern Bidirectional Encoder for Fast, Memory Efficient, and Long Context \
     Finetuning and Inference",
    "Warner et al.",
    2024,
    Some("2412.13663"),
);
const LONGROPE: Paper =
    paper("LongRoPE: Extending LLM Context Window Beyond 2 Million Tokens", "Ding et al.", 2024, Some("2402.13753"));
const DEEPSEEK_V2: Paper = paper(
    "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts Language Model",
    "DeepSeek-AI",
    2024,
    Some("2405.04434"),
);
const DEEPSEEK_V3: Paper = paper("DeepSeek-V3 Technical Report", "DeepSeek-AI", 2024, Some("2412.19437"));
const NO_WEIGHTS: &str = "Architecture and sizes published; no public weights.";

pub(crate) static ENTRIES: &[Entry] = &[
    // Encoders (BERT-like).
    Entry {
        name: "bert",
        aliases: &["bert-base"],
        year: 2018,
        org: "Google",
        traits: "Post-LN bidirectional encoder; exact-GELU FFN of 4×; 512 learned positions; two segment \
                 embeddings; an embedding LayerNorm; WordPiece 30522; MLM and NSP heads; tanh pooler on [CLS]. \
                 Spec: BERT-base (12 layers, 768, 12 heads), checked against `bert-base-uncased`'s config.",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["bert"],
        papers: &[BERT],
        runs_as: None,
        published: "Weights (base, large; cased and uncased) on the Hugging Face Hub.",
        spec: Some(enc::bert_base),
        beyond_catalog: false,
    },
    Entry {
        name: "roberta",
        aliases: &[],
        year: 2019,
        org: "Facebook",
        traits: "BERT's architecture with one segment, LayerNorm ε 1e-5, position ids counted from \
                 padding_idx + 1 (a 514-row table), byte-level BPE 50265; MLM only (no NSP). Spec: \
                 RoBERTa-base.",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["roberta"],
        papers: &[ROBERTA],
        runs_as: None,
        published: "Weights (base, large) on the Hugging Face Hub.",
        spec: Some(enc::roberta_base),
        beyond_catalog: false,
    },
    Entry {
        name: "xlm",
        aliases: &[],
        year: 2019,
        org: "Facebook",
        traits: "BERT-like post-LN encoder with an embedding LayerNorm, learned (or sinusoidal) positions and \
                 language embeddings; MLM and TLM objectives; tied output layer with a bias. Spec: XLM-100 \
                 (16 layers, 1280, 200k BPE), whose 100-language models are trained without language \
                 embeddings (the English and XNLI-15 models have them).",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["xlm"],
        papers: &[XLM, XLMR],
        runs_as: None,
        published: "Weights (xlm-mlm-*, xlm-clm-*, xlm-mlm-tlm-*) on the Hugging Face Hub.",
        spec: Some(enc::xlm_100),
        beyond_catalog: false,
    },
    Entry {
        name: "xlm-roberta",
        aliases: &["xlm-r"],
        year: 2019,
        org: "Facebook",
        traits: "RoBERTa's architecture over a 250002-token SentencePiece vocabulary. Spec: XLM-R large \
                 (24 layers, 1024, 16 heads), the paper's 550M model.",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["xlm-roberta"],
        papers: &[XLMR],
        runs_as: None,
        published: "Weights (base, large) on the Hugging Face Hub.",
        spec: Some(enc::xlm_roberta_large),
        beyond_catalog: false,
    },
    Entry {
        name: "ernie-thu",
        aliases: &["ernie"],
        year: 2019,
        org: "Tsinghua, Huawei",
        traits: "A BERT text encoder (T-Encoder, N = 6 layers) followed by M = 6 K-Encoder fusion layers: \
                 multi-head attention over tokens and over entities (100-wide TransE vectors aligned to the \
                 first token of their mention, 4 heads), fused through one GELU layer into new token and \
                 entity states. Spec at the paper's size (§4.2, about 114M without the frozen entity table).",
        level: Level::Preset,
        kind: Encoder,
        model_types: &[],
        papers: &[ERNIE],
        runs_as: None,
        published: "Architecture and sizes published; weights in the authors' own format (not Hugging Face).",
        spec: Some(enc::ernie_thu),
        beyond_catalog: false,
    },
    Entry {
        name: "albert",
        aliases: &[],
        year: 2019,
        org: "Google",
        traits: "Factorised embeddings (E = 128 projected to the hidden width); all layers share one set of \
                 weights; gelu_new; sentence-order prediction head. Spec: ALBERT-base (12M).",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["albert"],
        papers: &[ALBERT],
        runs_as: None,
        published: "Weights (base, large, xlarge, xxlarge; v1 and v2) on the Hugging Face Hub.",
        spec: Some(enc::albert_base),
        beyond_catalog: false,
    },
    Entry {
        name: "distilbert",
        aliases: &[],
        year: 2019,
        org: "Hugging Face",
        traits: "BERT-base with every other layer removed (6 layers), no segment embeddings and no pooler; \
                 trained with MLM, a KL loss to the teacher's distribution and a cosine loss on hidden \
                 states.",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["distilbert"],
        papers: &[DISTILBERT],
        runs_as: None,
        published: "Weights on the Hugging Face Hub.",
        spec: Some(enc::distilbert),
        beyond_catalog: false,
    },
    Entry {
        name: "labse",
        aliases: &[],
        year: 2020,
        org: "Google",
        traits: "A BERT-base dual encoder (shared weights for both sides) over a 501,153-token vocabulary; the \
                 [CLS] state, pooled and L2-normalised, is the sentence embedding.",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["bert"],
        papers: &[LABSE],
        runs_as: Some("bert"),
        published: "Weights on the Hugging Face Hub (setu4993/LaBSE, sentence-transformers/LaBSE).",
        spec: Some(enc::labse),
        beyond_catalog: false,
    },
    Entry {
        name: "electra",
        aliases: &[],
        year: 2020,
        org: "Google, Stanford",
        traits: "A small BERT generator (MLM) and a BERT discriminator trained to detect replaced tokens; the \
                 embedding width may differ from the hidden width (a projection), and the generator shares \
                 the discriminator's embeddings. Spec: the ELECTRA-Base discriminator.",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["electra"],
        papers: &[ELECTRA],
        runs_as: None,
        published: "Weights (small, base, large; generators and discriminators) on the Hugging Face Hub.",
        spec: Some(enc::electra_base),
        beyond_catalog: false,
    },
    Entry {
        name: "deberta",
        aliases: &["deberta-v2", "deberta-v3"],
        year: 2020,
        org: "Microsoft",
        traits: "Disentangled attention: content-to-content plus content-to-position and position-to-content \
                 terms over shared relative position embeddings; an enhanced mask decoder adds absolute \
                 positions before the MLM head. v2: log-bucketed relative positions, keys shared with the \
                 content projections, an optional convolution after the first layer. Spec: DeBERTaV3-base \
                 (model_type deberta-v2, 256 buckets, shared keys).",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["deberta", "deberta-v2"],
        papers: &[DEBERTA, DEBERTA_V3],
        runs_as: None,
        published: "Weights (v1 base/large/xlarge, v2 xlarge/xxlarge, v3 xsmall to large) on the Hugging Face \
                    Hub.",
        spec: Some(enc::deberta_v3_base),
        beyond_catalog: false,
    },
    Entry {
        name: "minilm",
        aliases: &["sentence-transformers", "all-minilm-l6-v2"],
        year: 2020,
        org: "Microsoft",
        traits: "BERT's architecture, distilled from the teacher's last-layer self-attention distributions and \
                 value relations; sentence-transformers models mean-pool the final states and L2-normalise \
                 them. Spec: MiniLM L12-H384 (33M).",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["bert"],
        papers: &[MINILM, SBERT],
        runs_as: Some("bert"),
        published: "Weights on the Hugging Face Hub (microsoft/MiniLM-*, sentence-transformers/all-MiniLM-*); \
                    real weights are available offline for tests.",
        spec: Some(enc::minilm_l12_h384),
        beyond_catalog: false,
    },
    // Decoders and encoder-decoders.
    Entry {
        name: "transformer",
        aliases: &["transformer-original", "vanilla-transformer", "marian"],
        year: 2017,
        org: "Google",
        traits: "Encoder-decoder; post-LN; ReLU FFN; sinusoidal positions; word vectors scaled by √d; decoder \
                 cross-attention; one token table shared by both stacks and the output layer. Marian's OPUS \
                 models are public instances (base size). Spec: Transformer (big), 213M.",
        level: Level::Ckpt,
        kind: Seq2seq,
        model_types: &["marian"],
        papers: &[VASWANI, MARIAN],
        runs_as: None,
        published: "The paper's models are not released; Marian MT models (same architecture) are on the \
                    Hugging Face Hub.",
        spec: Some(s2s::transformer_big),
        beyond_catalog: false,
    },
    Entry {
        name: "gpt",
        aliases: &["gpt-1", "openai-gpt"],
        year: 2018,
        org: "OpenAI",
        traits: "Post-LN decoder (no final norm), 512 learned positions, GELU, BPE 40478, tied head.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["openai-gpt"],
        papers: &[GPT],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (openai-community/openai-gpt).",
        spec: Some(dec::gpt),
        beyond_catalog: false,
    },
    Entry {
        name: "gpt-2",
        aliases: &["gpt2"],
        year: 2019,
        org: "OpenAI",
        traits: "Pre-LN decoder with a final LayerNorm; gelu_new; 1024 learned positions; byte-level BPE \
                 50257; Conv1D (transposed) weights; tied LM head. Spec: GPT-2 small (124M).",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gpt2"],
        papers: &[GPT2],
        runs_as: None,
        published: "Weights (124M to 1.5B) on the Hugging Face Hub.",
        spec: Some(dec::gpt2_small),
        beyond_catalog: false,
    },
    Entry {
        name: "transformer-xl",
        aliases: &["transfo-xl"],
        year: 2019,
        org: "CMU",
        traits: "Segment-level recurrence (the previous segment's states cached without gradient), relative \
                 sinusoidal positions with global content and position biases u and v, post-LN. Spec: the \
                 24-layer enwik8 model (277M); the WikiText-103 model's adaptive embeddings and softmax are \
                 not expressible in a spec yet.",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[TXL],
        runs_as: None,
        published: "Weights existed as `transfo-xl-wt103`; Hugging Face transformers removed the model, so \
                    tcat builds it as a preset.",
        spec: Some(dec::transformer_xl_enwik8),
        beyond_catalog: false,
    },
    Entry {
        name: "xlnet",
        aliases: &[],
        year: 2019,
        org: "CMU, Google",
        traits: "Transformer-XL backbone (relative sinusoids, memory); two-stream self-attention (content and \
                 query streams sharing weights); permutation language modelling; relative segment encodings. \
                 Spec: XLNet-large (24 layers, 1024).",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["xlnet"],
        papers: &[XLNET],
        runs_as: None,
        published: "Weights (base, large) on the Hugging Face Hub.",
        spec: Some(enc::xlnet_large),
        beyond_catalog: false,
    },
    Entry {
        name: "t5",
        aliases: &["t5-v1.1"],
        year: 2019,
        org: "Google",
        traits: "Encoder-decoder; pre-norm RMS LayerNorm (no bias, no mean); bucketed relative position bias \
                 computed once per stack and shared by its layers; no 1/√d score scaling; bias-free \
                 projections; ReLU (v1.0) or gated-GELU (v1.1, untied head) FFN. Spec: T5-base (v1.0).",
        level: Level::Ckpt,
        kind: Seq2seq,
        model_types: &["t5"],
        papers: &[T5, GLU],
        runs_as: None,
        published: "Weights (small to 11B, v1.0 and v1.1) on the Hugging Face Hub.",
        spec: Some(s2s::t5_base),
        beyond_catalog: false,
    },
    Entry {
        name: "bart",
        aliases: &[],
        year: 2019,
        org: "Facebook",
        traits: "Encoder-decoder; post-LN; GELU; learned positions offset by 2; a LayerNorm on the embeddings; \
                 tied head with final_logits_bias. Spec: BART-base (140M).",
        level: Level::Ckpt,
        kind: Seq2seq,
        model_types: &["bart"],
        papers: &[BART],
        runs_as: None,
        published: "Weights (base, large) on the Hugging Face Hub.",
        spec: Some(s2s::bart_base),
        beyond_catalog: false,
    },
    Entry {
        name: "mbart",
        aliases: &["mbart-50"],
        year: 2020,
        org: "Facebook",
        traits: "BART with pre-LN layers and a final norm on each stack, word vectors scaled by √d, a 250k \
                 SentencePiece vocabulary and language-id tokens. Spec: mBART-large-cc25 (610M).",
        level: Level::Ckpt,
        kind: Seq2seq,
        model_types: &["mbart"],
        papers: &[MBART],
        runs_as: None,
        published: "Weights (cc25, 50-language) on the Hugging Face Hub.",
        spec: Some(s2s::mbart_large_cc25),
        beyond_catalog: false,
    },
    Entry {
        name: "ctrl",
        aliases: &[],
        year: 2019,
        org: "Salesforce",
        traits: "Pre-LN decoder; half-split sinusoidal positions; word vectors scaled by √d; ReLU FFN; \
                 control-code prefix tokens; BPE 246534; head tied with its own bias. Spec: CTRL 1.63B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["ctrl"],
        papers: &[CTRL],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (Salesforce/ctrl).",
        spec: Some(dec::ctrl),
        beyond_catalog: false,
    },
    Entry {
        name: "sparse-transformer",
        aliases: &[],
        year: 2019,
        org: "OpenAI",
        traits: "Factorised sparse attention: strided (a local band of l and every l-th position) and fixed \
                 (positions in the same block of l and the last c of each block) patterns; pre-activation \
                 residual blocks; factorised (row and column) position embeddings. Spec: the 30-layer fixed \
                 enwik8 model (95M, stride 128, c = 32).",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[SPARSE],
        runs_as: None,
        published: "Architecture and sizes published; attention kernels released; no model weights.",
        spec: Some(dec::sparse_transformer_enwik8),
        beyond_catalog: false,
    },
    Entry {
        name: "gpt-3",
        aliases: &["gpt3", "davinci"],
        year: 2020,
        org: "OpenAI",
        traits: "GPT-2's architecture (pre-LN, learned positions, tied head) with alternating dense and locally \
                 banded sparse attention layers, 2048 context. The band width is not published: the spec reads \
                 the schedule as [Dense, Local { window: 256 }]. Spec: GPT-3 175B.",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[GPT3],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(dec::gpt3_175b),
        beyond_catalog: false,
    },
    Entry {
        name: "mt5",
        aliases: &[],
        year: 2020,
        org: "Google",
        traits: "T5 v1.1 (gated-GELU FFN, untied head, no dropout in pre-training) over a 250112-token \
                 SentencePiece vocabulary. Spec: mT5-base (580M).",
        level: Level::Ckpt,
        kind: Seq2seq,
        model_types: &["mt5"],
        papers: &[MT5],
        runs_as: None,
        published: "Weights (small to xxl) on the Hugging Face Hub.",
        spec: Some(s2s::mt5_base),
        beyond_catalog: false,
    },
    Entry {
        name: "gpt-neo",
        aliases: &[],
        year: 2021,
        org: "EleutherAI",
        traits: "GPT-2-like decoder alternating global and local (window 256) attention layers; bias-free q/k/v \
                 and unscaled attention scores (checked in transformers' gpt_neo). Spec: GPT-Neo 1.3B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gpt_neo"],
        papers: &[GPT_NEO],
        runs_as: None,
        published: "Weights (125M, 1.3B, 2.7B) on the Hugging Face Hub.",
        spec: Some(dec::gpt_neo_1_3b),
        beyond_catalog: false,
    },
    Entry {
        name: "gpt-j",
        aliases: &["gptj", "gpt-j-6b"],
        year: 2021,
        org: "EleutherAI",
        traits: "Attention and FFN in parallel from one LayerNorm; rotary on the first 64 of each head's 256 \
                 features, interleaved pairs; bias-free attention; untied head with a bias. Spec: GPT-J 6B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gptj"],
        papers: &[GPT_J],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (EleutherAI/gpt-j-6b).",
        spec: Some(dec::gptj_6b),
        beyond_catalog: false,
    },
    Entry {
        name: "switch-transformer",
        aliases: &["switch", "switch-transformers"],
        year: 2021,
        org: "Google",
        traits: "T5 with a sparse mixture-of-experts FFN in every other layer; top-1 routing with a capacity \
                 factor (overflowing tokens pass through); load-balancing loss; router z-loss; router in \
                 float32. Spec: Switch-Base-8.",
        level: Level::Ckpt,
        kind: Seq2seq,
        model_types: &["switch_transformers"],
        papers: &[SWITCH],
        runs_as: None,
        published: "Weights (base-8 to base-256, large-128, c-2048) on the Hugging Face Hub.",
        spec: Some(s2s::switch_base_8),
        beyond_catalog: false,
    },
    Entry {
        name: "glam",
        aliases: &[],
        year: 2021,
        org: "Google",
        traits: "Decoder with a mixture of 64 experts (top-2 gating) in every other layer; gated-GELU FFN in \
                 the dense layers; per-layer relative positions after Transformer-XL. Spec: GLaM (64B/64E), \
                 1.2T total, 96.6B active.",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[GLAM],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(dec::glam_64b_64e),
        beyond_catalog: false,
    },
    Entry {
        name: "lamda",
        aliases: &[],
        year: 2021,
        org: "Google",
        traits: "Decoder with T5-style relative attention bias and gated-GELU FFN; 128 heads of 128 on an \
                 8192-wide model. Spec: LaMDA 137B (norm kind, biases and head tying assumed T5-like).",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[LAMDA],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(dec::lamda_137b),
        beyond_catalog: false,
    },
    Entry {
        name: "gpt-neox",
        aliases: &["gpt-neox-20b", "neox"],
        year: 2022,
        org: "EleutherAI",
        traits: "Parallel residual (attention and FFN from separate norms, added together); rotary on 25 % of \
                 each head, half-split (neox style); untied head. Spec: GPT-NeoX-20B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gpt_neox"],
        papers: &[NEOX],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (EleutherAI/gpt-neox-20b).",
        spec: Some(dec::gpt_neox_20b),
        beyond_catalog: false,
    },
    Entry {
        name: "pythia",
        aliases: &[],
        year: 2023,
        org: "EleutherAI",
        traits: "A suite of GPT-NeoX models (70M to 12B) trained on the same data in the same order, with \
                 intermediate checkpoints. Spec: Pythia-12B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gpt_neox"],
        papers: &[PYTHIA],
        runs_as: Some("gpt-neox"),
        published: "Weights (all sizes, 154 checkpoints each) on the Hugging Face Hub.",
        spec: Some(dec::pythia_12b),
        beyond_catalog: false,
    },
    Entry {
        name: "dolly-2",
        aliases: &["dolly", "dolly-v2"],
        year: 2023,
        org: "Databricks",
        traits: "Pythia (3B, 7B, 12B) fine-tuned on 15k human-written instruction/response pairs; nothing \
                 new in the architecture. Spec: the 12B model's base, Pythia-12B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gpt_neox"],
        papers: &[DOLLY, PYTHIA],
        runs_as: Some("gpt-neox"),
        published: "Weights on the Hugging Face Hub (databricks/dolly-v2-*).",
        spec: Some(dec::pythia_12b),
        beyond_catalog: false,
    },
    Entry {
        name: "bloom",
        aliases: &[],
        year: 2022,
        org: "BigScience",
        traits: "ALiBi (no position embeddings); a LayerNorm on the embeddings; tanh-GELU FFN; 250880-token \
                 vocabulary; tied head. Spec: BLOOM 176B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["bloom"],
        papers: &[BLOOM],
        runs_as: None,
        published: "Weights (560M to 176B) on the Hugging Face Hub.",
        spec: Some(dec::bloom_176b),
        beyond_catalog: false,
    },
    Entry {
        name: "palm",
        aliases: &[],
        year: 2022,
        org: "Google",
        traits: "SwiGLU FFN of 4·d; attention and FFN in parallel from one norm; multi-query attention (heads \
                 of 256); RoPE; no biases in dense layers or norms; input and output embeddings shared; \
                 SentencePiece 256k. Spec: PaLM 540B.",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[PALM, MQA],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(dec::palm_540b),
        beyond_catalog: false,
    },
    Entry {
        name: "opt",
        aliases: &[],
        year: 2022,
        org: "Meta",
        traits: "Pre-LN decoder, ReLU FFN, learned positions offset by 2, tied head (350m projects its 512-wide \
                 word vectors to 1024 and back, and is post-LN). Spec: OPT-175B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["opt"],
        papers: &[OPT],
        runs_as: None,
        published: "Weights (125M to 66B) on the Hugging Face Hub; 175B on request.",
        spec: Some(dec::opt_175b),
        beyond_catalog: false,
    },
    Entry {
        name: "gopher",
        aliases: &[],
        year: 2021,
        org: "DeepMind",
        traits: "RMSNorm decoder with Transformer-XL relative positions, SentencePiece 32k, 2048 context. \
                 Spec: Gopher 280B (FFN 4·d, bias-free, tied head: unpublished choices).",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[GOPHER],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(dec::gopher_280b),
        beyond_catalog: false,
    },
    Entry {
        name: "chinchilla",
        aliases: &[],
        year: 2022,
        org: "DeepMind",
        traits: "Gopher's architecture, compute-optimally sized (smaller and trained on 4× the tokens). Spec: \
                 Chinchilla 70B.",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[CHINCHILLA],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(dec::chinchilla_70b),
        beyond_catalog: false,
    },
    Entry {
        name: "santacoder",
        aliases: &[],
        year: 2022,
        org: "BigCode",
        traits: "GPT-2 with multi-query attention (one key/value head); fill-in-the-middle training. Spec: \
                 SantaCoder 1.1B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gpt_bigcode"],
        papers: &[SANTACODER, MQA],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (bigcode/gpt_bigcode-santacoder).",
        spec: Some(dec::santacoder),
        beyond_catalog: false,
    },
    Entry {
        name: "starcoder",
        aliases: &["starcoderbase"],
        year: 2023,
        org: "BigCode",
        traits: "SantaCoder's layout (GPT-2 with multi-query attention) at 15.5B, 8192 context. Spec: \
                 StarCoder 15.5B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gpt_bigcode"],
        papers: &[STARCODER],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (bigcode/starcoder, gated).",
        spec: Some(dec::starcoder),
        beyond_catalog: false,
    },
    Entry {
        name: "llama",
        aliases: &["llama-1", "llama-2", "llama-3"],
        year: 2023,
        org: "Meta",
        traits: "Pre-RMSNorm; SwiGLU FFN; RoPE (half-split); no biases; untied head; later versions add \
                 grouped-query attention and scaled RoPE. Spec: LLaMA-7B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["llama", "mistral"],
        papers: &[LLAMA],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (LLaMA 1 on request; Llama 2 and 3 gated).",
        spec: Some(dec::llama_7b),
        beyond_catalog: false,
    },
    Entry {
        name: "alpaca",
        aliases: &[],
        year: 2023,
        org: "Stanford",
        traits: "LLaMA-7B fine-tuned on 52k instruction-following demonstrations; nothing new in the \
                 architecture.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["llama"],
        papers: &[ALPACA, LLAMA],
        runs_as: Some("llama"),
        published: "Released as a weight diff against LLaMA-7B; data and recipe public.",
        spec: Some(dec::llama_7b),
        beyond_catalog: false,
    },
    Entry {
        name: "koala",
        aliases: &[],
        year: 2023,
        org: "Berkeley",
        traits: "LLaMA-13B fine-tuned on dialogue data gathered from the web; nothing new in the architecture.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["llama"],
        papers: &[KOALA, LLAMA],
        runs_as: Some("llama"),
        published: "Released as a weight diff against LLaMA-13B.",
        spec: Some(dec::llama_13b),
        beyond_catalog: false,
    },
    Entry {
        name: "mixtral",
        aliases: &["mixtral-8x7b"],
        year: 2023,
        org: "Mistral",
        traits: "LLaMA-style decoder (grouped-query attention, 8 KV heads) with a top-2-of-8 SwiGLU mixture of \
                 experts in every layer. The catalog lists sliding-window attention (Mistral 7B's, 4096); \
                 Mixtral's paper and released config (`sliding_window: null`) attend densely over 32k, so the \
                 spec's schedule is dense. Spec: Mixtral 8x7B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["mixtral"],
        papers: &[MIXTRAL],
        runs_as: None,
        published: "Weights (8x7B, 8x22B) on the Hugging Face Hub.",
        spec: Some(dec::mixtral_8x7b),
        beyond_catalog: false,
    },
    // Instruction-tuned, RLHF and closed models.
    Entry {
        name: "instructgpt",
        aliases: &["chatgpt", "gpt-3.5", "gpt-3.5-turbo"],
        year: 2022,
        org: "OpenAI",
        traits: "GPT-3 fine-tuned on demonstrations (SFT), a reward model (a 6B GPT-3 decoder with a scalar \
                 head on the last token) trained on human rankings, then PPO against it with a KL penalty to \
                 the SFT model. ChatGPT / GPT-3.5 is described by OpenAI as a sibling trained the same way on \
                 dialogue. tcat runs it as GPT-3 plus a scalar reward/value head (HeadSpec::Reward) on any \
                 decoder.",
        level: Level::Doc,
        kind: Decoder,
        model_types: &[],
        papers: &[INSTRUCTGPT],
        runs_as: Some("gpt-3"),
        published: "Method, data sizes and model sizes (1.3B, 6B, 175B) published; no weights; ChatGPT's and \
                    GPT-3.5's sizes and details are not published.",
        spec: None,
        beyond_catalog: false,
    },
    Entry {
        name: "flan-t5",
        aliases: &[],
        year: 2022,
        org: "Google",
        traits: "T5 v1.1 (gated-GELU, untied head) instruction-tuned on the Flan collection (1.8k tasks). Spec: \
                 Flan-T5-base.",
        level: Level::Ckpt,
        kind: Seq2seq,
        model_types: &["t5"],
        papers: &[FLAN],
        runs_as: Some("t5"),
        published: "Weights (small to xxl) on the Hugging Face Hub.",
        spec: Some(s2s::flan_t5_base),
        beyond_catalog: false,
    },
    Entry {
        name: "sparrow",
        aliases: &[],
        year: 2022,
        org: "DeepMind",
        traits: "Dialogue-prompted Chinchilla 70B trained with RLHF against rule and preference reward models \
                 (Chinchilla with a scalar head), with evidence retrieved from Google Search.",
        level: Level::Doc,
        kind: Decoder,
        model_types: &[],
        papers: &[SPARROW],
        runs_as: Some("chinchilla"),
        published: "Method and rules published; no weights.",
        spec: None,
        beyond_catalog: false,
    },
    Entry {
        name: "gpt-4",
        aliases: &["gpt4"],
        year: 2023,
        org: "OpenAI",
        traits: "A Transformer-style model pre-trained to predict the next token, accepting image and text \
                 inputs, then fine-tuned with RLHF (technical report, §2).",
        level: Level::Doc,
        kind: Multimodal,
        model_types: &[],
        papers: &[GPT4],
        runs_as: None,
        published: "Published: capabilities, evaluations, the training approach in one sentence, and \
                    predictable-scaling results. Not published: architecture, model size, hardware, training \
                    compute, dataset construction, training method details (the report declines them, §2).",
        spec: None,
        beyond_catalog: false,
    },
    // Multimodal.
    Entry {
        name: "vit",
        aliases: &["vision-transformer"],
        year: 2020,
        org: "Google",
        traits: "Patch embedding (a 16×16 convolution with stride 16), a [CLS] token, learned positions, \
                 pre-LN encoder with a final norm, classification head on [CLS]. Spec: ViT-B/16.",
        level: Level::Ckpt,
        kind: Vision,
        model_types: &["vit"],
        papers: &[VIT],
        runs_as: None,
        published: "Weights on the Hugging Face Hub (google/vit-*).",
        spec: Some(mm::vit_b16),
        beyond_catalog: false,
    },
    Entry {
        name: "clip",
        aliases: &[],
        year: 2021,
        org: "OpenAI",
        traits: "A causal text Transformer (embedding at the [EOS] token) and a ViT (with an extra LayerNorm \
                 before the layers), both with quick_gelu, linearly projected into a joint space and trained \
                 contrastively with a learned temperature. Spec: CLIP ViT-B/32.",
        level: Level::Ckpt,
        kind: Multimodal,
        model_types: &["clip"],
        papers: &[CLIP],
        runs_as: None,
        published: "Weights (ViT-B/32, B/16, L/14) on the Hugging Face Hub.",
        spec: Some(mm::clip_b32),
        beyond_catalog: false,
    },
    Entry {
        name: "dall-e",
        aliases: &["dalle"],
        year: 2021,
        org: "OpenAI",
        traits: "A sparse-Transformer decoder over 256 text tokens then 32×32 image tokens, with row, column and \
                 (in the last layer) convolutional attention masks over the image; image positions embedded \
                 by row and column. Spec: DALL-E 12B with the paper's per-layer schedule.",
        level: Level::Preset,
        kind: Decoder,
        model_types: &[],
        papers: &[DALLE, SPARSE],
        runs_as: None,
        published: "Architecture and sizes published; the dVAE is released, the Transformer is not.",
        spec: Some(dec::dalle_12b),
        beyond_catalog: false,
    },
    Entry {
        name: "glide",
        aliases: &[],
        year: 2021,
        org: "OpenAI",
        traits: "A Transformer text encoder whose final token embedding and per-token states condition a \
                 diffusion U-Net (class embedding and cross-attention in every attention layer). Spec: the \
                 1.2B text encoder only; the U-Net is out of scope.",
        level: Level::Preset,
        kind: Encoder,
        model_types: &[],
        papers: &[GLIDE],
        runs_as: None,
        published: "Architecture published; only a small filtered model (300M) is released.",
        spec: Some(s2s::glide_text_encoder),
        beyond_catalog: false,
    },
    Entry {
        name: "latent-diffusion",
        aliases: &["ldm", "stable-diffusion"],
        year: 2021,
        org: "LMU Munich, Heidelberg, Runway",
        traits: "A text encoder (a 32-layer Transformer for the 1.45B LAION model; CLIP's text tower in Stable \
                 Diffusion) feeding a U-Net in a VAE's latent space through cross-attention. Spec: the \
                 paper's text encoder only; the U-Net is out of scope.",
        level: Level::Preset,
        kind: Encoder,
        model_types: &[],
        papers: &[LDM],
        runs_as: None,
        published: "Weights and code published (CompVis); no Hugging Face transformers model_type for the text \
                    encoder.",
        spec: Some(s2s::ldm_text_encoder),
        beyond_catalog: false,
    },
    Entry {
        name: "imagen",
        aliases: &[],
        year: 2022,
        org: "Google",
        traits: "A frozen T5-XXL encoder whose states condition cascaded diffusion U-Nets through \
                 cross-attention (and pooled, through the timestep embedding). Spec: the T5-XXL encoder; the \
                 U-Nets are out of scope.",
        level: Level::Preset,
        kind: Encoder,
        model_types: &[],
        papers: &[IMAGEN, T5],
        runs_as: None,
        published: "Architecture published; no weights for the diffusion models (the T5-XXL encoder is public).",
        spec: Some(s2s::imagen_text_encoder),
        beyond_catalog: false,
    },
    Entry {
        name: "coca",
        aliases: &[],
        year: 2022,
        org: "Google",
        traits: "A ViT image encoder; attentional pooling (learned queries cross-attending to the image tokens: \
                 1 for the contrastive embedding, 256 for captioning); a text decoder whose first half is \
                 unimodal (no cross-attention) and second half multimodal (cross-attention to the pooled image \
                 tokens). Spec: CoCa-Base (383M).",
        level: Level::Preset,
        kind: Multimodal,
        model_types: &[],
        papers: &[COCA],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(mm::coca_base),
        beyond_catalog: false,
    },
    Entry {
        name: "palm-e",
        aliases: &[],
        year: 2023,
        org: "Google",
        traits: "ViT image tokens (and other continuous observations) projected into a PaLM decoder's input \
                 sequence as prefix embeddings ('multimodal sentences'). Spec: PaLM-E-12B (ViT-4B + PaLM-8B); \
                 the 562B model's ViT-22B needs query/key normalisation, which a spec cannot say yet.",
        level: Level::Preset,
        kind: Multimodal,
        model_types: &[],
        papers: &[PALME, PALM, PALI],
        runs_as: None,
        published: NO_WEIGHTS,
        spec: Some(mm::palm_e_12b),
        beyond_catalog: false,
    },
    // Beyond the catalog: checkpoint families tcat loads that CATALOG.md does not list.
    Entry {
        name: "qwen2",
        aliases: &["qwen2-7b", "qwen1-5-moe", "qwen2-moe"],
        year: 2024,
        org: "Alibaba (Qwen)",
        traits: "LLaMA-style decoder with biases on the query, key and value projections, grouped-query \
                 attention and sliding windows in the layers its config names; Qwen1.5-MoE / Qwen2-MoE add \
                 routed experts and a sigmoid-gated shared expert. Spec: Qwen2-7B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["qwen2", "qwen2_moe"],
        papers: &[QWEN2],
        runs_as: None,
        published: "Weights (0.5B to 72B, 57B-A14B MoE) on the Hugging Face Hub.",
        spec: Some(beyond::qwen2_7b),
        beyond_catalog: true,
    },
    Entry {
        name: "qwen3",
        aliases: &["qwen3-8b", "qwen3-moe"],
        year: 2025,
        org: "Alibaba (Qwen)",
        traits: "Qwen2 without the q/k/v biases, each head's queries and keys RMS-normalised before rotary, \
                 head width set by head_dim; Qwen3-MoE routes to the top 8 of 128 experts. Spec: Qwen3-8B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["qwen3", "qwen3_moe"],
        papers: &[QWEN3],
        runs_as: None,
        published: "Weights (0.6B to 235B-A22B) on the Hugging Face Hub.",
        spec: Some(beyond::qwen3_8b),
        beyond_catalog: true,
    },
    Entry {
        name: "olmoe",
        aliases: &["olmoe-1b-7b"],
        year: 2024,
        org: "Allen AI",
        traits: "Fully open mixture of experts: 64 SwiGLU experts per layer, top-8 routing without \
                 renormalisation, queries and keys RMS-normalised over their whole projections. Spec: \
                 OLMoE-1B-7B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["olmoe"],
        papers: &[OLMOE],
        runs_as: None,
        published: "Weights, data and code on the Hugging Face Hub.",
        spec: Some(beyond::olmoe_1b_7b),
        beyond_catalog: true,
    },
    Entry {
        name: "gemma-2",
        aliases: &["gemma2", "gemma-2-2b"],
        year: 2024,
        org: "Google DeepMind",
        traits: "Sandwich RMSNorms (1 + w gains, in f32) around attention and feed-forward, GeGLU, embeddings \
                 scaled by sqrt(hidden), scores scaled by query_pre_attn_scalar^-1/2 and soft-capped \
                 (cap * tanh(s / cap), 50), logits soft-capped (30), local (4096) and global layers \
                 alternating, tied head. Spec: Gemma 2 2B.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gemma2"],
        papers: &[GEMMA2],
        runs_as: None,
        published: "Weights (2B, 9B, 27B) on the Hugging Face Hub and Kaggle.",
        spec: Some(beyond::gemma2_2b),
        beyond_catalog: true,
    },
    Entry {
        name: "gemma-3",
        aliases: &["gemma3", "gemma-3-1b", "gemma3-text"],
        year: 2025,
        org: "Google DeepMind",
        traits: "Gemma 2's blocks with per-head query/key norms instead of soft-capping, five local layers \
                 (window 512 in 1B, 1024 above; RoPE base 10k) per global one (RoPE base 1M, linearly scaled \
                 by 8 from 4B up). tcat runs the text decoder (Gemma3ForCausalLM); the 4B-27B models' SigLIP \
                 image encoder is not built. Spec: Gemma 3 1B (text only).",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["gemma3_text"],
        papers: &[GEMMA3],
        runs_as: None,
        published: "Weights (270M, 1B, 4B, 12B, 27B) on the Hugging Face Hub and Kaggle.",
        spec: Some(beyond::gemma3_1b),
        beyond_catalog: true,
    },
    Entry {
        name: "phi-3",
        aliases: &["phi3", "phi-3-mini", "phi-3.5-mini", "phi-4"],
        year: 2024,
        org: "Microsoft",
        traits: "LLaMA layers with one fused qkv_proj and one fused gate_up_proj, no biases, a sliding window \
                 (2047 in Phi-3-mini-4k); the 128k models extend RoPE with LongRoPE (per-frequency short and \
                 long factors switched at the pretraining length, cos/sin scaled by sqrt(1 + ln s / ln L); \
                 decoding re-runs the sequence at the switch, as transformers does). Spec: Phi-3-mini-4k.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["phi3"],
        papers: &[PHI3, LONGROPE],
        runs_as: None,
        published: "Weights (Phi-3 mini / small / medium, Phi-3.5-mini, Phi-4) on the Hugging Face Hub.",
        spec: Some(beyond::phi3_mini),
        beyond_catalog: true,
    },
    Entry {
        name: "deepseek-v2",
        aliases: &["deepseek-v2-lite"],
        year: 2024,
        org: "DeepSeek-AI",
        traits: "Multi-head latent attention (keys and values from one low-rank latent per token, a decoupled \
                 interleaved rotary part; the cache holds only the latent and the rotary key), DeepSeekMoE \
                 (fine-grained routed experts plus always-on shared experts, dense first layers, greedy or \
                 group-limited routing), YaRN to 128k. Spec: DeepSeek-V2-Lite.",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["deepseek_v2"],
        papers: &[DEEPSEEK_V2],
        runs_as: None,
        published: "Weights (V2, V2-Lite, Chat) on the Hugging Face Hub.",
        spec: Some(beyond::deepseek_v2_lite),
        beyond_catalog: true,
    },
    Entry {
        name: "deepseek-v3",
        aliases: &["deepseek-r1"],
        year: 2024,
        org: "DeepSeek-AI",
        traits: "DeepSeek-V2's latent attention and DeepSeekMoE with auxiliary-loss-free balancing (sigmoid \
                 scores plus a per-expert bias used only to choose, groups ranked by their two best, gates \
                 renormalised and scaled by 2.5); its multi-token-prediction module is not run (as \
                 transformers). Spec: DeepSeek-V3 (671B).",
        level: Level::Ckpt,
        kind: Decoder,
        model_types: &["deepseek_v3"],
        papers: &[DEEPSEEK_V3],
        runs_as: None,
        published: "Weights (V3, R1) on the Hugging Face Hub.",
        spec: Some(beyond::deepseek_v3),
        beyond_catalog: true,
    },
    Entry {
        name: "modernbert",
        aliases: &["modernbert-base"],
        year: 2024,
        org: "Answer.AI, LightOn",
        traits: "Pre-norm encoder with LayerNorms and linear layers without biases, a norm after the token \
                 embeddings (none on the first layer's attention), rotary positions, GeGLU, a final norm; \
                 every third layer attends globally (RoPE base 160,000), the others within a symmetric \
                 128-token window (±64, base 10,000); masked-LM head tied to the token table with a bias. \
                 Spec: ModernBERT-base (149M).",
        level: Level::Ckpt,
        kind: Encoder,
        model_types: &["modernbert"],
        papers: &[MODERNBERT],
        runs_as: None,
        published: "Weights (base, large) on the Hugging Face Hub.",
        spec: Some(beyond::modernbert_base),
        beyond_catalog: true,
    },
];
