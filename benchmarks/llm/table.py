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

# Attribution speed and memory beside LXT (attribution.sh).
lxt_file = res / "attribution-lxt.json"
if lxt_file.exists():
    lxt = json.loads(lxt_file.read_text())
    print()
    print("| attribution, SmolLM2-135M | sequences × tokens | seconds | tokens/s | peak memory (GB) |")
    print("|---|---|---|---|---|")
    for comp in ("neurons", "heads"):
        d = json.loads((res / f"attribution-relprune-{comp}.json").read_text())
        secs = d["results"][0]["timings"]["scoring_seconds"]
        _, kb = (res / f"attribution-relprune-{comp}.time").read_text().split()
        tokens = lxt["sequences"] * lxt["seq_len"]
        print(
            f"| relprune LRP ({comp}) | {lxt['sequences']} × {lxt['seq_len']} | {secs:.1f} | {tokens / secs:.0f} | "
            f"{int(kb) / 1e6:.1f} |"
        )
    print(
        f"| {lxt['tool']} | {lxt['sequences']} × {lxt['seq_len']} | {lxt['seconds']:.1f} | "
        f"{lxt['tokens_per_second']:.0f} | {lxt['peak_memory_gb']:.1f} |"
    )

# Curves (curves.sh): perplexity at each rate, per criterion.
for comp in ("neurons", "heads"):
    f = res / f"curves-{comp}.json"
    if not f.exists():
        continue
    d = json.loads(f.read_text())
    rates = d["results"][0]["curve"]["rates"]
    print()
    print(f"| {comp}: criterion | " + " | ".join(f"ppl at {r:g}" for r in rates) + " | A_PR (next-token) | mean ln ppl |")
    print("|---|" + "---|" * (len(rates) + 2))
    for r in d["results"]:
        c = r["curve"]
        cells = []
        for i, p in enumerate(c["perplexities"]):
            filled = c.get("filled_from") is not None and i >= c["filled_from"]
            cells.append(f"{p:.1f}{'*' if filled else ''}")
        print(
            f"| {r['criterion']} | " + " | ".join(cells) + f" | {c['summary']['a_pr']:.4f} | "
            f"{c['summary']['mean_log_perplexity']:.3f} |"
        )

# Neurons, heads or both at equal parameters removed (joint.sh).
joint = [
    ("neurons", "neurons"),
    ("heads", "heads"),
    ("both-raw", "neurons+heads (raw, the default)"),
    ("both-raw-cost-aware", "neurons+heads, raw, cost-aware"),
    ("both-mean", "neurons+heads, per-layer mean"),
    ("both-mean-cost-aware", "neurons+heads, per-layer mean, cost-aware"),
]
found = [(tag, label, res / f"joint-{tag}.json") for tag, label in joint if (res / f"joint-{tag}.json").exists()]
if found:
    rates = max((json.loads(f.read_text())["results"][0]["curve"]["rates"] for _, _, f in found), key=len)
    print()
    print(
        "| components | criterion | "
        + " | ".join(f"ppl, {r:g} of params removed" for r in rates)
        + " | next-token accuracy (mean) |"
    )
    print("|---|---|" + "---|" * (len(rates) + 1))
    for _, label, f in found:
        for r in json.loads(f.read_text())["results"]:
            c = r["curve"]
            cells = [f"{p:.1f}" for p in c["perplexities"]] + ["–"] * (len(rates) - len(c["perplexities"]))
            print(f"| {label} | {r['criterion']} | " + " | ".join(cells) + f" | {c['summary']['a_pr']:.4f} |")

# Recovery (finetune.sh).
fts = sorted(res.glob("finetune-*.json"))
if fts:
    print()
    print("| fine-tuning lr | perplexity unpruned | pruned | fine-tuned | val perplexity | time (s) | peak memory (GB) |")
    print("|---|---|---|---|---|---|---|")
    for f in fts:
        d = json.loads(f.read_text())
        lr = f.name[len("finetune-") : -len(".json")]
        secs, kb = (res / f"finetune-{lr}.time").read_text().split()
        ft = d["finetune"]
        print(
            f"| {lr} | {d['before']['next_token']['perplexity']:.2f} | {d['after']['next_token']['perplexity']:.2f} | "
            f"{ft['next_token']['perplexity']:.2f} | {ft['training']['history'][-1]['val_perplexity']:.2f} | "
            f"{float(secs):.0f} | {int(kb) / 1e6:.1f} |"
        )
