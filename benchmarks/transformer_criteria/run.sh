#!/usr/bin/env bash
# benchmarks/transformer_criteria: fmnist-vit (10-class and 3-class tasks) and minilm-spam, attention
# heads and MLP neurons, every criterion and each softmax treatment of LRP-ε, on the test split.
# Writes results under out/bench/transformer_criteria and the section "Transformer criteria" of
# docs/benchmarks.md, plus the ViT-vs-CNN comparison at equal pruning rates.
#   benchmarks/transformer_criteria/run.sh                         full run
#   SEEDS="0" VIT_EVAL=500 SPAM_EVAL=100 benchmarks/transformer_criteria/run.sh   smoke run
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
bin="$CARGO_TARGET_DIR/release/relprune"
out="${OUT:-$root/out/bench/transformer_criteria}"
seeds="${SEEDS:-0 1 2 3 4}"
spam_seeds="${SPAM_SEEDS:-0 1 2 3 4}"
vit_eval="${VIT_EVAL:-2000}"
spam_eval="${SPAM_EVAL:-150}"
criteria="lrp-epsilon,lrp-epsilon:softmax=cp,lrp-epsilon:softmax=zplus,lrp-epsilon:softmax=zplus_bias,lrp-zplus,lrp-faithful,random,weight,activation,gradient,taylor,integrated-gradients"
run() { # model component classes seed eval_samples
  local dir="$out/$1/$2/classes$3/seed$4"
  [ -f "$dir/compare.json" ] && return 0   # resumable
  mkdir -p "$dir"
  echo "== $1 $2, $3 classes, seed $4" >&2
  "$bin" compare --model "$1" --component "$2" --classes "$3" --seed "$4" --eval-samples "$5" --split test \
    --criteria "$criteria" --out "$dir" > "$dir/log.txt" 2>&1 || { cat "$dir/log.txt" >&2; exit 1; }
}
for comp in heads neurons; do
  for task in 10 3; do for seed in $seeds; do run fmnist-vit $comp $task $seed "$vit_eval"; done; done
  for seed in $spam_seeds; do run minilm-spam $comp 2 $seed "$spam_eval"; done
done
"$RELPRUNE_PYTHON" "$root/benchmarks/summarize.py" transformers "$out" "$root/docs/benchmarks.md" \
  --title "Transformer criteria (heads and MLP neurons)" --command "benchmarks/transformer_criteria/run.sh" \
  --settings "fmnist-vit seeds: $seeds, $vit_eval test images; minilm-spam seeds: $spam_seeds, $spam_eval test mails; 10 references per class"
"$RELPRUNE_PYTHON" "$root/benchmarks/vit_vs_cnn.py" "$out" "$root/out/bench/cnn_criteria" "$root/docs/benchmarks.md"
