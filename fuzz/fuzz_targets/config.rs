//! `config.json` parsing: `ConfigFile::read` on arbitrary bytes, then `spec_of` (the family
//! registry's field mapping and validation). Any input may be refused; none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch_dir("config");
    let path = common::write(&dir, "config.json", data);
    if let Ok(config) = tcat_models::ConfigFile::read(&path) {
        let _ = config.model_type();
        if let Ok(spec) = tcat_models::spec_of(&config) {
            // Whatever the mapping accepted must describe itself.
            let _ = format!("{spec:?}");
        }
    }
});
