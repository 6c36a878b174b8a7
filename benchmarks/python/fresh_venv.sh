#!/usr/bin/env bash
# The README's Python example, as a new user runs it: a fresh venv holding only torch 2.13.0 and
# torchvision 0.28.0 from PyPI, then `pip install ./python`, then examples/python/prune_resnet18.py.
#   benchmarks/python/fresh_venv.sh          # prints pip's package list and the example's output
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0 torchvision==0.28.0
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$root/python"
"$tmp/venv/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -v -i nvidia
cd "$tmp"
time "$tmp/venv/bin/python" "$root/examples/python/prune_resnet18.py"
