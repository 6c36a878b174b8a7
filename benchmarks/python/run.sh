#!/usr/bin/env bash
# The Python API beside Torch-Pruning's on the same module, weights, data and MACs target, and
# the API's overhead over the CLI on the same work (benchmarks/python/compare_api.py).
#   benchmarks/python/run.sh                 # fmnist-resnet18 at MACs 0.5, 1 epoch on 10,000 samples
# Settings (environment): TARGET (MACs kept, default 0.5), FT_SAMPLES (default 10000).
# Result: benchmarks/python/results/compare.json; table: docs/benchmarks.md, section "python".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
mkdir -p "$here/results"
(cd "$root" && cargo build --release --quiet --example fmnist_split && "$CARGO_TARGET_DIR/release/examples/fmnist_split" 10 0 > "$here/results/split.json")
export RELPRUNE_BINARY="${RELPRUNE_BINARY:-$CARGO_TARGET_DIR/release/relprune}" RELPRUNE_THREADS=2
"$RELPRUNE_PYTHON" "$here/compare_api.py" --split "$here/results/split.json" --target "${TARGET:-0.5}" \
  --ft-samples "${FT_SAMPLES:-10000}" --out "$here/results/compare.json"
