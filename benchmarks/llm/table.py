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
print(
    f"| relprune | {ours['perplexity']:.3f} | {ours['accuracy']:.4f} | {ours['tokens']} | {ours['tokens_per_second']:.0f} |"
)
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
    print(
        f"| {comp}: criterion | " + " | ".join(f"ppl at {r:g}" for r in rates) + " | A_PR (next-token) | mean ln ppl |"
    )
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
    print(
        "| fine-tuning lr | perplexity unpruned | pruned | fine-tuned | val perplexity | time (s) | peak memory (GB) |"
    )
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

# Peers at equal non-embedding parameters (peers.sh).
TOTAL, EMBEDDING = 134_515_008, 49_152 * 576  # SmolLM2-135M: all parameters, the (tied) embedding
peer_rows: list[tuple[str, dict[float, tuple[float, float, float]]]] = []  # label, keep goal -> (kept, ppl, acc)
tp_files = sorted(res.glob("peers-tp-*.json"))
for imp in ("magnitude", "taylor"):
    for scope, what in (("example", "MLP channels + hidden size, as its example"), ("inner", "MLP channels")):
        cells = {}
        for f in tp_files:
            d = json.loads(f.read_text())
            if f.name.startswith(f"peers-tp-{imp}-{scope}-"):
                cells[d["keep_goal"]] = (d["keep"], d["perplexity"], d["accuracy"])
        if cells:
            peer_rows.append((f"Torch-Pruning {imp} ({what})", cells))
for tag, prefix in (("relprune", "relprune "), ("optimized", "relprune, the study's winner: ")):
    f = res / f"peers-{tag}.json"
    if not f.exists():
        continue
    for r in json.loads(f.read_text())["results"]:
        c = r["curve"]
        cells = {}
        for rate, kept, ppl, acc in zip(c["rates"][1:], c["kept"][1:], c["perplexities"][1:], c["accuracies"][1:]):
            keep = (kept * TOTAL - EMBEDDING) / (TOTAL - EMBEDDING)
            goal = round(1 - rate * TOTAL / (TOTAL - EMBEDDING), 2)
            cells[goal] = (keep, ppl, acc)
        name = r["criterion"] if tag == "relprune" else r["criterion"].split("/")[-1]
        peer_rows.append((prefix + name, cells))
if peer_rows:
    goals = sorted({g for _, cells in peer_rows for g in cells}, reverse=True)
    print()
    print(
        "| method (SmolLM2-135M, no fine-tuning) | "
        + " | ".join(f"ppl at {g:g} | acc. at {g:g}" for g in goals)
        + " | non-embedding params kept |"
    )
    print("|---|" + "---|" * (2 * len(goals) + 1))
    for label, cells in peer_rows:
        vals = []
        for g in goals:
            kept, ppl, acc = cells.get(g, (float("nan"), float("nan"), float("nan")))
            vals += [f"{ppl:.1f}", f"{acc:.4f}"]
        kept = " / ".join(f"{cells[g][0]:.3f}" for g in goals if g in cells)
        print(f"| {label} | " + " | ".join(vals) + f" | {kept} |")

# Recovery at one budget (peers_finetune.sh): the same fine-tune for every method.
fts = sorted(res.glob("peers-ft-*.json"))
fts = [f for f in fts if not f.name.endswith("-pruned.json")]
if fts:
    print()
    print(
        "| method (0.8 of non-embedding params) | non-embedding params kept | ppl pruned | ppl fine-tuned | "
        "acc. pruned | acc. fine-tuned | fine-tune time (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for f in fts:
        d = json.loads(f.read_text())
        tag = f.name[len("peers-ft-") : -len(".json")]
        label = "Torch-Pruning " + tag[3:] if tag.startswith("tp-") else "relprune " + tag
        ft = d["finetune"]
        kept = (d["after"]["parameters"] - EMBEDDING) / (TOTAL - EMBEDDING)
        print(
            f"| {label} | {kept:.3f} | {d['after']['next_token']['perplexity']:.1f} | "
            f"{ft['next_token']['perplexity']:.1f} | {d['after']['next_token']['accuracy']:.4f} | "
            f"{ft['next_token']['accuracy']:.4f} | {ft['training']['wall_seconds']:.0f} |"
        )

# Noise of relprune's rows over reference draws (peers.sh, `draws`): seed 0 is the main run.
draw_files = [res / "peers-relprune.json"] + sorted(res.glob("peers-draw*.json"))
if len(draw_files) > 1 and all(f.exists() for f in draw_files):
    by: dict[tuple[str, float], list[float]] = {}
    for f in draw_files:
        for r in json.loads(f.read_text())["results"]:
            if r["criterion"] not in ("lrp-epsilon", "taylor"):
                continue
            c = r["curve"]
            for rate, ppl in zip(c["rates"][1:], c["perplexities"][1:]):
                goal = round(1 - rate * TOTAL / (TOTAL - EMBEDDING), 2)
                by.setdefault((r["criterion"], goal), []).append(ppl)
    goals = sorted({g for _, g in by}, reverse=True)
    print()
    print(f"| relprune, {len(draw_files)} reference draws | " + " | ".join(f"ppl at {g:g}" for g in goals) + " |")
    print("|---|" + "---|" * len(goals))
    for crit in ("lrp-epsilon", "taylor"):
        cells = []
        for g in goals:
            v = by.get((crit, g), [])
            mean = sum(v) / len(v)
            se = (sum((x - mean) ** 2 for x in v) / (len(v) - 1) / len(v)) ** 0.5 if len(v) > 1 else float("nan")
            cells.append(f"{mean:.1f} ± {se:.1f} ({', '.join(f'{x:.1f}' for x in v)})")
        print(f"| {crit} | " + " | ".join(cells) + " |")
