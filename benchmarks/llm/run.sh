#!/usr/bin/env bash
# Decoder LLMs: SmolLM2-135M on the Wikipedia test split, relprune beside transformers on the
# same tokens (benchmarks/llm/hf_perplexity.py cuts them as relprune does).
#   benchmarks/llm/run.sh      # 8 sequences of 1024 tokens, CPU
# 1. unpruned: relprune perplexity vs transformers' loss-based perplexity, and forward tokens/s;
# 2. `prune --component neurons --rate 0.2` by each criterion, and `--component heads` (query
#    heads of grouped-query attention) by HEAD_CRITERIA; the written folder reloaded by
#    transformers (from_pretrained, trust_remote_code for per-layer widths) must give the
#    report's perplexity.
# Settings (environment): SEQUENCES (default 8), SEQ_LEN (1024), CRITERIA (default: lrp-epsilon
# weight activation gradient taylor random), HEAD_CRITERIA (lrp-epsilon weight taylor), RATE
# (0.2), REFS (reference sequences, 4).
# Results: benchmarks/llm/results/*.json; table: docs/benchmarks.md, section "llm".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n="${SEQUENCES:-8}" len="${SEQ_LEN:-1024}" rate="${RATE:-0.2}" refs="${REFS:-4}"
text="$RELPRUNE_ENWIKI_DIR/test.txt"
"$bin" --json perplexity --model smollm2-135m --data enwiki --split test --seq-len "$len" --sequences "$n" \
  > "$res/unpruned-relprune.json"
"$RELPRUNE_PYTHON" "$here/hf_perplexity.py" "$RELPRUNE_SMOLLM2_DIR" "$text" --seq-len "$len" --sequences "$n" \
  --out "$res/unpruned-transformers.json"
run() {  # component criterion
  local tag="$1-$2" out="$res/prune-$1-$2"
  /usr/bin/time -f "%e %M" -o "$res/prune-$tag.time" \
    "$bin" --json prune --model smollm2-135m --data enwiki --seq-len "$len" --component "$1" --rate "$rate" \
    --criterion "$2" --refs-per-class "$refs" --attribution-batch 1 --eval-samples "$n" --latency-runs 5 \
    --out "$out" > "$res/prune-$tag.log"
  "$RELPRUNE_PYTHON" "$here/hf_perplexity.py" "$out/model" "$text" --seq-len "$len" --sequences "$n" \
    --out "$res/prune-$tag-transformers.json"
  rm -f "$out/model.onnx"
}
for c in ${CRITERIA:-lrp-epsilon weight activation gradient taylor random}; do run neurons "$c"; done
for c in ${HEAD_CRITERIA:-lrp-epsilon weight taylor}; do run heads "$c"; done
"$RELPRUNE_PYTHON" "$here/table.py" "$res"
