#!/usr/bin/env bash
# `prune --optimize N` (a study for the budget, then prune with its winner) next to the default
# command, on the same zoo model, budget and full Fashion-MNIST test split, no fine-tuning:
#   benchmarks/deploy/optimize_prune.sh [MODEL] [TARGET] [TRIALS]   (default fmnist-resnet18 0.7 20)
# Prints one line per command: test accuracy, MACs ratio and wall time. Torch-Pruning's rows for
# the same cell are in docs/benchmarks.md, section "deploy" (benchmarks/deploy/run.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
MODEL="${1:-fmnist-resnet18}"; TARGET="${2:-0.7}"; TRIALS="${3:-20}"
BIN="${RELPRUNE_BIN:-$CARGO_TARGET_DIR/release/relprune}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
row() {
  local name="$1"; shift
  local start; start=$(date +%s.%N)
  "$BIN" --threads 2 --json prune --model "$MODEL" --target "macs=$TARGET" --eval-samples 0 --latency-runs 0 \
    --out "$work/$name" "$@" > "$work/$name.json"
  "$RELPRUNE_PYTHON" - "$work/$name.json" "$start" "$name" <<'PY'
import json, sys, time
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[3]:<22} accuracy {d['after']['accuracy']:.4f}  MACs {d['macs_ratio']:.3f}  "
      f"{time.time() - float(sys.argv[2]):.0f} s  {d['criterion']} ({d['normalize']}, {d['selection']})")
PY
}
echo "$MODEL, MACs $TARGET, full test split, no fine-tuning, 2 threads"
row default
row "optimize $TRIALS" --optimize "$TRIALS"
