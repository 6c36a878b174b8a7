# Sourced by every benchmarks/llm script: setup (a no-op once done), the environment, 2 threads,
# and `here`, `root`, `bin` (relprune) and `res` (the results folder, created).
here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
export RELPRUNE_THREADS=2
bin="$CARGO_TARGET_DIR/release/relprune"
res="$here/results"
mkdir -p "$res"
