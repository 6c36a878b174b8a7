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
# and on a fresh machine (2026-12-02; from here on every row's result file is kept in git, and
# summarize.py keeps the doc's earlier rows whose files were lost):
#   MODELS=fmnist-resnet18 CRITERIA=" " ORDERS=" " benchmarks/deploy/run.sh      # Torch-Pruning rows, shared counter
#   MODELS=fmnist-resnet18 CRITERIA=optimized ORDERS="relevance/none cost-aware/none" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
#   MODELS="fmnist-vgg16bn fmnist-mobilenetv2" CRITERIA="lrp-epsilon taylor" ORDERS="cost-aware/none" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
#   MODELS=fmnist-vit TARGETS="0.7 0.5 0.4" CRITERIA="lrp-epsilon taylor" ORDERS="cost-aware/none" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
#   MODELS="fmnist-vit fmnist-vgg16bn fmnist-mobilenetv2" CRITERIA=optimized ORDERS="relevance/none cost-aware/none" TP_IMPORTANCES=" " benchmarks/deploy/run.sh   # (TARGETS="0.7 0.5 0.4" for the ViT)
#   MODELS="fmnist-vgg16bn fmnist-mobilenetv2" CRITERIA=gradient ORDERS="relevance/mean cost-aware/none" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
#   MODELS=fmnist-vit TARGETS="0.7 0.5 0.4" CRITERIA=gradient ORDERS="relevance/none cost-aware/none" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
#   MODELS=fmnist-resnet18 CRITERIA=gradient ORDERS="cost-aware/none" TP_IMPORTANCES=" " benchmarks/deploy/run.sh
# The default command's rows (2026-12-07, after `prune` learnt to choose its criterion; the
# `default0` rows came from the build before the recovery probe existed, which is --probe-steps 0):
#   MODELS="fmnist-resnet18 fmnist-vgg16bn fmnist-mobilenetv2" CRITERIA=" " ORDERS=" " TP_IMPORTANCES=" " benchmarks/deploy/run.sh
#   MODELS=fmnist-vit TARGETS="0.7 0.5 0.4" CRITERIA=" " ORDERS=" " TP_IMPORTANCES=" " benchmarks/deploy/run.sh
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
# The default command's rows (`prune --target` with no criterion options): `default`, and
# `default0` without the recovery probe (--probe-steps 0).
DEFAULT_ROWS="${DEFAULT_ROWS:-default default0}"
# The criterion `optimized` is the LRP composite `relprune optimize` finds for this model on its
# validation split, on the MACs axis (0 to 70 % of the MACs removed) with successive halving;
# the study runs once per model and its rules file is reused (its own per-layer normalisation
# comes with it, so its rows pass --normalize none).
OPT_TRIALS="${OPT_TRIALS:-40}"
OPT_VAL="${OPT_VAL:-2000}"
BIN="${RELPRUNE_BIN:-$CARGO_TARGET_DIR/release/relprune}"
out="$here/results"
mkdir -p "$out"
(cd "$root" && cargo build --release --quiet --example fmnist_split && "$CARGO_TARGET_DIR/release/examples/fmnist_split" 10 0 > "$out/split.json")
optimized_rules() {
  local d="$out/optimize-$1"
  if [ ! -f "$d/best-rules.yaml" ]; then
    echo "relprune optimize $1 (axis macs, $OPT_TRIALS trials)" >&2
    "$BIN" --threads 2 optimize --model "$1" --axis macs --rates 0:0.7:0.1 --pruner halving \
      --trials "$OPT_TRIALS" --val-samples "$OPT_VAL" --noise-draws 0 --report none --out "$d" > "$d.log" 2>&1
  fi
  echo "$d/best-rules.yaml"
}
for model in $MODELS; do
  for t in $TARGETS; do
    # The default command: no --criterion, --selection or --normalize (the criterion is chosen on
    # the validation split at the budget); its wall time is added to the row's file.
    # `default`: the default command; `default0`: the same with --probe-steps 0 (finalists
    # compared as pruned, without the recovery probe), to measure what the probe pays.
    for variant in $DEFAULT_ROWS; do
      for ft in plain distill; do
        f="$out/$model-$t-$variant-$ft.json"
        [ -f "$f" ] && continue
        extra=(); [ "$ft" = distill ] && extra=(--distill)
        [ "$variant" = default0 ] && extra+=(--probe-steps 0)
        echo "relprune $model macs=$t $variant $ft" >&2
        start=$(date +%s.%N)
        "$BIN" --threads 2 --json prune --model "$model" --target "macs=$t" \
          --eval-samples 0 --finetune 1 --ft-samples "$FT_SAMPLES" "${extra[@]}" --latency-runs 20 \
          --out "$out/work-$model" > "$f.tmp"
        "$RELPRUNE_PYTHON" -c 'import json, sys, time; d = json.load(open(sys.argv[1])); d["wall_seconds"] = time.time() - float(sys.argv[2]); json.dump(d, open(sys.argv[1], "w"))' \
          "$f.tmp" "$start" && mv "$f.tmp" "$f"
      done
    done
    for c in $CRITERIA; do
      crit="$c"
      [ "$c" = optimized ] && crit="file:$(optimized_rules "$model")"
      for order in $ORDERS; do
        sel="${order%/*}"; norm="${order#*/}"
        [ "$c" = optimized ] && norm=none
        for ft in plain distill; do
          name="$sel"; [ "$norm" != none ] && name="$sel+$norm"
          f="$out/$model-$t-$c-$name-$ft.json"
          [ -f "$f" ] && continue
          extra=(); [ "$ft" = distill ] && extra=(--distill)
          echo "relprune $model macs=$t $c $sel $ft" >&2
          "$BIN" --threads 2 --json prune --model "$model" --target "macs=$t" --criterion "$crit" --selection "$sel" --normalize "$norm" \
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
