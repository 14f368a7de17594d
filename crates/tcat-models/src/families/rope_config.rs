//! Reading rotary settings from a config: `rope_theta` / `rope_scaling` (transformers 4) or
//! `rope_parameters` (transformers 5), and the partial-rotary fraction.

use serde_json::Value;
use tcat_core::Result;
use tcat_spec::{RopeScalingSpec as RopeScaling, RotaryLayoutSpec, RotarySpec};

use crate::ConfigFile;

/// The rotary spec of a config. `default_fraction` is the family's rotated fraction when the
/// config gives none (`rotary_pct`, `partial_rotary_factor`).
pub(crate) fn rotary_spec(config: &ConfigFile, default_fraction: f64, layout: RotaryLayoutSpec) -> Result<RotarySpec> {
    let json = &config.json;
    check_types(config)?;
    let params = json.get("rope_parameters").filter(|v| v.is_object());
    let scaling_block = params.or_else(|| json.get("rope_scaling").filter(|v| v.is_object()));
    let number = |v: Option<&Value>| v.and_then(Value::as_f64);
    let base = number(params.and_then(|p| p.get("rope_theta")))
        .or_else(|| number(json.get("rope_theta")))
        .or_else(|| number(json.get("rotary_emb_base")))
        .unwrap_or(10000.0);
    let fraction = number(params.and_then(|p| p.get("partial_rotary_factor")))
        .or_else(|| number(json.get("partial_rotary_factor")))
        .or_else(|| number(json.get("rotary_pct")))
        .unwrap_or(default_fraction);
    let scaling = match scaling_block {
        None => RopeScaling::None,
        Some(block) => {
            let kind =
                block.get("rope_type").or_else(|| block.get("type")).and_then(Value::as_str).unwrap_or("default");
            let factor = || {
                number(block.get("factor"))
                    .filter(|f| *f > 0.0)
                    .ok_or_else(|| config.error(format!("rope scaling `{kind}` needs a positive `factor`")))
            };
            let field = |name: &str| {
                number(block.get(name))
                    .filter(|v| *v > 0.0)
                    .ok_or_else(|| config.error(format!("rope scaling `{kind}` needs a positive `{name}`")))
            };
            let max_positions = json.get("max_position_embeddings").and_then(Value::as_u64);
            match kind {
                "default" => RopeScaling::None,
                "linear" => RopeScaling::Linear { factor: factor()? },
                "ntk" => RopeScaling::NtkAware { factor: factor()? },
                "dynamic" => RopeScaling::DynamicNtk {
                    factor: factor()?,
                    original_max_positions: max_positions
                        .ok_or_else(|| config.error("rope scaling `dynamic` needs `max_position_embeddings`"))?
                        as usize,
                },
                "llama3" => {
                    // As transformers: a top-level `original_max_position_embeddings` wins, then the
                    // scaling block's, then `max_position_embeddings`.
                    let original = json
                        .get("original_max_position_embeddings")
                        .or_else(|| block.get("original_max_position_embeddings"))
                        .and_then(Value::as_u64)
                        .or(max_positions)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            config.error("rope scaling `llama3` needs a positive `original_max_position_embeddings`")
                        })?;
                    let (low_freq_factor, high_freq_factor) = (field("low_freq_factor")?, field("high_freq_factor")?);
                    if high_freq_factor <= low_freq_factor {
                        return Err(config.error(format!(
                            "rope scaling `llama3`: `high_freq_factor` ({high_freq_factor}) must exceed `low_freq_factor` ({low_freq_factor})"
                        )));
                    }
                    RopeScaling::Llama3 {
                        factor: factor()?,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_positions: original as usize,
                    }
                }
                "yarn" => {
                    // As transformers' `_compute_yarn_parameters`.
                    let original = block
                        .get("original_max_position_embeddings")
                        .or_else(|| json.get("original_max_position_embeddings"))
                        .and_then(Value::as_u64)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            config.error("rope scaling `yarn` needs a positive `original_max_position_embeddings`")
                        })? as usize;
                    let factor = match number(block.get("factor")) {
                        Some(_) => factor()?,
                        None => max_positions
                            .map(|m| m as f64 / original as f64)
                            .filter(|f| *f > 0.0)
                            .ok_or_else(|| config.error("rope scaling `yarn` needs a positive `factor`"))?,
                    };
                    let or =
                        |name: &str, default: f64| number(block.get(name)).filter(|v| *v != 0.0).unwrap_or(default);
                    let (mscale, mscale_all_dim) = (or("mscale", 0.0), or("mscale_all_dim", 0.0));
                    let attention_factor = match number(block.get("attention_factor")) {
                        Some(a) => a,
                        None if mscale != 0.0 && mscale_all_dim != 0.0 => {
                            tcat_position::yarn_mscale(factor, mscale)
                                / tcat_position::yarn_mscale(factor, mscale_all_dim)
                        }
                        None => tcat_position::yarn_mscale(factor, 1.0),
                    };
                    RopeScaling::Yarn {
                        factor,
                        original_max_positions: original,
                        beta_fast: or("beta_fast", 32.0),
                        beta_slow: or("beta_slow", 1.0),
                        attention_factor,
                        truncate: block.get("truncate").and_then(Value::as_bool).unwrap_or(true),
                    }
                }
                "longrope" => {
                    // As transformers' `_compute_longrope_parameters`; the factor lists become
                    // tensors ([`long_rope_factors`]).
                    let original = long_rope_original(config, block)?;
                    let factor = match number(block.get("factor")) {
                        Some(_) => factor()?,
                        None => max_positions.map_or(1.0, |m| m as f64 / original as f64),
                    };
                    let attention_factor = match number(block.get("attention_factor")) {
                        Some(a) if a > 0.0 => a,
                        Some(a) => return Err(config.error(format!("rope scaling `longrope`: `attention_factor` {a}"))),
                        None if factor <= 1.0 => 1.0,
                        None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
                    };
                    RopeScaling::LongRope { original_max_positions: original, attention_factor }
                }
                other => {
                    return Err(config.error(format!(
                        "rope scaling type `{other}` is not supported yet (supported: default, linear, ntk, dynamic, llama3, \
                         yarn, longrope)"
                    )));
                }
            }
        }
    };
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(config.error(format!("rotary fraction {fraction} must be in (0, 1]")));
    }
    Ok(RotarySpec { fraction, base, layout, scaling })
}

/// The rotary settings (global, local) of a model whose global and local layers rotate
/// differently (Gemma 3, ModernBERT). transformers 5 saves them as `rope_parameters` keyed by
/// layer type (`full_attention`, `sliding_attention`), each read as a whole config's rotary
/// block; older configs name the two bases by the fields `global` and `local` (`(field,
/// default)`, a `null` field taking the default) with `rope_scaling` applied to the global
/// layers, and to the local ones too when `scaling_on_local`.
pub(crate) fn per_type_rotary(
    config: &ConfigFile,
    global: (&str, f64),
    local: (&str, f64),
    scaling_on_local: bool,
) -> Result<(RotarySpec, RotarySpec)> {
    let json = &config.json;
    let per_type = json.get("rope_parameters").filter(|p| p.get("full_attention").is_some());
    let sub = |block: Option<Value>, theta: f64| -> Result<RotarySpec> {
        // Read one layer type's block with the shared reader, as if it were the whole config.
        let mut json = json.clone();
        if let Some(object) = json.as_object_mut() {
            for key in ["rope_parameters", "rope_scaling", "rope_theta", global.0, local.0] {
                object.remove(key);
            }
            let mut block = match block {
                Some(Value::Object(block)) => block,
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(other) => return Err(config.error(format!("rope parameters {other}: expected a map"))),
            };
            block.entry("rope_theta").or_insert(Value::from(theta));
            object.insert("rope_parameters".into(), Value::Object(block));
        }
        let view = ConfigFile { path: config.path.clone(), json };
        rotary_spec(&view, 1.0, RotaryLayoutSpec::HalfSplit)
    };
    let number = |name: &str, default: f64| -> Result<f64> {
        match json.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| config.error(format!("`{name}` = {v}: expected a number"))),
        }
    };
    match per_type {
        Some(p) => Ok((
            sub(p.get("full_attention").cloned(), number(global.0, global.1)?)?,
            sub(p.get("sliding_attention").cloned(), number(local.0, local.1)?)?,
        )),
        None => {
            let scaling = json.get("rope_scaling").or_else(|| json.get("rope_parameters")).cloned();
            let local_scaling = if scaling_on_local { scaling.clone() } else { None };
            Ok((sub(scaling, number(global.0, global.1)?)?, sub(local_scaling, number(local.0, local.1)?)?))
        }
    }
}

/// The pretraining context of a LongRoPE config: the top-level field wins (Phi-3 keeps it
/// there), then the scaling block's, then `max_position_embeddings`.
fn long_rope_original(config: &ConfigFile, block: &Value) -> Result<usize> {
    let json = &config.json;
    json.get("original_max_position_embeddings")
        .or_else(|| block.get("original_max_position_embeddings"))
        .or_else(|| json.get("max_position_embeddings"))
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| config.error("rope scaling `longrope` needs a positive `original_max_position_embeddings`"))
}

/// LongRoPE's per-frequency factors of a config as the tensors the builder reads
/// ([`crate::build::LONG_ROPE_SHORT`], [`crate::build::LONG_ROPE_LONG`]; llama.cpp stores them so
/// in GGUF files), each `rotary_dim / 2` long: empty unless the rope type is `longrope`.
pub(crate) fn long_rope_factors(config: &ConfigFile, rotary_dim: usize) -> Result<Vec<(&'static str, Vec<f32>)>> {
    let json = &config.json;
    let block = json
        .get("rope_parameters")
        .filter(|v| v.is_object())
        .or_else(|| json.get("rope_scaling").filter(|v| v.is_object()));
    let Some(block) = block else { return Ok(Vec::new()) };
    let kind = block.get("rope_type").or_else(|| block.get("type")).and_then(Value::as_str);
    if kind != Some("longrope") {
        return Ok(Vec::new());
    }
    let list = |name: &str| -> Result<Vec<f32>> {
        let values = block
            .get(name)
            .and_then(Value::as_array)
            .ok_or_else(|| config.error(format!("rope scaling `longrope` needs `{name}`, a list of numbers")))?;
        let factors = values
            .iter()
            .map(|v| v.as_f64().filter(|f| *f > 0.0 && f.is_finite()).map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| config.error(format!("rope scaling `longrope`: `{name}` must hold positive numbers")))?;
        if factors.len() != rotary_dim / 2 {
            return Err(config.error(format!(
                "rope scaling `longrope`: `{name}` has {} factors, expected one per rotated pair ({})",
                factors.len(),
                rotary_dim / 2
            )));
        }
        Ok(factors)
    };
    Ok(vec![
        (crate::build::LONG_ROPE_SHORT, list("short_factor")?),
        (crate::build::LONG_ROPE_LONG, list("long_factor")?),
    ])
}

/// Fails when a rotary field is present with the wrong JSON type (a string `factor` would
/// otherwise read as missing, a string `rope_theta` as the default), naming its path.
fn check_types(config: &ConfigFile) -> Result<()> {
    const NUMBERS: [&str; 13] = [
        "beta_fast",
        "beta_slow",
        "mscale",
        "mscale_all_dim",
        "attention_factor",
        "rope_theta",
        "rotary_emb_base",
        "partial_rotary_factor",
        "rotary_pct",
        "factor",
        "low_freq_factor",
        "high_freq_factor",
        "original_max_position_embeddings",
    ];
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
    };
    let check = |path: String, v: &Value, expected: &str| -> Result<()> {
        let ok = match expected {
            "a number" => v.is_number(),
            "a string" => v.is_string(),
            _ => v.is_object(),
        };
        if ok || v.is_null() {
            Ok(())
        } else {
            Err(config.error(format!("`{path}`: invalid type: {} {v}, expected {expected}", kind(v))))
        }
    };
    let json = &config.json;
    for name in NUMBERS {
        if let Some(v) = json.get(name) {
            check(name.to_string(), v, "a number")?;
        }
    }
    for block in ["rope_scaling", "rope_parameters"] {
        let Some(b) = json.get(block) else { continue };
        check(block.to_string(), b, "a map")?;
        for name in NUMBERS {
            if let Some(v) = b.get(name) {
                check(format!("{block}.{name}"), v, "a number")?;
            }
        }
        for name in ["type", "rope_type"] {
            if let Some(v) = b.get(name) {
                check(format!("{block}.{name}"), v, "a string")?;
            }
        }
    }
    Ok(())
}
