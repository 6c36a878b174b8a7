#!/usr/bin/env bash
# benchmarks/cnn_criteria: every criterion on both zoo CNNs, 10-class and 3-class tasks,
# 5 seeds (reference draws / class subsets), test split; plus attribution and curve cost.
# Writes results under out/bench/cnn_criteria and the section "CNN criteria" of docs/benchmarks.md.
#   benchmarks/cnn_criteria/run.sh            full run (about 2-3 hours on 2 cores)
#   SEEDS="0" EVAL=500 benchmarks/cnn_criteria/run.sh   a quick smoke run
#   MODELS="fmnist-mobilenetv2" SECTION=cnn-mobilenetv2 benchmarks/cnn_criteria/run.sh   one model, its own section
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
bin="$CARGO_TARGET_DIR/release/relprune"
out="${OUT:-$root/out/bench/cnn_criteria}"
seeds="${SEEDS:-0 1 2 3 4}"
eval_samples="${EVAL:-2000}"
models="${MODELS:-fmnist-resnet18 fmnist-vgg16bn fmnist-mobilenetv2}"
section="${SECTION:-cnn}"
mkdir -p "$out"
# model | PyTorch architecture of the same weights (for the plain-PyTorch timing reference)
declare -A arch=(
  [fmnist-resnet18]="cifar_resnet18:width=16,in=1,size=28,classes=10"
  [fmnist-vgg16bn]="cifar_vgg16_bn:width=32,hidden=256,dropout=0.3,in=1,size=28,classes=10"
  [fmnist-mobilenetv2]="cifar_mobilenet_v2:width_mult=0.5,in=1,size=28,classes=10"
)
for model in $models; do
  for task in 10 3; do
    for seed in $seeds; do
      dir="$out/$model/classes$task/seed$seed"; mkdir -p "$dir"
      if [ -f "$dir/compare.json" ]; then continue; fi   # resumable
      echo "== $model, $task classes, seed $seed" >&2
      "$bin" compare --model "$model" --classes "$task" --seed "$seed" --eval-samples "$eval_samples" \
        --split test --out "$dir" > "$dir/log.txt" 2>&1 || { cat "$dir/log.txt" >&2; exit 1; }
    done
  done
  # Cost: the issue's sanity workload (10-class task, 100 references, 2000 test images, 20 rates).
  (cd "$root" && cargo run --release --quiet --example cost -- "$model" 10 2000) > "$out/$model/cost.json"
  "$RELPRUNE_PYTHON" "$root/benchmarks/cnn_criteria/torch_reference.py" "${arch[$model]}" \
    "$root/zoo/$model/model.safetensors" --eval 2000 --refs 100 > "$out/$model/torch_reference.json"
done
title="CNN criteria (conv filters)"; [ "$section" != cnn ] && title="$title: $models"
"$RELPRUNE_PYTHON" "$root/benchmarks/summarize.py" "$section" "$out" "$root/docs/benchmarks.md" --title "$title" \
  --command "benchmarks/cnn_criteria/run.sh" --settings "seeds: $seeds; eval samples: $eval_samples (test split); 10 references per class"
