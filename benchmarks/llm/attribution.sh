#!/usr/bin/env bash
# Attribution speed and memory on SmolLM2-135M: relprune's LRP (LXT's AttnLRP configuration:
# gate=uniform, initial=logit, LRP-ε with ε = 1e-6) against LXT 2.1's efficient mode in
# transformers, one sequence per pass, same sequence length and count, in one run, 2 threads.
#   benchmarks/llm/attribution.sh     # SEQUENCES (default 2) sequences of SEQ_LEN (1024) tokens
# relprune's time is the curve report's scoring_seconds (the LRP passes and the per-unit sums,
# not the loading); LXT's is the loop of forward + backward passes. Peak memory is each
# process's maximum resident set (model and text included).
# Results: benchmarks/llm/results/attribution-*.json; table: docs/benchmarks.md, section "llm".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n="${SEQUENCES:-2}" len="${SEQ_LEN:-1024}"
for comp in neurons heads; do
  /usr/bin/time -f "%e %M" -o "$res/attribution-relprune-$comp.time" \
    "$bin" --json curve --model smollm2-135m --data enwiki --seq-len "$len" --component "$comp" \
    --criterion "lrp-epsilon:gate=uniform,initial=logit" --refs-per-class "$n" --attribution-batch 1 \
    --rates 0 --eval-samples 1 --out "$res/attribution-relprune-$comp" > "$res/attribution-relprune-$comp.json"
  rm -rf "$res/attribution-relprune-$comp"
done
"$RELPRUNE_PYTHON" "$here/lxt_attribution.py" "$RELPRUNE_SMOLLM2_DIR" "$RELPRUNE_ENWIKI_DIR/test.txt" \
  --seq-len "$len" --sequences "$n" --out "$res/attribution-lxt.json"
