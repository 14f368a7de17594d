//! Opening a checkpoint's weights as a candle `VarBuilder`, with errors that name the files.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tcat_core::{Error, Result};

use std::collections::HashMap;

use crate::ModelSource;
use crate::loading::safetensors_header::{self, StoredTensor};

/// A checkpoint's weights, opened (memory-mapped where the format allows) in one dtype on one
/// device.
pub struct Checkpoint {
    vb: VarBuilder<'static>,
    location: String,
    /// The files' tensor tables (stored dtype and shape: safetensors headers, the PyTorch
    /// pickle's table), read before any tensor; empty for user-given `VarBuilder`s.
    stored: HashMap<String, StoredTensor>,
}

impl Checkpoint {
    /// Opens the weight files of `source`: safetensors (one file or shards) or a PyTorch
    /// `pytorch_model.bin`.
    pub fn open(source: &ModelSource, device: &Device, dtype: DType) -> Result<Self> {
        let location = source.weights.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let is_pth =
            source.weights.len() == 1 && source.weights[0].extension().is_some_and(|e| e == "bin" || e == "pt");
        let mut stored = HashMap::new();
        if is_pth {
            // The pickle's tensor table (names, dtypes, shapes), read before any tensor.
            let infos = candle_core::pickle::read_pth_tensor_info(&source.weights[0], false, None)
                .map_err(|e| Error::InvalidInput(format!("{location}: cannot read weights: {e}")))?;
            for info in infos {
                let dtype = format!("{:?}", info.dtype).to_uppercase();
                stored.insert(info.name, StoredTensor { dtype, shape: info.layout.dims().to_vec() });
            }
        } else {
            for file in &source.weights {
                stored.extend(safetensors_header::read(file)?);
            }
        }
        let vb = if is_pth {
            VarBuilder::from_pth(&source.weights[0], dtype, device)
        } else {
            // SAFETY: the files are not modified while mapped; tcat never writes to them.
            unsafe { VarBuilder::from_mmaped_safetensors(&source.weights, dtype, device) }
        }
        .map_err(|e| Error::InvalidInput(format!("{location}: cannot read weights: {e}")))?;
        Ok(Self { vb, location, stored })
    }

    /// Weights from any candle `VarBuilder` (in-memory tensors, a user's own loader);
    /// `location` names them in error messages.
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    /// let ckpt = tcat_models::Checkpoint::from_var_builder(vb, "zeros");
    /// assert_eq!(ckpt.location(), "zeros");
    /// ```
    pub fn from_var_builder(vb: VarBuilder<'static>, location: impl Into<String>) -> Self {
        Self { vb, location: location.into(), stored: HashMap::new() }
    }

    /// The root `VarBuilder`.
    pub fn vb(&self) -> VarBuilder<'static> {
        self.vb.clone()
    }

    /// The device the weights are loaded on.
    pub(crate) fn device_ref(&self) -> &Device {
        self.vb.device()
    }

    /// The files, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The first of `prefixes` under which `probe` exists (`""` for the root), so that
    /// `BertForMaskedLM` (`bert.`) and bare `BertModel` checkpoints both load.
    pub fn find_prefix<'p>(&self, prefixes: &[&'p str], probe: &str) -> Result<&'p str> {
        prefixes.iter().find(|p| self.vb.contains_tensor(&join(p, probe))).copied().ok_or_else(|| {
            Error::MissingTensor {
                name: prefixes.iter().map(|p| join(p, probe)).collect::<Vec<_>>().join("` or `"),
                location: self.location.clone(),
            }
        })
    }

    /// Fails when the file stores `name` in a dtype that does not hold floats (candle would
    /// convert integers to the float dtype silently), naming the tensor and both dtypes.
    pub(crate) fn require_float(&self, name: &str) -> Result<()> {
        match self.stored.get(name) {
            Some(t) if !t.is_float() => Err(Error::InvalidInput(format!(
                "{}: tensor `{name}` is stored as {}, expected a float dtype (F16, BF16, F32 or F64) to load as {:?}",
                self.location,
                t.dtype,
                self.vb.dtype()
            ))),
            _ => Ok(()),
        }
    }

    /// The number of elements the weight files hold, when their tables were read.
    pub(crate) fn stored_elements(&self) -> Option<u64> {
        if self.stored.is_empty() {
            return None;
        }
        Some(self.stored.values().map(|t| t.shape.iter().map(|&d| d as u64).product::<u64>()).sum())
    }

    /// Maps a candle loading error to a typed one naming these files.
    pub fn error(&self, err: candle_core::Error) -> Error {
        Error::from_weights(err, &self.location)
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}
