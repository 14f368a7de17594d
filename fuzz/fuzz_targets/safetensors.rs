//! Safetensors headers and shard indexes.
//!
//! The first byte chooses the reader: even, the bytes are a safetensors file
//! (`SafeTensors::read_metadata`, `SafeTensors::deserialize` and every tensor view, then candle's
//! memory-mapped loader through `tcat_models::Checkpoint::open`); odd, the rest is a
//! `model.safetensors.index.json` resolved by `ModelSource::from_dir`.
#![no_main]

use candle_core::{DType, Device};
use libfuzzer_sys::fuzz_target;
use safetensors::SafeTensors;
use tcat_models::{Checkpoint, ModelSource};

#[path = "common.rs"]
mod common;

const CONFIG: &[u8] = br#"{"model_type": "bert"}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let dir = common::scratch_dir("safetensors");
    if mode % 2 == 0 {
        let _ = SafeTensors::read_metadata(rest);
        if let Ok(tensors) = SafeTensors::deserialize(rest) {
            for (name, view) in tensors.tensors() {
                let _ = (name.len(), view.dtype(), view.shape().len(), view.data().len());
            }
        }
        let _ = std::fs::remove_file(dir.join("model.safetensors.index.json"));
        common::write(&dir, "config.json", CONFIG);
        common::write(&dir, "model.safetensors", rest);
        if let Ok(source) = ModelSource::from_dir("fuzz", &dir)
            && let Ok(ckpt) = Checkpoint::open(&source, &Device::Cpu, DType::F32)
        {
            // Every name the header lists must load (or be refused) without a panic.
            if let Ok(tensors) = SafeTensors::deserialize(rest) {
                for name in tensors.names() {
                    if let Ok(view) = tensors.tensor(name) {
                        let _ = ckpt.vb().get_unchecked_dtype(name, DType::F32).map(|t| t.dims().to_vec());
                        let _ = view.shape();
                    }
                }
            }
        }
    } else {
        let _ = std::fs::remove_file(dir.join("model.safetensors"));
        common::write(&dir, "config.json", CONFIG);
        common::write(&dir, "model.safetensors.index.json", rest);
        let _ = ModelSource::from_dir("fuzz", &dir);
    }
});
