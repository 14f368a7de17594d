#!/usr/bin/env bash
# The whole test suite on a fresh machine: fetch the real MiniLM, SmolLM2 and Gemma 3 270M weights
# (once, into ${TCAT_CACHE:-~/.cache/tcat}), then build and run every test of the workspace in one
# cargo invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
TCAT_MINILM_DIR="$(bash scripts/fetch_minilm.sh | tail -n 1)"
TCAT_SMOLLM2="$(bash scripts/fetch_smollm2.sh | tail -n 1)"
TCAT_GEMMA3="$(bash scripts/fetch_gemma3.sh | tail -n 1)"
export TCAT_MINILM_DIR TCAT_SMOLLM2 TCAT_GEMMA3
cargo test --workspace "$@"
