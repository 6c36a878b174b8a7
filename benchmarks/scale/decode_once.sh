#!/usr/bin/env bash
# benchmarks/scale/decode_once: images/s of a 20-pass evaluation-style read of an image folder
# (20 × every batch, as a 20-rate accuracy curve reads its split; no model) with the decode-once
# cache and without it (every batch decoded afresh, as before the cache). The folder is a
# synthetic, scaled-down ImageNet validation layout: CLASSES × PER_CLASS random-noise 500×375
# JPEGs (default 100 × 10), generated once into $WORK/data. Prints hardware and settings with
# the figures. Usage: benchmarks/scale/decode_once.sh  (env: WORK CLASSES PER_CLASS PASSES BATCH)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$root/scripts/env.sh"
work="${WORK:-$root/out/bench/decode-once}"
cd "$root"
cargo build --release --quiet --example decode_once
"$CARGO_TARGET_DIR/release/examples/decode_once" "$work" "${CLASSES:-100}" "${PER_CLASS:-10}" "${PASSES:-20}" "${BATCH:-64}"
