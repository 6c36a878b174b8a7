"""Markdown tables of benchmarks/llm/results (see run.sh)."""

from __future__ import annotations

import json
import pathlib
import sys

res = pathlib.Path(sys.argv[1])
ours = json.loads((res / "unpruned-relprune.json").read_text())
theirs = json.loads((res / "unpruned-transformers.json").read_text())
print("| SmolLM2-135M, unpruned | perplexity | next-token accuracy | tokens | forward tokens/s |")
print("|---|---|---|---|---|")
print(f"| relprune | {ours['perplexity']:.3f} | {ours['accuracy']:.4f} | {ours['tokens']} | {ours['tokens_per_second']:.0f} |")
print(
    f"| transformers {theirs['transformers']} | {theirs['perplexity']:.3f} | {theirs['accuracy']:.4f} | "
    f"{theirs['tokens']} | {theirs['tokens_per_second']:.0f} |"
)
print()
print(
    "| component | criterion | parameters (M) | perplexity (report) | perplexity (transformers, reloaded) | "
    "next-token accuracy | tokens/s (batch 1) | prune time (s) | peak memory (GB) |"
)
print("|---|---|---|---|---|---|---|---|---|")
for p in sorted(res.glob("prune-*-transformers.json")):
    tag = p.name[len("prune-") : -len("-transformers.json")]
    component, criterion = tag.split("-", 1)
    report = json.loads((res / f"prune-{tag}" / "prune.json").read_text())
    hf = json.loads(p.read_text())
    secs, kb = (res / f"prune-{tag}.time").read_text().split()
    nt = report["after"]["next_token"]
    print(
        f"| {component} | {criterion} | {report['after']['parameters'] / 1e6:.1f} | {nt['perplexity']:.3f} | "
        f"{hf['perplexity']:.3f} | {nt['accuracy']:.4f} | {report['after']['tokens_per_second']:.0f} | "
        f"{float(secs):.0f} | {int(kb) / 1e6:.1f} |"
    )
