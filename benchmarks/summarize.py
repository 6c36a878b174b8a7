"""Summarise benchmark runs into a section of docs/benchmarks.md.

usage: summarize.py SECTION RESULTS_DIR DOC --command CMD --settings TEXT

Every RESULTS_DIR/<group...>/seed<N>/compare.json is one run of `relprune compare`; runs that
share <group...> are aggregated over seeds: mean ± standard error of A_PR, AUC and Top-PR per
criterion. RESULTS_DIR/<model>/cost.json files (examples/cost.rs) add the speed ratios. The
section between <!-- BEGIN SECTION --> and <!-- END SECTION --> in DOC is replaced.
"""
import argparse
import datetime
import json
import math
import pathlib
import platform
from collections import defaultdict

from docsection import write_section

p = argparse.ArgumentParser()
p.add_argument("section")
p.add_argument("results")
p.add_argument("doc")
p.add_argument("--command", required=True)
p.add_argument("--settings", required=True)
p.add_argument("--title", default=None)
p.add_argument("--file", default="compare.json", help="result file name to collect")
a = p.parse_args()

root = pathlib.Path(a.results)
groups = defaultdict(list)
for f in sorted(root.rglob(a.file)):
    rel = f.parent.relative_to(root)
    if not rel.name.startswith("seed"):
        continue
    groups[str(rel.parent)].append(json.loads(f.read_text()))


def mean_se(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


def fmt(ms, digits=3):
    m, se = ms
    return f"{m:.{digits}f}" if math.isnan(se) else f"{m:.{digits}f} ± {se:.{digits}f}"


lines = []
hardware = None
for group, runs in sorted(groups.items()):
    hardware = hardware or runs[0]["header"]["hardware"]
    by = defaultdict(lambda: defaultdict(list))
    unpruned = []
    for run in runs:
        for r in run["results"]:
            c = r["curve"]
            by[r["criterion"]]["a_pr"].append(c["summary"]["a_pr"])
            by[r["criterion"]]["auc"].append(c["summary"]["auc_trapezoid"])
            by[r["criterion"]]["top"].append(c["summary"]["top_pr_95"])
            by[r["criterion"]]["top1"].append(c["summary"]["top_pr_1pt"])
        unpruned.append(run["results"][0]["curve"]["unpruned_accuracy"])
        kind = run["results"][0]["component"]
        ncomp = run["results"][0]["components"]
        evals = run["header"]["eval_samples"]
    lines.append(f"#### {group} — {kind} ({ncomp} components), {len(runs)} seed(s), "
                 f"unpruned accuracy {fmt(mean_se(unpruned))}, {evals} evaluation samples per run")
    lines.append("")
    lines.append("| criterion | A_PR | AUC (trapezoid) | Top-PR (≥95 %) | highest rate within 1 pt |")
    lines.append("|---|---|---|---|---|")
    rows = sorted(by.items(), key=lambda kv: -sum(kv[1]["a_pr"]) / len(kv[1]["a_pr"]))
    for name, v in rows:
        lines.append(f"| {name} | {fmt(mean_se(v['a_pr']))} | {fmt(mean_se(v['auc']))} | "
                     f"{fmt(mean_se(v['top']), 2)} | {fmt(mean_se(v['top1']), 2)} |")
    lines.append("")

costs = sorted(root.glob("*/cost.json"))
if costs:
    lines.append("#### Cost of attribution and of a curve")
    lines.append("")
    lines.append("| model | references | LRP-ε s/reference | forward+backward s/reference | ratio | "
                 "LRP-ε curve (score + 20 rates) s | 20 plain evaluations s | curve / plain |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for f in costs:
        c = json.loads(f.read_text())
        lines.append(f"| {c['model']} | {c['references']} | {c['lrp_seconds_per_reference']:.5f} | "
                     f"{c['forward_backward_seconds_per_reference']:.5f} | {c['lrp_over_forward_backward']:.2f} | "
                     f"{c['lrp_epsilon_curve_seconds']:.1f} | {c['twenty_plain_evaluations_seconds']:.1f} | "
                     f"{c['curve_over_plain']:.2f} |")
    lines.append("")
    refs = [(f.parent.name, json.loads((f.parent / "torch_reference.json").read_text()))
            for f in costs if (f.parent / "torch_reference.json").is_file()]
    if refs:
        lines.append("Plain PyTorch eager on the same weights and machine (`benchmarks/cnn_criteria/torch_reference.py`, "
                     "2 threads, `no_grad`): 20 evaluation passes over the same number of images, i.e. the least a "
                     "plainly batched PyTorch script spends on a 20-rate curve, and a forward+backward per reference.")
        lines.append("")
        lines.append("| model | PyTorch 20 evaluations, batch 64 s | batch 256 s | relprune LRP-ε curve s | "
                     "relprune curve / best PyTorch | PyTorch forward+backward s/reference |")
        lines.append("|---|---|---|---|---|---|")
        for model, r in refs:
            c = json.loads((root / model / "cost.json").read_text())
            best = min(r["twenty_evaluations_batch64_seconds"], r["twenty_evaluations_batch256_seconds"])
            lines.append(f"| {model} | {r['twenty_evaluations_batch64_seconds']:.1f} | "
                         f"{r['twenty_evaluations_batch256_seconds']:.1f} | {c['lrp_epsilon_curve_seconds']:.1f} | "
                         f"{c['lrp_epsilon_curve_seconds'] / best:.2f} | {r['forward_backward_seconds_per_reference']:.5f} |")
        lines.append("")

title = a.title or a.section
header = [
    f"### {title}",
    "",
    f"Command: `{a.command}` — {a.settings}.",
    f"Hardware: {hardware or platform.processor()}; measured {datetime.date.today().isoformat()}.",
    "A_PR is the mean accuracy over the rate grid 0, 0.05, …, 0.95 (0..1 scale); AUC the trapezoidal area "
    "over the same grid (what the paper's released code printed); Top-PR the highest rate up to which accuracy stays "
    "≥ 95 % of the unpruned accuracy. Mean ± standard error over seeds.",
    "",
]
body = "\n".join(header + lines)
write_section(a.doc, a.section, body)
