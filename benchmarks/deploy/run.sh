#!/usr/bin/env bash
# The model a user ships, side by side with Torch-Pruning at equal MACs: relprune's criteria
# (plain and cost-aware selection) and Torch-Pruning 1.6.1's importances, pruned from the same zoo
# weights to the same MACs ratio, then fine-tuned with one recipe (1 epoch, with and without
# distillation), all measured on the full Fashion-MNIST test split (10 classes) in one run.
#   benchmarks/deploy/run.sh                 # fmnist-resnet18, MACs 0.7 / 0.5 / 0.33
# Settings (environment): MODELS, TARGETS, CRITERIA, ORDERS, TP_IMPORTANCES, FT_SAMPLES (fine-tuning
# samples, default 2000 of the 55,000 train images to fit this 2-core machine; 0 = all).
# The table in docs/benchmarks.md came from these runs (results are cached per row, so each adds
# only its missing rows). ResNet-18's relprune rows (2026-12-01):
#   CRITERIA="lrp-epsilon taylor" ORDERS="relevance/none cost-aware/none" benchmarks/deploy/run.sh
#   CRITERIA="lrp-epsilon taylor gradient" ORDERS="relevance/mean" benchmarks/deploy/run.sh
# everything else (2026-12-02, after the fix that made pruned models stop sharing tensors with the
# unpruned one; every Torch-Pruning row rerun with relprune's MACs counter):
#   MODELS=fmnist-mobilenetv2 CRITERIA="lrp-epsilon taylor" ORDERS="relevance/none relevance/mean" benchmarks/deploy/run.sh
#   MODELS=fmnist-vit TARGETS="0.7 0.5 0.4" CRITERIA="lrp-epsilon taylor" ORDERS="relevance/none relevance/mean" benchmarks/deploy/run.sh
#   MODELS=fmnist-vgg16bn CRITERIA="lrp-epsilon taylor" ORDERS="relevance/mean" benchmarks/deploy/run.sh
#   MODELS=fmnist-resnet18 CRITERIA=" " ORDERS=" " benchmarks/deploy/run.sh      # Torch-Pruning rows only
#   MODELS="fmnist-mobilenetv2 fmnist-vgg16bn" CRITERIA="gradient" ORDERS="relevance/mean" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
#   MODELS=fmnist-vit TARGETS="0.7 0.5 0.4" CRITERIA="gradient" ORDERS="relevance/mean" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
# The ViT is pruned in its MLP neurons, which hold 63 % of its MACs: no neuron pruning goes below
# 0.368, so 0.4 stands in for 0.33 there.
# Results: benchmarks/deploy/results/*.json; table: docs/benchmarks.md, section "deploy".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
MODELS="${MODELS:-fmnist-resnet18}"
TARGETS="${TARGETS:-0.7 0.5 0.33}"
CRITERIA="${CRITERIA:-lrp-epsilon taylor gradient}"
# Orders: SELECTION/NORMALIZE pairs (`relevance/none` is the paper's raw global ranking).
ORDERS="${ORDERS:-relevance/none cost-aware/none relevance/mean}"
TP_IMPORTANCES="${TP_IMPORTANCES:-l1 l2 taylor lamp bn_scale}"
FT_SAMPLES="${FT_SAMPLES:-2000}"
BIN="${RELPRUNE_BIN:-$CARGO_TARGET_DIR/release/relprune}"
out="$here/results"
mkdir -p "$out"
(cd "$root" && cargo build --release --quiet --example fmnist_split && "$CARGO_TARGET_DIR/release/examples/fmnist_split" 10 0 > "$out/split.json")
for model in $MODELS; do
  for t in $TARGETS; do
    for c in $CRITERIA; do
      for order in $ORDERS; do
        sel="${order%/*}"; norm="${order#*/}"
        for ft in plain distill; do
          name="$sel"; [ "$norm" != none ] && name="$sel+$norm"
          f="$out/$model-$t-$c-$name-$ft.json"
          [ -f "$f" ] && continue
          extra=(); [ "$ft" = distill ] && extra=(--distill)
          echo "relprune $model macs=$t $c $sel $ft" >&2
          "$BIN" --threads 2 --json prune --model "$model" --target "macs=$t" --criterion "$c" --selection "$sel" --normalize "$norm" \
            --eval-samples 0 --finetune 1 --ft-samples "$FT_SAMPLES" "${extra[@]}" --latency-runs 20 \
            --out "$out/work-$model" > "$f.tmp" && mv "$f.tmp" "$f"
        done
      done
    done
    for imp in $TP_IMPORTANCES; do
      f="$out/$model-$t-tp-$imp.json"
      [ -f "$f" ] && continue
      echo "torch-pruning $model macs=$t $imp" >&2
      "$RELPRUNE_PYTHON" "$here/tp_deploy.py" "$root/zoo/$model" "$out/split.json" "$t" "$imp" \
        "$f.tmp" --ft-samples "$FT_SAMPLES" > /dev/null && mv "$f.tmp" "$f"
    done
  done
done
"$RELPRUNE_PYTHON" "$here/summarize.py" "$out" "$root/docs/benchmarks.md" "$FT_SAMPLES"
