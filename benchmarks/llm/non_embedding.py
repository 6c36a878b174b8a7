"""Budgets in non-embedding parameters, as relprune's `--axis params` rates or `--target params=`
fractions of all parameters, from a Hugging Face folder's safetensors (the tied embedding counted
once, as relprune counts it).

usage: non_embedding.py FOLDER --rates 0.9 0.8 0.7   # 0,r1,r2,r3: all-parameter fractions removed
       non_embedding.py FOLDER --target 0.8          # the all-parameter fraction kept
"""

from __future__ import annotations

import argparse
import json
import math

from safetensors import safe_open


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rates", type=float, nargs="+", metavar="KEEP")
    mode.add_argument("--target", type=float, metavar="KEEP")
    a = p.parse_args()
    with open(f"{a.folder}/config.json") as f:
        cfg = json.load(f)
    with safe_open(f"{a.folder}/model.safetensors", "pt") as f:
        total = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not a dict)
    body = total - cfg["vocab_size"] * cfg["hidden_size"]
    if a.rates:
        print(",".join(["0"] + [f"{(1 - k) * body / total:.6f}" for k in a.rates]))
    else:
        print(f"{1 - (1 - a.target) * body / total:.6f}")


if __name__ == "__main__":
    main()
