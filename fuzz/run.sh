#!/usr/bin/env bash
# Builds the cargo-fuzz targets once and runs each for a bounded time (CI's fuzz stage; usable
# by hand). Installs the nightly toolchain and cargo-fuzz only when missing.
#   TCAT_FUZZ_SECONDS  upper bound in seconds per target (default 90)
#   TCAT_FUZZ_SEED     libFuzzer's seed (default 1): with a fixed seed and a fixed number of runs
#                      per target, CI explores the same inputs every time (a run cut short by the
#                      time bound explores a prefix of them)
#   TCAT_FUZZ_TARGETS  space-separated targets (default: all of `cargo fuzz list`)
# A crash, leak or timeout stops the run with a non-zero status; libFuzzer leaves the input in
# fuzz/artifacts/<target>/ (reproduce with `cargo +nightly fuzz run <target> <that file>`).
set -euo pipefail
cd "$(dirname "$0")"
if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
seconds=${TCAT_FUZZ_SECONDS:-90}
seed=${TCAT_FUZZ_SEED:-1}
# Runs per target: about 45 s each on the 2-core machine.
runs_for() {
    case "$1" in
        config) echo 100000 ;;
        gguf) echo 20000 ;;
        safetensors) echo 40000 ;;
        tokenizer) echo 3000 ;;
        *) echo 10000 ;;
    esac
}
targets=${TCAT_FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
# A fresh corpus from the fixtures every run: with the fixed seed, every run (CI's and a local
# one) explores the same inputs.
rm -rf corpus
bash seed.sh
# The fuzz build has its own target dir (fuzz/target), so the workspace build is untouched.
cargo +nightly fuzz build
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
    echo "-- fuzz $t ($(runs_for "$t") runs, seed $seed, at most ${seconds}s)"
    # Tokenizer runs slow down with the input's length: cap it (GGUF and safetensors seeds are
    # whole files, so those keep libFuzzer's default, the largest seed).
    max_len=()
    [ "$t" != tokenizer ] || max_len=(-max_len=4096)
    if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -seed="$seed" -runs="$(runs_for "$t")" -max_total_time="$seconds" -timeout=20 -print_final_stats=1 \
        "${max_len[@]}" \
        >"$log" 2>&1; then
        tail -n 80 "$log" >&2
        echo "fuzz target $t failed: the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
done
