//! The Transformer catalog as data.
//!
//! Every row of the catalog (`CATALOG.md`: encoders, decoders and encoder-decoders,
//! instruction-tuned and closed models, multimodal models) is an [`Entry`]: its name and
//! aliases, year and organisation, the architecture traits that set it apart, the level tcat
//! reaches for it ([`Level`]: a checkpoint family, a preset built from blocks, or a documented
//! fine-tune or closed model), its papers, and — for every checkpoint and preset — its
//! architecture at a published size as a [`tcat_spec::ArchSpec`], whose
//! [`param_count`](tcat_spec::ArchSpec::param_count) the tests hold to the papers' numbers
//! ([`expected_params`]). [`tiny`] shrinks any spec to a model of a few hundred kilobytes
//! that keeps every architectural choice, for tests and demos.
//!
//! Rows naming several models are split where the models differ in shape and merged where one
//! is a fine-tune or a rename of another:
//! - "BART / mBART", "Gopher, Chinchilla", "SantaCoder / StarCoder" are two entries each;
//! - "GPT-NeoX-20B, Pythia, Dolly-2" is `gpt-neox` (20B), `pythia` (12B) and `dolly-2` (a
//!   Pythia-12B fine-tune), the last two running as `gpt-neox`;
//! - "LLaMA, Alpaca, Koala" is `llama` (7B), `alpaca` (LLaMA-7B fine-tune) and `koala`
//!   (LLaMA-13B fine-tune), the last two running as `llama`;
//! - "GLIDE, Latent Diffusion, Imagen" is three presets, each its text encoder only;
//! - "InstructGPT, ChatGPT / GPT-3.5" is one documented entry, `instructgpt`, with the others as
//!   aliases; "MiniLM / sentence-transformers" is `minilm` with the alias;
//! - "Transformer (original)" is `transformer`, with `transformer-original` and `marian` as
//!   aliases.
//!
//! ```
//! let gpt3 = tcat_catalog::find("GPT-3").unwrap();
//! assert_eq!(gpt3.level, tcat_catalog::Level::Preset);
//! let spec = (gpt3.spec.unwrap())();
//! assert!(spec.param_count().total > 170_000_000_000);
//! let small = tcat_catalog::tiny(&spec);
//! assert!(small.param_count().total < 150_000);
//! ```

#![deny(missing_docs)]

mod entries;
mod published;
mod specs;
mod tiny;

pub use published::{Published, expected_params};
pub use tiny::tiny;

use serde::Serialize;

/// What tcat reaches for a row (the catalog's "level" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Public weights exist: tcat loads Hugging Face checkpoints and matches the reference.
    Ckpt,
    /// No public weights: a named preset built from blocks at any size.
    Preset,
    /// Nothing to build beyond another row (fine-tunes, closed models).
    Doc,
}

impl Level {
    /// The lowercase name used in the catalog and in JSON.
    ///
    /// ```
    /// assert_eq!(tcat_catalog::Level::Preset.name(), "preset");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Level::Ckpt => "ckpt",
            Level::Preset => "preset",
            Level::Doc => "doc",
        }
    }
}

/// A paper (or, for models without one, the release) that describes a model.
///
/// ```
/// let bert = tcat_catalog::find("bert").unwrap();
/// assert_eq!(bert.papers[0].arxiv, Some("1810.04805"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Paper {
    /// Title.
    pub title: &'static str,
    /// Authors ("First et al." for long lists).
    pub authors: &'static str,
    /// Year of first publication.
    pub year: u16,
    /// arXiv identifier, when there is one.
    pub arxiv: Option<&'static str>,
}

/// One catalogued model.
///
/// ```
/// use tcat_catalog::{find, Level};
/// let sparrow = find("Sparrow").unwrap();
/// assert_eq!(sparrow.level, Level::Doc);
/// assert_eq!(sparrow.runs_as, Some("chinchilla"));
/// assert!(sparrow.spec.is_none());
/// ```
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Entry {
    /// The catalog name lowercased, spaces and punctuation as `-` (`gpt-3`, `ernie-thu`).
    pub name: &'static str,
    /// Other names that [`find`] accepts.
    pub aliases: &'static [&'static str],
    /// Year of the first paper or release.
    pub year: u16,
    /// Organisations.
    pub org: &'static str,
    /// The architecture traits that set the model apart, and what was checked against the
    /// paper or the reference source.
    pub traits: &'static str,
    /// What tcat reaches for the row.
    pub level: Level,
    /// What the model computes (from its spec where it has one).
    pub kind: tcat_spec::ModelKind,
    /// Hugging Face `model_type`s of checkpoint rows.
    pub model_types: &'static [&'static str],
    /// Papers.
    pub papers: &'static [Paper],
    /// For documented rows and fine-tunes: the entry that runs them.
    pub runs_as: Option<&'static str>,
    /// What is published (weights, architecture, sizes) and what is not.
    pub published: &'static str,
    /// The architecture at a published size; every checkpoint and preset row has one.
    #[serde(skip)]
    pub spec: Option<fn() -> tcat_spec::ArchSpec>,
    /// Whether the entry is beyond `CATALOG.md`: a family tcat loads that the catalog does not
    /// list (Qwen2, Qwen3, OLMoE, Gemma 2, Gemma 3), kept after the catalog's rows.
    ///
    /// ```
    /// assert!(tcat_catalog::find("gemma-2").unwrap().beyond_catalog);
    /// assert!(!tcat_catalog::find("llama").unwrap().beyond_catalog);
    /// ```
    pub beyond_catalog: bool,
}

impl Entry {
    /// The spec, when the entry has one (a shorthand for calling [`Entry::spec`]).
    ///
    /// ```
    /// let t5 = tcat_catalog::find("t5").unwrap();
    /// assert_eq!(t5.arch().unwrap().kind(), tcat_spec::ModelKind::Seq2seq);
    /// ```
    pub fn arch(&self) -> Option<tcat_spec::ArchSpec> {
        self.spec.map(|spec| spec())
    }
}

/// Every entry, in the catalog's order.
///
/// ```
/// let entries = tcat_catalog::entries();
/// assert_eq!(entries[0].name, "bert");
/// assert!(entries.iter().any(|e| e.name == "palm"));
/// ```
pub fn entries() -> &'static [Entry] {
    entries::ENTRIES
}

/// The lowercase, dash-separated form of a name: letters and digits kept, every run of other
/// characters one `-`, none at the ends (`"ERNIE (THU)"` → `"ernie-thu"`, `"GPT-3.5"` →
/// `"gpt-3-5"`).
///
/// ```
/// assert_eq!(tcat_catalog::normalize("ERNIE (THU)"), "ernie-thu");
/// assert_eq!(tcat_catalog::normalize("GPT-3.5"), "gpt-3-5");
/// ```
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The entry named `name` or with `name` among its aliases, ignoring case and punctuation
/// (compared in [`normalize`]d form).
///
/// ```
/// use tcat_catalog::find;
/// assert_eq!(find("ChatGPT").unwrap().name, "instructgpt");
/// assert!(find("gpt-5").is_none());
/// assert_eq!(find("GPT-NeoX-20B").unwrap().name, "gpt-neox");
/// ```
pub fn find(name: &str) -> Option<&'static Entry> {
    let wanted = normalize(name);
    entries().iter().find(|e| normalize(e.name) == wanted || e.aliases.iter().any(|alias| normalize(alias) == wanted))
}
