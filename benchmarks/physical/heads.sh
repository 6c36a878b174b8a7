#!/usr/bin/env bash
# benchmarks/physical/heads.sh: physical removal of attention heads. For the zoo transformers and
# ViT-B-16 (random init: latency does not depend on the weights) at rates 0.3 / 0.5 / 0.7: parameter,
# MACs and latency ratios of `relprune prune --component heads` (LRP-z+ on the zoo models), the heads removed and the layers
# left without any head. Torch-Pruning is not run here: for torchvision's fused nn.MultiheadAttention
# its pruner narrows the embedding width and keeps every head, so there is no like-for-like row. Writes out/bench/physical-heads and the section "physical-heads" of
# docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
bin="$CARGO_TARGET_DIR/release/relprune"
out="${OUT:-$root/out/bench/physical-heads}"
runs="${RUNS:-20}"
mkdir -p "$out"
for model in fmnist-vit minilm-spam vit_b_16; do
  for rate in 0.3 0.5 0.7; do
    d="$out/$model/rate$rate"
    [ -f "$d/prune.json" ] && continue   # resumable
    mkdir -p "$d"
    echo "== $model heads rate $rate" >&2
    # The zoo models: LRP-z+, the best head criterion of benchmarks/transformer_criteria, 10 references
    # per class. ViT-B-16 has random weights and no data: weight magnitude (L1 of the head's slices).
    data="auto"; criterion="lrp-zplus"
    [[ "$model" == vit_b_16 ]] && { data="none"; criterion="weight"; }
    "$bin" --threads 2 prune --model "$model" --data "$data" --component heads --criterion "$criterion" --rate "$rate" \
      --eval-samples 500 --latency-runs "$runs" --out "$d" > "$d/log.txt" 2>&1 \
      || { cat "$d/log.txt" >&2; exit 1; }
  done
done
"$RELPRUNE_PYTHON" "$root/benchmarks/physical/summarize_heads.py" "$out" "$root/docs/benchmarks.md" "$runs"
