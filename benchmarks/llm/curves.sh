#!/usr/bin/env bash
# Perplexity and next-token accuracy against the pruning rate on SmolLM2-135M, every criterion on
# the same references and Wikipedia test sequences (`relprune compare`), for MLP neurons and for
# attention heads; the curves stop once a model is broken (100x the unpruned perplexity).
#   benchmarks/llm/curves.sh    # SEQUENCES (8) test sequences of SEQ_LEN (512) tokens, REFS (4)
# Settings: CRITERIA (lrp-epsilon,taylor,gradient,weight,activation,wanda-sp,flap,random), RATES
# (0,0.1,0.2,0.3,0.4,0.5).
# Results: benchmarks/llm/results/curves-{neurons,heads}.json (+ PNG plots); table: docs/benchmarks.md.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n="${SEQUENCES:-8}" len="${SEQ_LEN:-512}" refs="${REFS:-4}"
criteria="${CRITERIA:-lrp-epsilon,taylor,gradient,weight,activation,wanda-sp,flap,random}"
for comp in neurons heads; do
  "$bin" --json compare --model smollm2-135m --data enwiki --seq-len "$len" --component "$comp" \
    --criteria "$criteria" --rates "${RATES:-0,0.1,0.2,0.3,0.4,0.5}" --refs-per-class "$refs" \
    --attribution-batch 1 --eval-samples "$n" --stop-at-chance --out "$res/curves-$comp" > "$res/curves-$comp.json"
done
