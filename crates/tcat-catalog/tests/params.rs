//! Parameter counts of every spec against the published numbers, and the catalog's integrity:
//! every `CATALOG.md` row resolves, names are unique, `runs_as` points at an entry, and every
//! checkpoint and preset row has a spec that validates.

use tcat_catalog::{Level, entries, expected_params, find};
use tcat_spec::ArchSpec;

fn spec(name: &str) -> ArchSpec {
    let entry = find(name).unwrap_or_else(|| panic!("no entry `{name}`"));
    (entry.spec.unwrap_or_else(|| panic!("`{name}` has no spec")))()
}

fn error(count: u64, published: u64) -> f64 {
    (count as f64 - published as f64) / published as f64
}

/// Asserts `name`'s spec counts `total` (and `active`) within `tol`, after removing what the
/// published figure leaves out (named in `expected_params`).
fn check(name: &str, total: u64, active: Option<u64>, tol: f64) {
    let published = expected_params(name).unwrap_or_else(|| panic!("no published count for `{name}`"));
    assert_eq!(published.total, total, "{name}: the library's published total");
    let count = spec(name).param_count();
    let e = error(count.total - published.excluded, total);
    assert!(
        e.abs() <= tol,
        "{name}: {} counted ({} excluded) vs {total} published: {:+.2}%",
        count.total,
        published.excluded,
        e * 100.0
    );
    if let Some(active) = active {
        assert_eq!(published.active, Some(active), "{name}: the library's published active count");
        let e = error(count.active - published.excluded, active);
        assert!(e.abs() <= tol, "{name}: {} active vs {active} published: {:+.2}%", count.active, e * 100.0);
    }
}

// The presets, at their papers' sizes.

#[test]
fn gpt3_175b() {
    // Brown et al. 2020, Table 2.1: GPT-3 175B has 175.0B parameters.
    check("gpt-3", 175_000_000_000, None, 0.03);
}

#[test]
fn palm_540b() {
    // Chowdhery et al. 2022, Table 1: PaLM 540B has 540.35B parameters.
    check("palm", 540_350_000_000, None, 0.03);
}

#[test]
fn gopher_280b() {
    // Rae et al. 2021, Table 1: Gopher 280B.
    check("gopher", 280_000_000_000, None, 0.03);
}

#[test]
fn chinchilla_70b() {
    // Hoffmann et al. 2022, Table 4: Chinchilla 70B.
    check("chinchilla", 70_000_000_000, None, 0.03);
}

#[test]
fn lamda_137b() {
    // Thoppilan et al. 2022, Table 27 (hyper-parameters): LaMDA 137B.
    check("lamda", 137_000_000_000, None, 0.03);
}

#[test]
fn glam_64b_64e() {
    // Du et al. 2021, Table 4: GLaM (64B/64E) 1.2T parameters, 96.6B activated per token.
    // The excluded Transformer-XL projections are named in `expected_params("glam")`.
    check("glam", 1_200_000_000_000, Some(96_600_000_000), 0.05);
    // Without that exclusion the raw count is still within 5 % of the total, not of the active.
    let raw = spec("glam").param_count();
    assert!(error(raw.total, 1_200_000_000_000).abs() < 0.05);
}

#[test]
fn transformer_xl_enwik8() {
    // Dai et al. 2019, Table 2: Transformer-XL, 24 layers, enwik8: 277M.
    check("transformer-xl", 277_000_000, None, 0.03);
}

#[test]
fn sparse_transformer_enwik8() {
    // Child et al. 2019, Table 2: Sparse Transformer (fixed), 30 layers, enwik8: 95M.
    check("sparse-transformer", 95_000_000, None, 0.03);
}

#[test]
fn dalle_12b() {
    // Ramesh et al. 2021, abstract and §2: a 12-billion parameter autoregressive transformer.
    check("dall-e", 12_000_000_000, None, 0.03);
}

#[test]
fn ernie_thu() {
    // Zhang et al. 2019, §4.2: "the total parameters of ERNIE are about 114M" (the frozen TransE
    // entity table left out).
    check("ernie-thu", 114_000_000, None, 0.03);
}

#[test]
fn coca_base() {
    // Yu et al. 2022, Table 1: CoCa-Base 383M (86M image encoder + 297M text decoder).
    check("coca", 383_000_000, None, 0.03);
}

#[test]
fn palm_e_12b() {
    // Driess et al. 2023, §6: PaLM-E-12B = PaLM-8B (8.63B, Chowdhery et al. 2022, Table 1) +
    // ViT-4B (ViT-e, 3.9B, Chen et al. 2022, Table 1).
    check("palm-e", 12_530_000_000, None, 0.03);
}

#[test]
fn glide_text_encoder() {
    // Nichol et al. 2021, §4: 24 residual blocks of width 2048, "roughly 1.2B parameters".
    check("glide", 1_200_000_000, None, 0.03);
}

#[test]
fn imagen_text_encoder() {
    // Saharia et al. 2022, §2.1: the frozen T5-XXL encoder, 4.6B parameters.
    check("imagen", 4_600_000_000, None, 0.03);
}

// Checkpoint rows with well-known counts.

#[test]
fn gpt2_small() {
    // OpenAI's gpt-2 model card: 124M (transformers counts 124,439,808).
    check("gpt-2", 124_000_000, None, 0.03);
    assert_eq!(spec("gpt-2").param_count().total, 124_439_808);
}

#[test]
fn bert_base() {
    // Devlin et al. 2018, §3: BERT-base, 110M.
    check("bert", 110_000_000, None, 0.03);
}

#[test]
fn llama_7b() {
    // Touvron et al. 2023, Table 2: 6.7B; transformers counts 6,738,415,616.
    check("llama", 6_700_000_000, None, 0.03);
    assert_eq!(spec("llama").param_count().total, 6_738_415_616);
}

#[test]
fn mixtral_8x7b() {
    // Mistral AI, "Mixtral of experts" (2023): 46.7B total, 12.9B used per token.
    check("mixtral", 46_700_000_000, Some(12_900_000_000), 0.03);
}

#[test]
fn t5_base() {
    // Raffel et al. 2020, §3.7: T5-Base, 220M (transformers counts 222,903,552).
    check("t5", 220_000_000, None, 0.03);
    assert_eq!(spec("t5").param_count().total, 222_903_552);
}

#[test]
fn vit_b16() {
    // Dosovitskiy et al. 2020, Table 1: ViT-Base, 86M.
    check("vit", 86_000_000, None, 0.03);
}

#[test]
fn clip_b32() {
    // The openai/clip-vit-base-patch32 checkpoint: 151,277,313 parameters.
    check("clip", 151_277_313, None, 0.03);
}

#[test]
fn gpt_neox_and_pythia() {
    // Black et al. 2022, Table 1: 20,554,567,680; Biderman et al. 2023, Table 1: 11,846,072,320.
    check("gpt-neox", 20_554_567_680, None, 0.03);
    check("pythia", 11_846_072_320, None, 0.03);
}

#[test]
fn bloom_176b() {
    // BigScience 2022, Table 3: BLOOM, 176,247M.
    check("bloom", 176_247_271_424, None, 0.03);
}

#[test]
fn every_published_count_holds() {
    // Every entry with a published count (sources in `expected_params`) within its tolerance.
    let mut checked = 0;
    for entry in entries() {
        let Some(published) = expected_params(entry.name) else { continue };
        let count = (entry.spec.unwrap())().param_count();
        let e = error(count.total - published.excluded, published.total);
        assert!(e.abs() <= published.tolerance, "{}: {:+.2}% ({})", entry.name, e * 100.0, published.source);
        if let Some(active) = published.active {
            let e = error(count.active - published.excluded, active);
            assert!(e.abs() <= published.tolerance, "{} active: {:+.2}%", entry.name, e * 100.0);
        }
        checked += 1;
    }
    assert!(checked >= 45, "only {checked} published counts");
}

#[test]
fn every_preset_has_a_published_count() {
    for entry in entries().iter().filter(|e| e.level == Level::Preset) {
        if entry.name == "latent-diffusion" {
            // The LDM paper gives the whole model's size (1.45B), not its text encoder's.
            continue;
        }
        assert!(expected_params(entry.name).is_some(), "{}", entry.name);
    }
}

// Beyond the catalog: the checkpoint families tcat loads that CATALOG.md does not list.

#[test]
fn qwen2_7b() {
    // Qwen/Qwen2-7B: 7.62B parameters (untied head).
    check("qwen2", 7_620_000_000, None, 0.03);
}

#[test]
fn qwen3_8b() {
    // Qwen/Qwen3-8B model card: 8.2B parameters.
    check("qwen3", 8_200_000_000, None, 0.03);
}

#[test]
fn olmoe_1b_7b() {
    // Muennighoff et al. 2024, Table 1: 6.9B total, 1.3B active.
    check("olmoe", 6_900_000_000, Some(1_300_000_000), 0.03);
}

#[test]
fn gemma2_2b() {
    // Gemma Team 2024, Table 2: 590,118,912 embedding + 2,024,517,888 non-embedding parameters.
    check("gemma-2", 2_614_636_800, None, 0.001);
    let count = spec("gemma-2").param_count().total;
    assert_eq!(count - 256_000 * 2304, 2_024_517_888, "the non-embedding count is exact");
}

#[test]
fn gemma3_1b() {
    // Gemma Team 2025, Table 1: 302M embedding + 698M non-embedding parameters.
    check("gemma-3", 1_000_000_000, None, 0.01);
    let non_embedding = spec("gemma-3").param_count().total - 262_144 * 1152;
    assert!((non_embedding as f64 / 698e6 - 1.0).abs() < 0.001, "{non_embedding}");
}

#[test]
fn phi3_mini() {
    check("phi-3", 3_821_079_552, None, 0.001);
}

#[test]
fn deepseek_v2_lite() {
    // DeepSeek quotes 15.7B total; transformers' count of the checkpoint is 15,706,484,224.
    check("deepseek-v2", 15_700_000_000, None, 0.01);
    assert_eq!(spec("deepseek-v2").param_count().total, 15_706_484_224);
}

#[test]
fn deepseek_v3_671b() {
    check("deepseek-v3", 671_000_000_000, Some(37_000_000_000), 0.02);
}

#[test]
fn modernbert_base() {
    check("modernbert", 149_000_000, None, 0.005);
    // transformers' count of ModernBertForMaskedLM at ModernBERT-base's config (tied decoder
    // counted once), and of the base model alone (no head).
    let spec = spec("modernbert");
    assert_eq!(spec.param_count().total, 149_655_232);
    assert_eq!(spec.single_tower().unwrap().param_count().total, 149_014_272);
}

#[test]
fn beyond_the_catalog_is_marked_and_last() {
    let beyond: Vec<&str> = entries().iter().filter(|e| e.beyond_catalog).map(|e| e.name).collect();
    assert_eq!(
        beyond,
        ["qwen2", "qwen3", "olmoe", "gemma-2", "gemma-3", "phi-3", "deepseek-v2", "deepseek-v3", "modernbert"]
    );
    let first = entries().iter().position(|e| e.beyond_catalog).unwrap();
    assert!(entries()[first..].iter().all(|e| e.beyond_catalog), "beyond-catalog entries come last");
    for row in CATALOG_ROWS {
        for name in row.split([',', '/']).map(str::trim) {
            assert!(!find(name).unwrap().beyond_catalog, "`{name}` is a catalog row");
        }
    }
}

// The catalog's integrity.

/// The model names of CATALOG.md, row by row as written there.
const CATALOG_ROWS: &[&str] = &[
    "BERT",
    "RoBERTa",
    "XLM",
    "XLM-RoBERTa",
    "ERNIE (THU)",
    "ALBERT",
    "DistilBERT",
    "LaBSE",
    "ELECTRA",
    "DeBERTa",
    "MiniLM / sentence-transformers",
    "Transformer (original)",
    "GPT",
    "GPT-2",
    "Transformer-XL",
    "XLNet",
    "T5",
    "BART / mBART",
    "CTRL",
    "Sparse Transformer",
    "GPT-3",
    "mT5",
    "GPT-Neo",
    "GPT-J",
    "Switch Transformer",
    "GLaM",
    "LaMDA",
    "GPT-NeoX-20B, Pythia, Dolly-2",
    "BLOOM",
    "PaLM",
    "OPT",
    "Gopher, Chinchilla",
    "SantaCoder / StarCoder",
    "LLaMA, Alpaca, Koala",
    "Mixtral",
    "InstructGPT, ChatGPT / GPT-3.5",
    "Flan-T5",
    "Sparrow",
    "GPT-4",
    "ViT",
    "CLIP",
    "DALL-E",
    "GLIDE, Latent Diffusion, Imagen",
    "CoCa",
    "PaLM-E",
];

#[test]
fn every_catalog_row_resolves() {
    for row in CATALOG_ROWS {
        assert!(find(row).is_some() || row.contains(['/', ',']), "row `{row}`");
        for name in row.split([',', '/']).map(str::trim) {
            assert!(find(name).is_some(), "`{name}` (row `{row}`) does not resolve");
        }
    }
    // And the rows' levels.
    assert_eq!(find("Transformer-XL").unwrap().level, Level::Preset);
    assert_eq!(find("GPT-4").unwrap().level, Level::Doc);
    assert_eq!(find("Flan-T5").unwrap().level, Level::Ckpt);
}

#[test]
fn catalog_rows_match_the_shared_catalog_when_present() {
    // Read CATALOG.md where the workspace has it (`shared/` beside the checkout, as CI lays it
    // out: there its absence is a failure), and check the first column of every table row.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/CATALOG.md");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{}: {e}", path.display()),
        Err(_) => return,
    };
    let mut rows = 0;
    for line in text.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| model")) {
        let model = line.trim_start_matches("| ").split(" |").next().unwrap().trim();
        for name in model.split([',', '/']).map(str::trim) {
            assert!(find(name).is_some(), "CATALOG.md's `{name}` does not resolve");
        }
        rows += 1;
    }
    assert_eq!(rows, CATALOG_ROWS.len());
}

#[test]
fn names_and_aliases_are_unique() {
    let mut seen = std::collections::HashSet::new();
    for entry in entries() {
        assert_eq!(entry.name, tcat_catalog::normalize(entry.name), "names are in normal form");
        for name in std::iter::once(&entry.name).chain(entry.aliases) {
            assert!(seen.insert(tcat_catalog::normalize(name)), "`{name}` is used twice");
        }
    }
}

#[test]
fn runs_as_points_at_an_entry() {
    for entry in entries() {
        if let Some(target) = entry.runs_as {
            let runner = find(target).unwrap_or_else(|| panic!("{} runs as missing `{target}`", entry.name));
            assert_eq!(runner.name, target);
            assert_ne!(runner.level, Level::Doc, "{} runs as a doc row", entry.name);
        }
        if entry.level == Level::Doc {
            assert!(entry.spec.is_none(), "{}", entry.name);
            assert!(!entry.published.is_empty(), "{}", entry.name);
        }
    }
}

#[test]
fn every_ckpt_and_preset_has_a_valid_spec_of_its_kind() {
    for entry in entries().iter().filter(|e| e.level != Level::Doc) {
        let spec = (entry.spec.unwrap_or_else(|| panic!("{} has no spec", entry.name)))();
        spec.validate().unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        assert_eq!(spec.kind(), entry.kind, "{}", entry.name);
        assert!(!entry.papers.is_empty(), "{}", entry.name);
        if entry.level == Level::Ckpt {
            assert!(!entry.model_types.is_empty(), "{}", entry.name);
        }
        // The spec survives JSON.
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<ArchSpec>(&json).unwrap(), spec, "{}", entry.name);
    }
}

#[test]
fn entries_serialise() {
    let json = serde_json::to_value(find("palm").unwrap()).unwrap();
    assert_eq!(json["level"], "preset");
    assert_eq!(json["kind"], "decoder");
}

/// Prints the catalog with counts (`cargo test -p tcat-catalog --test params -- --ignored
/// --nocapture table`).
#[test]
#[ignore]
fn table() {
    println!("| name | level | kind | params total / active | published | error |");
    println!("|---|---|---|---|---|---|");
    for entry in entries() {
        let counts = entry.spec.map(|s| s().param_count());
        let count = counts.map_or("—".to_string(), |c| {
            if c.active == c.total {
                format!("{:.4}B", c.total as f64 / 1e9)
            } else {
                format!("{:.4}B / {:.4}B", c.total as f64 / 1e9, c.active as f64 / 1e9)
            }
        });
        let (published, err) = match (expected_params(entry.name), counts) {
            (Some(p), Some(c)) => {
                let shown = match p.active {
                    Some(a) => format!("{:.4}B / {:.4}B", p.total as f64 / 1e9, a as f64 / 1e9),
                    None => format!("{:.4}B", p.total as f64 / 1e9),
                };
                let mut e = format!("{:+.2}%", error(c.total - p.excluded, p.total) * 100.0);
                if let Some(a) = p.active {
                    e += &format!(" / {:+.2}%", error(c.active - p.excluded, a) * 100.0);
                }
                if p.excluded > 0 {
                    e += &format!(" (after excluding {:.4}B)", p.excluded as f64 / 1e9);
                }
                (shown, e)
            }
            _ => ("—".into(), "—".into()),
        };
        println!("| {} | {} | {} | {count} | {published} | {err} |", entry.name, entry.level.name(), entry.kind.name());
    }
}
