#!/usr/bin/env bash
# CI stage: compile the whole workspace (all targets, the `tcat` binary included) with
# `--features cuda` on a machine without a GPU, then check that `--device cuda` fails cleanly there.
#
# Installs Debian's CUDA 11.8 toolkit (`nvidia-cuda-toolkit`) and the driver library `libcuda1`
# (the binary links libcuda.so.1) from the `non-free` component, and g++-11 explicitly: nvcc 11.8
# rejects Debian's gcc 12, and the toolkit's dependency on an old host compiler is also met by
# clang-14, with which Debian's nvcc then refuses to run unless told `-ccbin clang-14`.
# The machine's own APT sources are left alone: a private APT configuration (in a temporary
# directory) lists the same Debian mirrors with `contrib non-free non-free-firmware` added and
# keeps its own package lists.
#
# Environment:
#   CARGO_TARGET_DIR  where to build (default: target/cuda, a target dir of its own, so the
#                     feature change does not invalidate the normal build's fingerprints)
#   CUDA_COMPUTE_CAP  GPU architecture to compile kernels for (default 80: there is no GPU to ask)
#   TCAT_CI_APT=0     do not install packages (nvcc and libcuda must already be present)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
# cudarc reads the toolkit version from here instead of running nvcc (Debian bookworm ships 11.8).
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-11080}"
# candle-kernels compiles its .cu files through cudaforge, which by default uses half the cores
# (one nvcc at a time on a 2-core machine); CUDAFORGE_THREADS runs one nvcc per core.
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"

install_cuda() {
    local apt_dir
    apt_dir="$(mktemp -d)"
    mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial"
    : >"$apt_dir/sources.list"
    local extra="contrib non-free non-free-firmware" f
    # One-line sources: Debian `deb` lines that carry `main` get the other components appended.
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v extra="$extra" '/^[[:space:]]*deb(-src)?[[:space:]]/ && /debian/ && / main/ {
            n = split(extra, c, " ")
            for (i = 1; i <= n; i++) if ($0 !~ (" " c[i] "( |$)")) $0 = $0 " " c[i]
            print }' "$f" >>"$apt_dir/sources.list"
    done
    # deb822 sources: Debian stanzas that carry `main` get their Components line replaced.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v extra="$extra" 'BEGIN { RS = ""; ORS = "\n\n" }
            /URIs:[^\n]*debian/ && /Components:[^\n]*main/ {
                n = split($0, lines, "\n"); out = ""
                for (i = 1; i <= n; i++) {
                    if (lines[i] ~ /^Components:/) lines[i] = "Components: main " extra
                    out = out lines[i] "\n"
                }
                printf "%s\n", out }' "$f" >"$apt_dir/sources.list.d/$(basename "$f")"
    done
    cat >"$apt_dir/apt.conf" <<EOF
Dir::Etc::SourceList "$apt_dir/sources.list";
Dir::Etc::SourceParts "$apt_dir/sources.list.d";
Dir::State::Lists "$apt_dir/lists";
EOF
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env APT_CONFIG="$apt_dir/apt.conf" apt-get update -q
    $sudo env APT_CONFIG="$apt_dir/apt.conf" DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends nvidia-cuda-toolkit libcuda1 g++-11
    $sudo rm -rf "$apt_dir"
}

if [ "${TCAT_CI_APT:-1}" != 0 ]; then
    echo "== cuda: install toolkit"
    time install_cuda
fi
nvcc --version | tail -n 1

echo "== cuda: build (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
# This stage proves that everything compiles and links; nothing here runs on a GPU, so the
# dependencies are not optimised and nothing carries debug info (both roughly halve the time).
time CARGO_PROFILE_DEV_DEBUG=0 cargo build --workspace --all-targets --features cuda \
    --config 'profile.dev.package."*".opt-level=0'

echo "== cuda: --device cuda without a GPU fails cleanly"
out="$(mktemp -d)"
set +e
# Without RUST_BACKTRACE, so the error is the one line a user sees.
env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$CARGO_TARGET_DIR/debug/tcat" forward --device cuda \
    --model tests/fixtures/bert --ids 1,2 --out "$out/x.safetensors" >"$out/stdout" 2>"$out/stderr"
status=$?
set -e
cat "$out/stderr"
if [ "$status" -eq 0 ] && [ -s "$out/x.safetensors" ]; then
    echo "a CUDA device is present here: the forward pass ran on it"
elif [ "$status" -ne 1 ] || ! grep -q '^error:' "$out/stderr" || grep -q 'panicked' "$out/stderr" ||
    ! grep -qiE 'no CUDA|driver' "$out/stderr"; then
    echo "expected exit status 1 and an error: line saying there is no CUDA device, got status $status" >&2
    exit 1
fi
rm -rf "$out"
