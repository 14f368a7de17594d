//! tcat's own reader of a safetensors file's JSON header: each tensor's stored dtype and shape,
//! read before any tensor is, so that the builder can refuse an integer tensor where a float
//! is needed (candle's `VarBuilder` would convert it silently) and compare the sizes a config
//! implies with the weights the files really hold.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use tcat_core::{Error, Result};

/// The largest JSON header accepted (the safetensors format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredTensor {
    /// The dtype as the header spells it (`F32`, `I32`, `U8`, ...; candle's names, upper
    /// case, for PyTorch files).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl StoredTensor {
    /// Whether the dtype holds floating-point numbers.
    pub fn is_float(&self) -> bool {
        matches!(self.dtype.as_str(), "F16" | "BF16" | "F32" | "F64") || self.dtype.starts_with("F8")
    }
}

/// The tensors listed in the header of the safetensors file `path`, by name.
pub(crate) fn read(path: &Path) -> Result<HashMap<String, StoredTensor>> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let bad =
        |message: String| Error::InvalidInput(format!("{}: invalid safetensors header: {message}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| bad(format!("the file has {len} bytes, fewer than the 8-byte length")))?;
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER || n > len - 8 {
        return Err(bad(format!("header length {n} exceeds the file ({len} bytes) or the 100 MB limit")));
    }
    let mut text = vec![0u8; n as usize];
    file.read_exact(&mut text).map_err(io)?;
    let json: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let map = json.as_object().ok_or_else(|| bad("the header is not a JSON object".into()))?;
    let data_len = len - 8 - n;
    let mut out = HashMap::new();
    for (name, entry) in map {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(format!("tensor `{name}`: missing string field `dtype`")))?
            .to_string();
        let shape: Vec<usize> = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .ok_or_else(|| bad(format!("tensor `{name}`: `shape` is not a list of sizes")))?;
        let offsets: Vec<u64> = entry
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64()).collect())
            .filter(|o: &Vec<u64>| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| bad(format!("tensor `{name}`: `data_offsets` is not [begin, end]")))?;
        if offsets[1] > data_len {
            return Err(bad(format!(
                "tensor `{name}`: data ends at byte {} of a data section of {data_len} bytes",
                offsets[1]
            )));
        }
        if shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
            return Err(bad(format!("tensor `{name}`: shape {shape:?} overflows")));
        }
        out.insert(name.clone(), StoredTensor { dtype, shape });
    }
    Ok(out)
}
