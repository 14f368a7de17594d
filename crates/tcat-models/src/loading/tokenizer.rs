//! Loading a `tokenizer.json` for exact, unpadded, untruncated ids.

use std::path::Path;

use tcat_core::{Error, Result};
use tokenizers::Tokenizer;

/// Loads `path` with padding and truncation turned off: some checkpoints (all-MiniLM-L6-v2)
/// ship a tokenizer that pads to 128, which would change the ids and the mask.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let mut tok = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(tok)
}
