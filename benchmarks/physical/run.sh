#!/usr/bin/env bash
# benchmarks/physical: genuinely smaller models. For the zoo models and ResNet-50 / ViT-B-16 (random
# init: latency does not depend on the weights) at rates 0.3 / 0.5 / 0.7: MACs, parameter and latency
# ratios of `relprune prune`, side by side with Torch-Pruning's magnitude pruner at the same rate, in
# one run on this machine; plus the speed-up of `curve --physical` over masked curves.
# Writes out/bench/physical and the section "Physical pruning" of docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
bin="$CARGO_TARGET_DIR/release/relprune"
out="${OUT:-$root/out/bench/physical}"
runs="${RUNS:-20}"
mkdir -p "$out"
# name | relprune --model | component | torch-pruning arch | weights
cases=(
  "fmnist-resnet18|fmnist-resnet18|filters|cifar_resnet18:width=16,in=1,size=28,classes=10|$root/zoo/fmnist-resnet18/model.safetensors"
  "fmnist-vgg16bn|fmnist-vgg16bn|filters|cifar_vgg16_bn:width=32,hidden=256,dropout=0.3,in=1,size=28,classes=10|$root/zoo/fmnist-vgg16bn/model.safetensors"
  "fmnist-vit|fmnist-vit|neurons|vit:size=28,patch=7,layers=6,heads=8,dim=64,mlp=256,in=1,classes=10|"
  "resnet50|resnet50|filters|resnet50|"
  "vit_b_16|vit_b_16|neurons|vit_b_16|"
  "mobilenet_v2|mobilenet_v2|filters|mobilenet_v2|"
  "efficientnet_b0|efficientnet_b0|filters|efficientnet_b0|"
)
# CASES="mobilenet_v2 efficientnet_b0" SECTION=physical-mobile runs only those and writes their own section.
only="${CASES:-}"
section="${SECTION:-physical}"
for c in "${cases[@]}"; do
  IFS='|' read -r name model comp tparch weights <<<"$c"
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then continue; fi
  for rate in 0.3 0.5 0.7; do
    d="$out/$name/rate$rate"
    mkdir -p "$d"
    if [ ! -f "$d/prune.json" ]; then
      echo "== $name $comp rate $rate" >&2
      # weight magnitude (L1), the same criterion Torch-Pruning uses below; the ranking is global
      data="auto"; [[ "$model" != fmnist-* ]] && data="none"   # random init: no data, no accuracy
      "$bin" --threads 2 prune --model "$model" --data "$data" --component "$comp" --criterion weight --rate "$rate" \
        --eval-samples 200 --refs-per-class 1 --latency-runs "$runs" --out "$d" > "$d/log.txt" 2>&1 || { cat "$d/log.txt" >&2; exit 1; }
    fi
    if [ ! -f "$d/torch_pruning.json" ]; then
      "$RELPRUNE_PYTHON" "$root/benchmarks/physical/tp_baseline.py" "$tparch" "$comp" "$rate" "$d/torch_pruning.json" \
        ${weights:+--weights "$weights"} --runs "$runs"
    fi
  done
done
# Masked vs. physical curves (same criterion, same task).
curve_models="fmnist-resnet18 fmnist-vit"; [ -n "$only" ] && curve_models=""
for m in $curve_models; do
  for mode in masked physical; do
    d="$out/curves/$m-$mode"
    [ -f "$d/curve.json" ] && continue
    extra=""; [ "$mode" = physical ] && extra="--physical"
    "$bin" --threads 2 curve --model "$m" --criterion lrp-epsilon --classes 3 --eval-samples 2000 $extra --out "$d" > /dev/null
  done
done
"$RELPRUNE_PYTHON" "$root/benchmarks/physical/summarize.py" "$out" "$root/docs/benchmarks.md" "$section" $only
