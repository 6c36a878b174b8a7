#!/usr/bin/env bash
# Recovery of a pruned SmolLM2-135M by fine-tuning: Taylor removes 20 % of the MLP neurons, then
# one epoch of STEPS (30) AdamW steps of 2 × 512 Brown tokens, distilled from the unpruned model,
# at each learning rate of LRS (1e-4 2e-5); test perplexity on SEQUENCES (8) × 512 Wikipedia
# tokens before pruning, after it and after fine-tuning, validation on 8 sequences.
# Results: benchmarks/llm/results/finetune-LR.json; table: docs/benchmarks.md, section "llm".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
for lr in ${LRS:-1e-4 2e-5}; do
  /usr/bin/time -f "%e %M" -o "$res/finetune-$lr.time" \
    "$bin" --json prune --model smollm2-135m --data enwiki --seq-len 512 --component neurons --rate 0.2 \
    --criterion taylor --refs-per-class 4 --attribution-batch 1 --eval-samples "${SEQUENCES:-8}" --latency-runs 0 \
    --finetune 1 --ft-steps "${STEPS:-30}" --ft-batch 2 --ft-val-samples 8 --distill --ft-lr "$lr" \
    --out "$res/finetune-$lr" > "$res/finetune-$lr.json"
  rm -rf "$res/finetune-$lr"
done
