#!/usr/bin/env bash
# Every benchmark, one after the other (they must not share the 2 cores: latency figures and
# OpenMP-threaded kernels suffer badly from a second busy process). Each script is resumable.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for b in physical cnn_criteria transformer_criteria optimize; do
  echo "=== $b $(date -Is)" >&2
  "$root/benchmarks/$b/run.sh"
done
echo "=== done $(date -Is)" >&2
