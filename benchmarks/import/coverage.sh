#!/usr/bin/env bash
# benchmarks/import/coverage.sh: which timm and Hugging Face architectures relprune imports, reproduces and
# prunes (see coverage.py for the list and the checks). Writes benchmarks/import/results/coverage.json and the
# table in docs/import-onnx.md. Env: WORK (export cache, default out/bench/coverage), THREADS (default 2),
# ONLY=name,name (rerun those; the others keep their stored rows).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime >/dev/null
. "$root/scripts/env.sh"
cd "$root"
cargo build --release --quiet
exec "$RELPRUNE_PYTHON" benchmarks/import/coverage.py "$CARGO_TARGET_DIR/release/relprune"
