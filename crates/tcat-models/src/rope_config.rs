//! Reading rotary settings from a config: `rope_theta` / `rope_scaling` (transformers 4) or
//! `rope_parameters` (transformers 5), and the partial-rotary fraction.

use serde_json::Value;
use tcat_core::Result;
use tcat_position::{RopeScaling, RotaryConfig, RotaryLayout};

use crate::ConfigFile;

/// The rotary configuration of a model whose heads are `head_dim` wide. `default_fraction` is
/// the family's rotated fraction when the config gives none (`rotary_pct`,
/// `partial_rotary_factor`).
pub(crate) fn rotary_config(
    config: &ConfigFile,
    head_dim: usize,
    default_fraction: f64,
    layout: RotaryLayout,
) -> Result<RotaryConfig> {
    let json = &config.json;
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
            match kind {
                "default" => RopeScaling::None,
                "linear" => RopeScaling::Linear { factor: factor()? },
                "ntk" => RopeScaling::NtkAware { factor: factor()? },
                other => {
                    return Err(config.error(format!(
                        "rope scaling type `{other}` is not supported yet (supported: default, linear, ntk)"
                    )));
                }
            }
        }
    };
    let rotary_dim = (head_dim as f64 * fraction) as usize;
    if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) || rotary_dim > head_dim {
        return Err(config.error(format!(
            "rotary fraction {fraction} of head_dim {head_dim} gives {rotary_dim} rotated features; expected an even number in 2..={head_dim}"
        )));
    }
    Ok(RotaryConfig { rotary_dim, base, layout, scaling })
}
