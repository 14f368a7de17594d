//! The GGUF reader: `GgufFile::open` on arbitrary bytes, then `.spec()` and the metadata summary.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch_dir("gguf");
    let path = common::write(&dir, "model.gguf", data);
    if let Ok(file) = tcat_models::gguf::GgufFile::open(&path) {
        let _ = file.architecture();
        let _ = file.spec();
        let _ = file.metadata_summary();
    }
});
