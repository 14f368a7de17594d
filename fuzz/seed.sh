#!/usr/bin/env bash
# Seeds fuzz/corpus/<target> from the committed fixtures (small files only; the corpus folders
# are not committed, libFuzzer grows them). Idempotent: files are named by content hash.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../tests/fixtures
add() { # add TARGET PREFIX_BYTE_OR_EMPTY FILE...
    local target=$1 prefix=$2; shift 2
    mkdir -p "corpus/$target"
    for f in "$@"; do
        [ -f "$f" ] || continue
        [ "$(stat -c %s "$f")" -le 200000 ] || continue
        local tmp; tmp=$(mktemp)
        { [ -z "$prefix" ] || printf "\\x$prefix"; cat "$f"; } > "$tmp"
        mv "$tmp" "corpus/$target/seed-$(sha1sum "$tmp" | cut -c1-16)"
    done
}
add config "" "$fixtures"/*/config.json
add safetensors 00 "$fixtures"/labse-like/2_Dense/model.safetensors "$fixtures"/bert/expected.safetensors \
    "$fixtures"/positions/deberta.safetensors
index=$(mktemp)
printf '%s' '{"metadata": {"total_size": 64}, "weight_map": {"embeddings.word_embeddings.weight": "model-00001-of-00002.safetensors", "encoder.layer.0.attention.self.query.weight": "model-00002-of-00002.safetensors", "pooler.dense.bias": "model-00001-of-00002.safetensors"}}' > "$index"
add safetensors 01 "$index"
rm -f "$index"
add gguf "" "$fixtures"/*-gguf/*.gguf
text=$(mktemp)
# Some prose, code and non-ASCII (the README's first 2 KB; long inputs make every run slow).
head -c 2048 ../README.md > "$text"
printf ' naïve café 東京 🙂 \t\r\n  <|endoftext|>' >> "$text"
add tokenizer 00 "$fixtures"/gpt2/config.json "$text"
rm -f "$text"
ids=$(mktemp)
# Little-endian ids 0..63 after the odd mode byte.
python3 - "$ids" <<'PY' 2>/dev/null || printf '\x00\x00\x00\x00\x01\x00\x00\x00' > "$ids"
import struct, sys
open(sys.argv[1], "wb").write(struct.pack("<64I", *range(64)))
PY
add tokenizer 01 "$ids"
rm -f "$ids"
