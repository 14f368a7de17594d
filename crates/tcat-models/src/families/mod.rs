//! The registry of families: each maps its `config.json` to an [`ArchSpec`] and names its
//! weights with a [`WeightNames`] table; the builder does the rest.

pub mod albert;
pub mod bart;
pub mod bert;
pub mod bloom;
pub mod clip;
pub mod ctrl;
pub mod deberta_v2;
pub mod deepseek;
pub mod distilbert;
pub mod electra;
pub mod gemma;
pub mod gpt2;
pub mod gpt_neo;
pub mod gpt_neox;
pub mod gptj;
pub mod llama;
pub mod mixtral;
pub mod modernbert;
pub mod olmoe;
pub mod openai_gpt;
pub mod opt;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod roberta;
pub(crate) mod rope_config;
pub mod switch;
pub mod t5;
pub mod vit;
pub mod xlm;
pub mod xlnet;

use tcat_core::Result;
use tcat_spec::ArchSpec;

use crate::ConfigFile;
use crate::build::WeightNames;

/// One family: the `model_type`s it reads, its config mapping and its weight names.
pub(crate) struct Family {
    pub model_types: &'static [&'static str],
    pub spec: fn(&ConfigFile) -> Result<ArchSpec>,
    pub names: fn(&ConfigFile) -> Result<WeightNames>,
}

pub(crate) const FAMILIES: &[Family] = &[
    Family { model_types: &["bert"], spec: crate::bert::spec, names: |_| Ok(crate::bert::NAMES) },
    Family {
        model_types: &["roberta", "xlm-roberta"],
        spec: crate::roberta::spec,
        names: |_| Ok(crate::roberta::NAMES),
    },
    Family { model_types: &["distilbert"], spec: crate::distilbert::spec, names: |_| Ok(crate::distilbert::NAMES) },
    Family { model_types: &["albert"], spec: albert::spec, names: |_| Ok(albert::NAMES) },
    Family { model_types: &["electra"], spec: electra::spec, names: |_| Ok(electra::NAMES) },
    Family { model_types: &["xlm"], spec: xlm::spec, names: |_| Ok(xlm::NAMES) },
    Family { model_types: &["deberta", "deberta-v2"], spec: deberta_v2::spec, names: deberta_v2::names },
    Family { model_types: &["xlnet"], spec: xlnet::spec, names: |_| Ok(xlnet::NAMES) },
    Family { model_types: &["modernbert"], spec: modernbert::spec, names: |_| Ok(modernbert::NAMES) },
    Family { model_types: &["bloom"], spec: crate::bloom::spec, names: |_| Ok(crate::bloom::NAMES) },
    Family { model_types: &["ctrl"], spec: crate::ctrl::spec, names: |_| Ok(crate::ctrl::NAMES) },
    Family { model_types: &["gpt2"], spec: crate::gpt2::spec, names: |_| Ok(crate::gpt2::NAMES) },
    Family { model_types: &["gpt_bigcode"], spec: crate::gpt2::spec, names: crate::gpt2::bigcode_names },
    Family { model_types: &["gpt_neo"], spec: crate::gpt_neo::spec, names: |_| Ok(crate::gpt_neo::NAMES) },
    Family { model_types: &["gpt_neox"], spec: crate::gpt_neox::spec, names: |_| Ok(crate::gpt_neox::NAMES) },
    Family { model_types: &["gptj"], spec: crate::gptj::spec, names: |_| Ok(crate::gptj::NAMES) },
    Family { model_types: &["llama", "mistral"], spec: crate::llama::spec, names: |_| Ok(crate::llama::NAMES) },
    Family { model_types: &["openai-gpt"], spec: crate::openai_gpt::spec, names: |_| Ok(crate::openai_gpt::NAMES) },
    Family { model_types: &["mixtral"], spec: mixtral::spec, names: |_| Ok(mixtral::NAMES) },
    Family { model_types: &["opt"], spec: crate::opt::spec, names: |_| Ok(crate::opt::NAMES) },
    Family { model_types: &["phi3"], spec: phi3::spec, names: |_| Ok(phi3::NAMES) },
    Family { model_types: &["qwen2"], spec: qwen2::spec, names: |_| Ok(llama::NAMES) },
    Family { model_types: &["qwen2_moe"], spec: qwen2::moe_spec, names: |_| Ok(qwen2::MOE_NAMES) },
    Family { model_types: &["olmoe"], spec: olmoe::spec, names: |_| Ok(olmoe::NAMES) },
    Family { model_types: &["gemma"], spec: gemma::gemma_spec, names: gemma::names },
    Family { model_types: &["gemma2"], spec: gemma::gemma2_spec, names: gemma::names },
    Family { model_types: &["gemma3_text"], spec: gemma::gemma3_spec, names: gemma::names },
    Family { model_types: &["deepseek_v2", "deepseek_v3"], spec: deepseek::spec, names: |_| Ok(deepseek::NAMES) },
    Family { model_types: &["qwen3"], spec: qwen3::spec, names: |_| Ok(qwen3::NAMES) },
    Family { model_types: &["qwen3_moe"], spec: qwen3::moe_spec, names: |_| Ok(qwen3::MOE_NAMES) },
    Family { model_types: &["t5", "mt5"], spec: t5::spec, names: t5::names },
    Family { model_types: &["switch_transformers"], spec: switch::spec, names: |_| Ok(switch::NAMES) },
    Family { model_types: &["bart"], spec: bart::spec, names: |_| Ok(bart::NAMES) },
    Family { model_types: &["mbart"], spec: bart::mbart_spec, names: |_| Ok(bart::NAMES) },
    Family { model_types: &["marian"], spec: bart::marian_spec, names: |_| Ok(bart::NAMES) },
    Family { model_types: &["vit"], spec: vit::spec, names: |_| Ok(vit::NAMES) },
    Family { model_types: &["clip"], spec: clip::spec, names: |_| Ok(clip::NAMES) },
];

/// The `model_type`s of every family.
pub(crate) fn model_types() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().flat_map(|f| f.model_types.iter().copied())
}

/// The spec and weight names of `config`'s family.
/// The config field that sets the position limit, for messages: the first of the fields the
/// families read that `config` has.
pub(crate) fn positions_field(config: &ConfigFile) -> Option<&'static str> {
    ["max_position_embeddings", "n_positions", "n_ctx", "seq_length"]
        .into_iter()
        .find(|f| config.json.get(*f).is_some_and(|v| v.is_u64()))
}

pub(crate) fn spec_and_names(config: &ConfigFile) -> Result<(ArchSpec, WeightNames)> {
    let model_type = config.model_type()?;
    let family = FAMILIES.iter().find(|f| f.model_types.contains(&model_type)).ok_or_else(|| {
        let mut supported: Vec<_> = model_types().collect();
        supported.sort();
        tcat_core::Error::UnknownModelType {
            file: config.path.clone(),
            found: model_type.to_string(),
            supported: supported.join(", "),
        }
    })?;
    Ok(((family.spec)(config)?, (family.names)(config)?))
}

/// The architecture spec of a Hugging Face `config.json`, as its family maps it.
///
/// ```
/// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama");
/// let config = tcat_models::ConfigFile::read(&dir.join("config.json")).unwrap();
/// let spec = tcat_models::spec_of(&config).unwrap();
/// assert_eq!(spec.kind(), tcat_spec::ModelKind::Decoder);
/// ```
pub fn spec_of(config: &ConfigFile) -> Result<ArchSpec> {
    Ok(spec_and_names(config)?.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn supported_model_types_are_the_registry() {
        let mut registry: Vec<&str> = super::model_types().collect();
        registry.sort();
        assert_eq!(registry, crate::SUPPORTED_MODEL_TYPES);
    }
}
