# Sourced by every project script: where the cache lives and how cargo finds libtorch.
# Source it yourself (`. scripts/env.sh`) to run cargo by hand with the same settings.
RELPRUNE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export RELPRUNE_ROOT
if [ -z "${RELPRUNE_CACHE:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ] && [ -z "${HOME:-}" ]; then
  echo "relprune: HOME is not set, so there is no place for the build and the Python venv; set HOME, or RELPRUNE_CACHE to a writable folder" >&2
  return 2 2>/dev/null || exit 2
fi
export RELPRUNE_CACHE="${RELPRUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/relprune}"
export RELPRUNE_VENV="${RELPRUNE_VENV:-$RELPRUNE_CACHE/venv}"
export RELPRUNE_PYTHON="$RELPRUNE_VENV/bin/python"
# The committed zoo of this clone (a cached binary may have been built in another clone).
export RELPRUNE_ZOO="${RELPRUNE_ZOO:-$RELPRUNE_ROOT/zoo}"
# The official ONNX schema the build generates its protobuf types from (copied by setup.sh from
# the pinned `onnx` package).
export RELPRUNE_ONNX_PROTO="${RELPRUNE_ONNX_PROTO:-$RELPRUNE_CACHE/onnx/onnx.proto}"
export RELPRUNE_SPAM_DIR="${RELPRUNE_SPAM_DIR:-$RELPRUNE_CACHE/data/spam-assassin}"
# Decoder-LLM assets prepared by setup.sh from package registries (scripts/prepare_llm_assets.py):
# SmolLM2-135M-Instruct as a float32 HF folder, Wikipedia validation/test text, Brown reference text.
export RELPRUNE_SMOLLM2_DIR="${RELPRUNE_SMOLLM2_DIR:-$RELPRUNE_CACHE/models/smollm2-135m}"
export RELPRUNE_ENWIKI_DIR="${RELPRUNE_ENWIKI_DIR:-$RELPRUNE_CACHE/data/enwiki}"
export RELPRUNE_BROWN_DIR="${RELPRUNE_BROWN_DIR:-$RELPRUNE_CACHE/data/brown}"
# Builds live outside the clone so a fresh clone reuses them (CI caches this folder).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RELPRUNE_CACHE/target}"
if [ -n "${LIBTORCH:-}" ]; then
  # A user's own libtorch: torch-sys links against $LIBTORCH/lib, build.rs embeds it as rpath.
  unset LIBTORCH_USE_PYTORCH
else
  # libtorch from the venv's torch wheel; torch-sys runs `python` when VIRTUAL_ENV is set.
  export LIBTORCH_USE_PYTORCH=1
  export VIRTUAL_ENV="$RELPRUNE_VENV"
  export PATH="$RELPRUNE_VENV/bin:$PATH"
fi
