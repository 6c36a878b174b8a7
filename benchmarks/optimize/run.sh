#!/usr/bin/env bash
# benchmarks/optimize: does optimising LRP pay, beyond the objective's noise?
#
# For each case (zoo model × component kind, 3-class task drawn by the seed) and seed, one study:
# TPE with the default space, successive halving over the coarse-first rate grid, the whole
# validation split as objective, TRIALS trials. The best of the first 25 (and of all) is then
# measured on the test split next to LRP-ε, the presets and every baseline (`optimize --report`,
# and `study rules --first 25` + `curve` for the smaller budget); the objective's own noise is
# measured on NOISE reference draws. Seeds are the outer loop, so a run stopped early still has
# every case at the same number of seeds. Then:
#   - transfer: seed 0's composite applied unchanged to the other seeds' class subsets and to the
#     10-class task, next to LRP-ε and the subsets' own composites;
#   - throughput: configurations per hour on fmnist-resnet18 with no pruner, the median pruner and
#     successive halving (same sampler, space and objective).
# Writes out/bench/optimize (results also kept in benchmarks/optimize/results) and the sections
# "optimize", "optimize-transfer" and "optimize-throughput" of docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
bin="${RELPRUNE_BIN:-$CARGO_TARGET_DIR/release/relprune}"
out="${OUT:-$root/out/bench/optimize}"
keep="$root/benchmarks/optimize/results"
report="lrp-epsilon,lrp-zplus,lrp-faithful,random,weight,activation,gradient,taylor,integrated-gradients"
seeds="${SEEDS:-0 1 2 3 4}"; trials="${TRIALS:-50}"; small="${SMALL:-25}"; test="${TEST:-1000}"; noise="${NOISE:-3}"; draws="${DRAWS:-3}"
cases="${CASES:-fmnist-resnet18:filters fmnist-vgg16bn:filters fmnist-mobilenetv2:filters fmnist-vit:neurons fmnist-vit:heads}"
mkdir -p "$out" "$keep"
echo "{\"trials\": $trials, \"small\": $small, \"test\": $test, \"noise\": $noise, \"draws\": $draws, \"seeds\": \"$seeds\", \"cases\": \"$cases\"}" > "$out/settings.json"

# Keeps the small result files of a finished run in git (studies and plots stay in out/).
keep_result() {
  local d="$1" k="$keep/${1#"$out"/}"
  mkdir -p "$k"
  for f in summary.json test-compare.json best-rules.yaml first.yaml first/curve.json; do
    [ -f "$d/$f" ] && { mkdir -p "$(dirname "$k/$f")"; cp "$d/$f" "$k/$f"; }
  done
  return 0
}

study() {  # model comp seed
  local model="$1" comp="$2" seed="$3" d="$out/$1/$2/seed$3"
  [ -f "$d/first/curve.json" ] && return 0   # resumable (and the study itself resumes)
  mkdir -p "$d"
  echo "== $(date +%T) $model $comp seed $seed" >&2
  "$bin" optimize --model "$model" --component "$comp" --classes 3 --seed "$seed" --trials "$trials" \
    --pruner halving --objective-draws "$draws" --noise-draws "$noise" --eval-samples "$test" --report "$report" \
    --storage "sqlite:$d/study.sqlite" --out "$d" > "$d/log.txt" 2>&1 || { tail -20 "$d/log.txt" >&2; exit 1; }
  local name; name=$("$RELPRUNE_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["study"])' "$d/summary.json")
  "$bin" study rules --storage "sqlite:$d/study.sqlite" --study "$name" --first "$small" --out "$d/first.yaml" >> "$d/log.txt" 2>&1
  "$bin" curve --model "$model" --component "$comp" --classes 3 --seed "$seed" --criterion lrp --rules "$d/first.yaml" \
    --split test --eval-samples "$test" --out "$d/first.tmp" >> "$d/log.txt" 2>&1
  rm -rf "$d/first" && mv "$d/first.tmp" "$d/first"
  keep_result "$d"
}

transfer() {  # model comp target (a seed, or 10class): seed 0's composite on another task
  local model="$1" comp="$2" target="$3" src="$out/$1/$2/seed0/best-rules.yaml" d="$out/transfer/$1/$2/$3" task crit
  [ -f "$src" ] && [ ! -f "$d/compare.json" ] || return 0
  if [ "$target" = 10class ]; then task=(--seed 0); crit="lrp-epsilon,file:$src"; else
    [ -f "$out/$model/$comp/seed$target/best-rules.yaml" ] || return 0
    task=(--classes 3 --seed "$target"); crit="file:$src"; fi
  echo "== $(date +%T) transfer $model $comp $target" >&2
  rm -rf "$d.tmp"; mkdir -p "$d.tmp"
  "$bin" compare --model "$model" --component "$comp" "${task[@]}" --criteria "$crit" --split test \
    --eval-samples "$test" --out "$d.tmp" > "$d.tmp/log.txt" 2>&1 || { tail -20 "$d.tmp/log.txt" >&2; exit 1; }
  rm -rf "$d" && mv "$d.tmp" "$d"
  mkdir -p "$keep/transfer/$model/$comp/$target" && cp "$d/compare.json" "$keep/transfer/$model/$comp/$target/"
}

throughput() {  # configurations per hour on fmnist-resnet18, seed 0, with each pruner
  local tp="$out/throughput" p n s e
  for p in none median halving; do
    [ -f "$tp/$p/wall.json" ] && continue
    n=$([ "$p" = none ] && echo 10 || echo 30)
    rm -rf "$tp/$p" && mkdir -p "$tp/$p"
    echo "== $(date +%T) throughput $p" >&2
    s=$(date +%s.%N)
    "$bin" optimize --model fmnist-resnet18 --classes 3 --seed 0 --trials "$n" --pruner "$p" --noise-draws 0 \
      --report none --out "$tp/$p" > "$tp/$p/log.txt" 2>&1
    e=$(date +%s.%N)
    echo "{\"pruner\": \"$p\", \"trials\": $n, \"seconds\": $("$RELPRUNE_PYTHON" -c "print($e - $s)")}" > "$tp/$p/wall.json"
    mkdir -p "$keep/throughput/$p" && cp "$tp/$p/wall.json" "$tp/$p/summary.json" "$keep/throughput/$p/"
  done
}

for seed in $seeds; do
  for c in $cases; do study "${c%%:*}" "${c##*:}" "$seed"; done
  for c in $cases; do
    if [ "$seed" = 0 ]; then transfer "${c%%:*}" "${c##*:}" 10class; else transfer "${c%%:*}" "${c##*:}" "$seed"; fi
  done
  [ "$seed" = 0 ] && throughput
done

cp "$out/settings.json" "$keep/settings.json"
"$RELPRUNE_PYTHON" "$root/benchmarks/optimize/summarize.py" "$keep" "$root/docs/benchmarks.md"
