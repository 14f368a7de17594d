//! Tokenizer input: the GPT-2 fixture's `tokenizer.json` encoding arbitrary UTF-8 and decoding
//! arbitrary id lists (ids beyond the vocabulary included).
//!
//! The first byte chooses: even, the rest (lossily UTF-8) is encoded, with and without special
//! tokens, and the ids decoded back; odd, the rest is read as little-endian u32 ids and decoded,
//! skipping special tokens or not.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokenizers::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/gpt2/tokenizer.json");
        Tokenizer::from_file(path).expect("the gpt2 fixture's tokenizer.json")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let tok = tokenizer();
    if mode % 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        for special in [false, true] {
            if let Ok(encoding) = tok.encode(text.as_ref(), special) {
                let _ = tok.decode(encoding.get_ids(), !special);
            }
        }
    } else {
        let vocab = tok.get_vocab_size(true) as u32;
        let ids: Vec<u32> = rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            // Mostly ids in range (so real pieces get joined), some far outside it.
            .map(|id| if id & 0x8000_0000 == 0 { id % (vocab + 16) } else { id })
            .collect();
        let _ = tok.decode(&ids, mode & 2 == 0);
        let _ = tok.decode_batch(&[&ids, &ids[ids.len() / 2..]], true);
    }
});
