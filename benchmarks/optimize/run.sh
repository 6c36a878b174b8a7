#!/usr/bin/env bash
# benchmarks/optimize: for each zoo model and component kind, a fixed trial budget of TPE on the
# validation split, then the optimised composite's test-split A_PR next to LRP-ε, z+, the faithful
# preset and every baseline; 3 seeds (2 for minilm-spam). Plus throughput (trials per hour) with 1
# and 2 workers on this 2-core machine, one thread each, sharing one SQLite study.
# Writes out/bench/optimize and the sections "optimize" and "optimize-throughput" of docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
bin="$CARGO_TARGET_DIR/release/relprune"
out="${OUT:-$root/out/bench/optimize}"
report="lrp-epsilon,lrp-zplus,lrp-faithful,random,weight,activation,gradient,taylor,integrated-gradients"
# Budgets (overridable for a shorter run; the settings line of the report states what ran).
seeds="${SEEDS:-0 1 2}"; trials="${TRIALS:-20}"; val="${VAL:-500}"; test="${TEST:-1000}"
spam_seeds="${SPAM_SEEDS:-0 1}"; spam_trials="${SPAM_TRIALS:-10}"; spam_val="${SPAM_VAL:-100}"; spam_test="${SPAM_TEST:-150}"
# model | component | classes | seeds | trials | validation samples | test samples
cases=(
  "fmnist-resnet18|filters|3|$seeds|$trials|$val|$test"
  "fmnist-vgg16bn|filters|3|$seeds|$trials|$val|$test"
  "fmnist-vit|heads|3|$seeds|$trials|$val|$test"
  "fmnist-vit|neurons|3|$seeds|$trials|$val|$test"
  "minilm-spam|heads|2|$spam_seeds|$spam_trials|$spam_val|$spam_test"
  "minilm-spam|neurons|2|$spam_seeds|$spam_trials|$spam_val|$spam_test"
)
for c in "${cases[@]}"; do
  # (own names: the budget variables above are still needed for the report's settings line)
  IFS='|' read -r model comp classes c_seeds c_trials c_val c_test <<<"$c"
  for seed in $c_seeds; do
    d="$out/$model/$comp/seed$seed"
    [ -f "$d/test-compare.json" ] && continue   # resumable (and the study itself resumes)
    mkdir -p "$d"
    echo "== $model $comp seed $seed" >&2
    "$bin" optimize --model "$model" --component "$comp" --classes "$classes" --seed "$seed" --trials "$c_trials" \
      --val-samples "$c_val" --eval-samples "$c_test" --report "$report" --storage "sqlite:$d/study.sqlite" --out "$d" \
      > "$d/log.txt" 2>&1 || { cat "$d/log.txt" >&2; exit 1; }
  done
done
"$RELPRUNE_PYTHON" "$root/benchmarks/summarize.py" optimize "$out" "$root/docs/benchmarks.md" --file test-compare.json \
  --title "Optimised LRP vs. presets and baselines (test split)" --command "benchmarks/optimize/run.sh" \
  --settings "TPE with the default space, median pruner; $trials trials on $val validation images, reported on $test test images, seeds $seeds; minilm-spam: $spam_trials trials on $spam_val validation mails, $spam_test test mails, seeds $spam_seeds"

# Throughput: trials per hour, 1 worker vs. 2 concurrent workers (one thread each), no pruner.
tp="$out/throughput"
if [ ! -f "$tp/result.json" ]; then
  rm -rf "$tp" && mkdir -p "$tp"
  common=(optimize --model fmnist-resnet18 --classes 3 --val-samples 500 --report none --no-pruner --sampler random)
  t0=$(date +%s.%N)
  "$bin" --threads 1 "${common[@]}" --trials 8 --storage "sqlite:$tp/one.sqlite" --study one --out "$tp/one" > /dev/null
  t1=$(date +%s.%N)
  "$bin" --threads 1 "${common[@]}" --trials 16 --storage "sqlite:$tp/two.sqlite" --study two --out "$tp/two-a" > /dev/null &
  "$bin" --threads 1 "${common[@]}" --trials 16 --storage "sqlite:$tp/two.sqlite" --study two --out "$tp/two-b" > /dev/null
  wait
  t2=$(date +%s.%N)
  "$RELPRUNE_PYTHON" - "$tp" "$t0" "$t1" "$t2" <<'PY'
import json, sys, pathlib, platform, datetime, re
tp, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
one, two = 8 * 3600 / (t1 - t0), 16 * 3600 / (t2 - t1)
json.dump({"one_worker_trials_per_hour": one, "two_workers_trials_per_hour": two}, open(f"{tp}/result.json", "w"))
PY
fi
"$RELPRUNE_PYTHON" - "$tp/result.json" "$root/docs/benchmarks.md" <<'PY'
import json, sys, pathlib, re, datetime
r = json.load(open(sys.argv[1]))
doc = pathlib.Path(sys.argv[2])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "CPU")
body = f"""### Optimisation throughput

Command: `benchmarks/optimize/run.sh` (last step). Trials per hour on fmnist-resnet18 (filters, 3-class task,
500 validation images, 20 rates, random sampler, no pruner), each worker `--threads 1`, sharing one SQLite
study; {cpu}, 2 cores; measured {datetime.date.today().isoformat()}.

| workers | trials per hour |
|---|---|
| 1 | {r['one_worker_trials_per_hour']:.0f} |
| 2 | {r['two_workers_trials_per_hour']:.0f} |
"""
block = "<!-- BEGIN optimize-throughput -->\n" + body + "<!-- END optimize-throughput -->"
t = doc.read_text() if doc.exists() else "# Benchmarks\n"
t = re.sub(r"<!-- BEGIN optimize-throughput -->.*?<!-- END optimize-throughput -->", lambda _: block, t, flags=re.S) if "<!-- BEGIN optimize-throughput -->" in t else t.rstrip() + "\n\n" + block + "\n"
doc.write_text(t)
PY
