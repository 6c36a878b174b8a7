#!/usr/bin/env bash
# Recovery at 0.8 of the non-embedding parameters: the same short fine-tune for Torch-Pruning's
# best row and relprune's, run by relprune's trainer on each pruned model (same tokens, steps,
# batch and learning rate; no distillation, because the trainer distils from the model it was
# given, which for Torch-Pruning's folder is already pruned).
#   benchmarks/llm/peers_finetune.sh   # after peers.sh (it reads the optimised rules there)
# Settings: KEEP (0.8), STEPS (30 AdamW steps of 2 × SEQ_LEN Brown tokens), LR (1e-4),
# CRITERIA (relprune rows: taylor, and the optimised rules when peers.sh wrote them),
# TP (Torch-Pruning importance and scope: "taylor inner").
# Results: benchmarks/llm/results/peers-ft-*.json; table: docs/benchmarks.md, section "llm".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n="${SEQUENCES:-8}" len="${SEQ_LEN:-512}" refs="${REFS:-4}" keep="${KEEP:-0.8}"
ft=(--finetune 1 --ft-steps "${STEPS:-30}" --ft-batch 2 --ft-lr "${LR:-1e-4}" --ft-val-samples "$n")
common=(--data enwiki --seq-len "$len" --eval-samples "$n" --latency-runs 0)
# The fraction of all parameters that keeps `keep` of the non-embedding ones.
target="$("$RELPRUNE_PYTHON" "$here/non_embedding.py" "$RELPRUNE_SMOLLM2_DIR" --target "$keep")"

read -r imp scope <<< "${TP:-taylor inner}"
tp_dir="$res/peers-ft-tp-$imp-$scope"
"$RELPRUNE_PYTHON" "$here/tp_llm.py" "$RELPRUNE_SMOLLM2_DIR" "$RELPRUNE_ENWIKI_DIR/test.txt" \
  "$RELPRUNE_BROWN_DIR/reference.txt" --keep "$keep" --importance "$imp" --scope "$scope" --seq-len "$len" \
  --sequences "$n" --calib-sequences "$refs" --verify --save "$tp_dir-model" --out "$tp_dir-pruned.json"
"$bin" --json prune --model "hf:$tp_dir-model" "${common[@]}" --component neurons --rate 0 "${ft[@]}" \
  --out "$tp_dir" > "$res/peers-ft-tp-$imp-$scope.json"
rm -rf "$tp_dir-model" "$tp_dir/model.onnx"

criteria="${CRITERIA:-taylor}"
# The study's winner, unless it is one of the stand-alone criteria already listed (RULES=0 skips it).
rules="$res/peers-optimize/best-rules.yaml"
[[ "${RULES:-1}" == 1 && -f "$rules" ]] && ! grep -qxE "criterion: (${criteria// /|})" "$rules" && criteria+=" file:$rules"
for c in $criteria; do
  tag="$(basename "${c%.yaml}")"
  "$bin" --json prune --model smollm2-135m "${common[@]}" --component neurons --target "params=$target" \
    --criterion "$c" --refs-per-class "$refs" --attribution-batch 1 "${ft[@]}" --out "$res/peers-ft-$tag" \
    > "$res/peers-ft-$tag.json"
  rm -f "$res/peers-ft-$tag/model.onnx"
done
"$RELPRUNE_PYTHON" "$here/table.py" "$res"
