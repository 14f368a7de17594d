#!/usr/bin/env bash
# llama.cpp's `llama-bench` on the same GGUF as `tcat bench models` (the peer for the
# smollm2-q4_1-decode / smollm2-q4_1-prefill workloads, issue 14).
#
# llama.cpp is built from the source distribution of `llama-cpp-python` on PyPI (pinned below;
# it vendors llama.cpp under vendor/llama.cpp), into a cache OUTSIDE the source tree, once; later
# runs reuse the binary. Then it runs
#
#     llama-bench -m GGUF -p 128 -n 64 -t THREADS -r REPEATS
#
# pp128 is the prefill of a 128-token prompt and tg64 is 64 tokens generated from an empty
# context: the two numbers `tcat bench models` reports as smollm2-q4_1-prefill and
# smollm2-q4_1-decode.
#
# Usage: benches/llama_cpp_peer.sh [GGUF]
#   GGUF default: $TCAT_SMOLLM2, else the last line of scripts/fetch_smollm2.sh (which downloads
#   SmolLM2-135M-Instruct Q4_1 from PyPI into its own cache).
# Env:
#   THREADS      threads for llama-bench (default: every core, as `tcat bench models`)
#   REPEATS      llama-bench's -r (default 5, as `tcat bench models --repeats`)
#   LLAMA_CPP_CACHE  build cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/tcat/llama-cpp)
#   PYTHON       python with pip (default python3), used only for `pip download`
#   OUTPUT       llama-bench's output format: md (default), json, jsonl, csv
#   JOBS         parallel compile jobs (default: nproc)
#
# Needs: cmake (>= 3.14; `apt-get install -y cmake` on Debian), a C/C++ compiler (gcc/g++),
# make, tar, and python3 with pip to download the sdist. The build takes ~10 minutes on 2 cores.
set -euo pipefail

PKG="llama-cpp-python"
PKG_VERSION="0.3.36"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/.." && pwd)"
PYTHON="${PYTHON:-python3}"
THREADS="${THREADS:-$(nproc 2>/dev/null || echo 2)}"
REPEATS="${REPEATS:-5}"
OUTPUT="${OUTPUT:-md}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
CACHE="${LLAMA_CPP_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/tcat/llama-cpp}"
PREFIX="${CACHE}/${PKG}-${PKG_VERSION}"
BENCH="${PREFIX}/build/bin/llama-bench"

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "error: $1 is needed ($2)" >&2
        exit 1
    fi
}

if [ $# -gt 1 ]; then
    echo "usage: $0 [GGUF]" >&2
    exit 1
fi

if [ -n "${1:-}" ]; then
    GGUF="$1"
elif [ -n "${TCAT_SMOLLM2:-}" ]; then
    GGUF="${TCAT_SMOLLM2}"
else
    echo "no GGUF given and TCAT_SMOLLM2 unset: fetching SmolLM2 with scripts/fetch_smollm2.sh" >&2
    GGUF="$(PYTHON="${PYTHON}" bash "${ROOT}/scripts/fetch_smollm2.sh" | tail -n1)"
fi
if [ ! -f "${GGUF}" ]; then
    echo "error: GGUF file not found: ${GGUF}" >&2
    exit 1
fi

if [ ! -x "${BENCH}" ]; then
    need cmake "apt-get install -y cmake"
    need c++ "apt-get install -y g++"
    need cc "apt-get install -y gcc"
    need tar "apt-get install -y tar"
    "${PYTHON}" -m pip --version >/dev/null 2>&1 || {
        echo "error: ${PYTHON} -m pip is needed to download the ${PKG} sdist" >&2
        exit 1
    }
    mkdir -p "${CACHE}"
    WORK="$(mktemp -d "${CACHE}/.build.XXXXXX")"
    trap 'rm -rf "${WORK}"' EXIT
    echo "downloading the ${PKG}==${PKG_VERSION} source distribution from PyPI ..." >&2
    # --no-binary names the package only: `--no-binary :all:` makes pip build every build
    # dependency from source too, which hangs.
    "${PYTHON}" -m pip download --no-deps --disable-pip-version-check \
        --no-binary "${PKG}" --dest "${WORK}/sdist" "${PKG}==${PKG_VERSION}" >&2
    SDIST="$(ls "${WORK}"/sdist/*.tar.gz | head -n1)"
    tar -xzf "${SDIST}" -C "${WORK}"
    SRC="${WORK}/llama_cpp_python-${PKG_VERSION}/vendor/llama.cpp"
    [ -d "${SRC}" ] || SRC="$(ls -d "${WORK}"/*/vendor/llama.cpp | head -n1)"
    if [ ! -f "${SRC}/CMakeLists.txt" ]; then
        echo "error: no vendor/llama.cpp/CMakeLists.txt in ${SDIST}" >&2
        exit 1
    fi
    rm -rf "${PREFIX}"
    mkdir -p "${PREFIX}"
    cp -r "${SRC}" "${PREFIX}/llama.cpp"
    echo "building llama-bench (${JOBS} jobs) in ${PREFIX} ..." >&2
    # Native CPU build (GGML_NATIVE: the kernels this CPU has, as tcat picks its own at run
    # time), no GPU back-end, no network (curl), no tests, examples or server.
    cmake -S "${PREFIX}/llama.cpp" -B "${PREFIX}/build" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF \
        -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_TOOLS=ON >"${PREFIX}/build.log" 2>&1 || {
        tail -n 30 "${PREFIX}/build.log" >&2
        echo "error: cmake configuration failed; the whole log is ${PREFIX}/build.log" >&2
        exit 1
    }
    cmake --build "${PREFIX}/build" --target llama-bench -j "${JOBS}" >>"${PREFIX}/build.log" 2>&1 || {
        tail -n 30 "${PREFIX}/build.log" >&2
        echo "error: the build failed; the whole log is ${PREFIX}/build.log" >&2
        exit 1
    }
    if [ ! -x "${BENCH}" ]; then
        echo "error: the build finished without ${BENCH}" >&2
        exit 1
    fi
fi

echo "llama.cpp from ${PKG} ${PKG_VERSION}; ${THREADS} threads; ${GGUF##*/}" >&2
exec "${BENCH}" -m "${GGUF}" -p 128 -n 64 -t "${THREADS}" -r "${REPEATS}" -o "${OUTPUT}"
