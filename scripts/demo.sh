#!/usr/bin/env bash
# The main job: sentence embeddings and their cosine similarities with the real
# all-MiniLM-L6-v2 weights, then a chat reply from SmolLM2-135M-Instruct (GGUF Q4_1). Fetches
# both models on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
MINILM="$(bash scripts/fetch_minilm.sh | tail -n 1)"
SMOLLM2="$(bash scripts/fetch_smollm2.sh | tail -n 1)"
cargo build --quiet --release -p tcat-cli
TCAT=target/release/tcat
echo "== tcat embed (all-MiniLM-L6-v2)"
"$TCAT" embed --model "$MINILM" \
    "A cat sits on the mat." \
    "A kitten is resting on a rug." \
    "The stock market fell sharply today." \
    "Shares dropped steeply this morning." \
    ""
echo
echo "== tcat generate --chat (SmolLM2-135M-Instruct, Q4_1)"
"$TCAT" generate --model "$SMOLLM2" --chat --prompt "${1:-What is the capital of France?}" --max-new-tokens 48
