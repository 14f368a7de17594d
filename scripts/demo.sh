#!/usr/bin/env bash
# The main job: sentence embeddings of a few sentences with the real all-MiniLM-L6-v2 weights,
# and their cosine similarities. Fetches the model folder on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$(bash scripts/fetch_minilm.sh | tail -n 1)"
cargo run --quiet --release -p tcat-cli -- embed --model "$MODEL" \
    "A cat sits on the mat." \
    "A kitten is resting on a rug." \
    "The stock market fell sharply today." \
    "Shares dropped steeply this morning." \
    ""
