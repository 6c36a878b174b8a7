#!/usr/bin/env bash
# benchmarks/import/folded_finetune.sh: fine-tuning after pruning on a CNN exported with BatchNorm
# folded and kept (see folded_finetune.py). Env: WORK (default out/bench/folded_finetune).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime >/dev/null
. "$root/scripts/env.sh"
cd "$root"
cargo build --release --quiet
exec "$RELPRUNE_PYTHON" benchmarks/import/folded_finetune.py "$CARGO_TARGET_DIR/release/relprune" \
  "${WORK:-$root/out/bench/folded_finetune}"
