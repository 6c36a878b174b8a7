#!/usr/bin/env bash
# relprune against Torch-Pruning on SmolLM2-135M at 0.9, 0.8 and 0.7 of the non-embedding
# parameters, same test tokens, no fine-tuning (issue "LLMs: optimised attribution ...").
#   benchmarks/llm/peers.sh    # SEQUENCES (8) test sequences of SEQ_LEN (512) tokens, REFS (4)
# 1. Torch-Pruning 1.6.1 (benchmarks/llm/tp_llm.py): MetaPruner as its LLM example configures it,
#    magnitude and Taylor importance, pruning the hidden size too (`example`) and only heads and
#    MLP channels (`inner`), each bisected to the non-embedding parameter goal;
# 2. relprune's criteria on MLP neurons, `compare --axis params` at the same goals (each point the
#    physically pruned model);
# 3. the optimised composite: `optimize` on the validation split (TRIALS trials, the language
#    model's default space, the same params axis), its winner's rules measured on test by
#    `compare` like the others.
# 4. `draws`: LRP-ε and Taylor again on other reference draws (`--seed` DRAW_SEEDS, default 1 2),
#    for the noise of relprune's rows (Torch-Pruning's rows do not depend on a draw: magnitude
#    reads weights only, Taylor the first 4 reference sequences).
# Settings: KEEPS (0.9 0.8 0.7), CRITERIA (relprune's), TRIALS (10), ONLY=tp,relprune,optimize,draws.
# Results: benchmarks/llm/results/peers-*.json; table: docs/benchmarks.md, section "llm".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
n="${SEQUENCES:-8}" len="${SEQ_LEN:-512}" refs="${REFS:-4}" keeps="${KEEPS:-0.9 0.8 0.7}"
criteria="${CRITERIA:-lrp-epsilon,taylor,gradient,wanda-sp,flap,weight,random}"
only() { [[ -z "${ONLY:-}" || ",$ONLY," == *",$1,"* ]]; }
test_text="$RELPRUNE_ENWIKI_DIR/test.txt" calib_text="$RELPRUNE_BROWN_DIR/reference.txt"

# The removal fractions of all parameters that leave each goal of the non-embedding ones.
rates="$("$RELPRUNE_PYTHON" "$here/non_embedding.py" "$RELPRUNE_SMOLLM2_DIR" --rates $keeps)"
echo "params axis rates (fractions of all parameters removed): $rates"

if only tp; then
  for keep in $keeps; do
    for scope in example inner; do
      ratio=()  # the magnitude run bisects the ratio; Taylor reuses it (the count ignores importance)
      for imp in magnitude taylor; do
        out="$res/peers-tp-$imp-$scope-$keep.json"
        "$RELPRUNE_PYTHON" "$here/tp_llm.py" "$RELPRUNE_SMOLLM2_DIR" "$test_text" "$calib_text" --keep "$keep" \
          --importance "$imp" --scope "$scope" "${ratio[@]}" --seq-len "$len" --sequences "$n" \
          --calib-sequences "$refs" --out "$out" 2> "${out%.json}.log"
        ratio=(--ratio "$("$RELPRUNE_PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["ratio"])' "$out")")
      done
    done
  done
fi
if only relprune; then
  "$bin" --json compare --model smollm2-135m --data enwiki --seq-len "$len" --component neurons --axis params \
    --criteria "$criteria" --rates "$rates" --refs-per-class "$refs" --attribution-batch 1 --eval-samples "$n" \
    --out "$res/peers-relprune" > "$res/peers-relprune.json"
fi
if only optimize; then
  "$bin" --json optimize --model smollm2-135m --data enwiki --seq-len "$len" --component neurons --axis params \
    --rates "$rates" --refs-per-class "$refs" --attribution-batch 1 --val-samples "$n" --trials "${TRIALS:-10}" \
    --objective-draws 1 --noise-draws 0 --pruner halving --report none --out "$res/peers-optimize" \
    > "$res/peers-optimize.json"
  "$bin" --json compare --model smollm2-135m --data enwiki --seq-len "$len" --component neurons --axis params \
    --criteria "file:$res/peers-optimize/best-rules.yaml" --rates "$rates" --refs-per-class "$refs" \
    --attribution-batch 1 --eval-samples "$n" --out "$res/peers-optimized" > "$res/peers-optimized.json"
fi
if only draws; then
  for seed in ${DRAW_SEEDS:-1 2}; do
    "$bin" --json compare --model smollm2-135m --data enwiki --seq-len "$len" --component neurons --axis params \
      --criteria lrp-epsilon,taylor --rates "$rates" --refs-per-class "$refs" --attribution-batch 1 \
      --eval-samples "$n" --seed "$seed" --out "$res/peers-draw$seed" > "$res/peers-draw$seed.json"
  done
fi
"$RELPRUNE_PYTHON" "$here/table.py" "$res"
