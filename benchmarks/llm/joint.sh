#!/usr/bin/env bash
# MLP neurons, attention heads, and both in one ranking (`--component neurons+heads`), at equal
# parameters removed, on SmolLM2-135M: `relprune compare --axis params`, every point the
# physically pruned model that removes at least that fraction of the parameters.
#   benchmarks/llm/joint.sh    # SEQUENCES (8) test sequences of SEQ_LEN (512) tokens, REFS (4)
# Settings: CRITERIA (lrp-epsilon,taylor), RATES (fractions of all parameters removed,
# 0,0.05,0.1,0.15,0.2; heads alone: HEAD_RATES, 0,0.05,0.1,0.15, as all of attention is 20 % of
# the parameters). Neurons and heads alone rank raw (their default); the joint set runs four
# times: least relevant first and cost-aware (least relevance per parameter saved first), each
# raw (its default) and with the per-layer mean. ONLY=tag,tag runs some of them (neurons,
# heads, both-raw, both-raw-cost-aware, both-mean, both-mean-cost-aware).
# Results: benchmarks/llm/results/joint-*.json (+ PNG plots); table: docs/benchmarks.md.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n="${SEQUENCES:-8}" len="${SEQ_LEN:-512}" refs="${REFS:-4}"
criteria="${CRITERIA:-lrp-epsilon,taylor}" rates="${RATES:-0,0.05,0.1,0.15,0.2}"
run() {  # tag component selection rates [options]
  [[ -z "${ONLY:-}" || ",$ONLY," == *",$1,"* ]] || return 0
  "$bin" --json compare --model smollm2-135m --data enwiki --seq-len "$len" --component "$2" ${5:-} \
    --axis params --selection "$3" --criteria "$criteria" --rates "$4" --refs-per-class "$refs" \
    --attribution-batch 1 --eval-samples "$n" --stop-at-chance --out "$res/joint-$1" > "$res/joint-$1.json"
}
run neurons neurons relevance "$rates"
run heads heads relevance "${HEAD_RATES:-0,0.05,0.1,0.15}"
run both-mean neurons+heads relevance "$rates" "--normalize mean"
run both-mean-cost-aware neurons+heads cost-aware "$rates" "--normalize mean"
run both-raw neurons+heads relevance "$rates"
run both-raw-cost-aware neurons+heads cost-aware "$rates"
"$RELPRUNE_PYTHON" "$here/table.py" "$res"
