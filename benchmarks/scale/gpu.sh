#!/usr/bin/env bash
# benchmarks/scale on CUDA: the same side-by-side run as run.sh (relprune --device cuda against the
# PyTorch script on torch.device("cuda")), at a larger scale, when a GPU is present; otherwise it
# says it skipped and exits 0. Table: docs/benchmarks.md, section "scale-gpu".
# Settings as run.sh; defaults here: CLASSES 1000, TRAIN 10, VAL 10 (the paper's 10 references per
# class), N_EVAL 10000 for both models, REFS 10 (10,000 references for ResNet-50, 10,000 for ViT-B-16).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
if ! "$RELPRUNE_PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "benchmarks/scale/gpu.sh: skipped, libtorch sees no CUDA device on this machine" >&2
  exit 0
fi
export DEVICE=cuda WORK="${WORK:-$root/out/bench/scale-gpu}"
export CLASSES="${CLASSES:-1000}" TRAIN="${TRAIN:-10}" VAL="${VAL:-10}"
export N_EVAL_resnet50="${N_EVAL_resnet50:-10000}" N_EVAL_vit_b_16="${N_EVAL_vit_b_16:-10000}"
export REFS_resnet50="${REFS_resnet50:-10}" REFS_vit_b_16="${REFS_vit_b_16:-10}"
exec "$root/benchmarks/scale/run.sh"
