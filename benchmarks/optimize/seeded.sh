#!/usr/bin/env bash
# Studies that start from the stand-alone criteria (LRP-ε, three LRP presets, gradient, Taylor:
# the space's `method` and its seeds) against the same studies before, on the same tasks.
#   benchmarks/optimize/seeded.sh     # CASES (fmnist-resnet18:filters), SEEDS (0 1 2 3), TRIALS (25)
# Each study as benchmarks/optimize/run.sh runs them (3-class task of the seed, TPE, successive
# halving, 3 reference draws, the whole validation split), then the winner on TEST (1000) test
# samples next to LRP-ε, gradient and Taylor. "Before" is the best of the first TRIALS trials of
# the kept benchmarks/optimize/results study of the same case and seed (its `first` curve).
# Writes benchmarks/optimize/results/seeded/*.json and prints the table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
bin="${RELPRUNE_BIN:-$CARGO_TARGET_DIR/release/relprune}"
out="${OUT:-$root/out/bench/optimize-seeded}" keep="$root/benchmarks/optimize/results/seeded"
trials="${TRIALS:-25}" test="${TEST:-1000}"
mkdir -p "$out" "$keep"
for seed in ${SEEDS:-0 1 2 3}; do
  for c in ${CASES:-fmnist-resnet18:filters}; do
    model="${c%%:*}" comp="${c##*:}" d="$out/$model/$comp/seed$seed"
    if [ ! -f "$d/summary.json" ]; then
      mkdir -p "$d"
      echo "== $(date +%T) $model $comp seed $seed" >&2
      "$bin" optimize --model "$model" --component "$comp" --classes 3 --seed "$seed" --trials "$trials" \
        --pruner halving --objective-draws 3 --noise-draws 0 --eval-samples "$test" \
        --report lrp-epsilon,gradient,taylor --storage "sqlite:$d/study.sqlite" --out "$d" > "$d/log.txt" 2>&1 \
        || { tail -20 "$d/log.txt" >&2; exit 1; }
    fi
    mkdir -p "$keep/$model/$comp/seed$seed"
    cp "$d/summary.json" "$d/test-compare.json" "$keep/$model/$comp/seed$seed/"
  done
done
"$RELPRUNE_PYTHON" - "$keep" "$root/benchmarks/optimize/results" <<'PY'
import json, pathlib, sys
keep, old = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
print("| case | seed | before: study (first 25), test | now: study, test | winner | LRP-ε | gradient | Taylor |"
      " best seed on validation | study's best on validation |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in sorted(keep.glob("*/*/seed*/summary.json")):
    d = s.parent
    model, comp, seed = d.parts[-3], d.parts[-2], d.name[4:]
    summary = json.loads(s.read_text())
    test = {r["criterion"]: r["curve"]["summary"]["a_pr"] for r in json.loads((d / "test-compare.json").read_text())["results"]}
    first = old / model / comp / d.name / "first" / "curve.json"
    before = json.loads(first.read_text())["results"][0]["curve"]["summary"]["a_pr"] if first.exists() else None
    best_trial = summary["best"]["trial"]
    winner = next((x["criterion"] for x in summary["seeds"] if x["trial"] == best_trial), "sampled")
    seed_best = max(summary["seeds"], key=lambda x: x["validation_a_pr"] or -1)
    # The winner's row is `lrp-optimised`, or the reported criterion it equals (a seed).
    winner_test = test.get("lrp-optimised", test.get(winner, float("nan")))
    print(f"| {model} {comp} | {seed} | {before if before is None else f'{before:.3f}'} | "
          f"{winner_test:.3f} | {winner} | {test['lrp-epsilon']:.3f} | "
          f"{test['gradient']:.3f} | {test['taylor']:.3f} | {seed_best['criterion']} "
          f"{seed_best['validation_a_pr']:.4f} | {summary['best']['validation_a_pr']:.4f} |")
PY
