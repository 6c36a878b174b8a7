#!/usr/bin/env python3
"""Tables of benchmarks/optimize/run.sh, from the results kept in benchmarks/optimize/results.

Usage: summarize.py RESULTS_DIR DOC.md

Writes the sections `optimize`, `optimize-transfer` and `optimize-throughput` of DOC.md (between
their BEGIN / END markers). Every figure is a mean over seeds ± its standard error; a gain is the
mean of the per-seed differences (paired by seed: same classes, references and test samples).
"""
import datetime
import json
import math
import os
import pathlib
import platform
import re
import sys

OPT = "lrp-optimised"


def mean_se(v):
    v = [x for x in v if x is not None]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return m, sd / math.sqrt(len(v))


def fmt(m, se, d=3):
    if math.isnan(m):
        return "—"
    return f"{m:.{d}f}" if math.isnan(se) else f"{m:.{d}f} ± {se:.{d}f}"


def a_pr(results):
    """criterion name → test A_PR (the optimised composite under its label)."""
    out = {}
    for r in results:
        name = r["criterion"]
        if name == "lrp" and r.get("spec", {}).get("label"):
            name = r["spec"]["label"]
        out[name] = r["curve"]["summary"]["a_pr"]
    return out


def load(path):
    return json.load(open(path)) if path.is_file() else None


def cpu():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "CPU"


def replace(doc, key, body):
    block = f"<!-- BEGIN {key} -->\n{body.rstrip()}\n<!-- END {key} -->"
    t = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pat = re.compile(rf"<!-- BEGIN {re.escape(key)} -->.*?<!-- END {re.escape(key)} -->", re.S)
    t = pat.sub(lambda _: block, t) if pat.search(t) else t.rstrip() + "\n\n" + block + "\n"
    doc.write_text(t)


def main():
    res, doc = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    settings = load(res / "settings.json") or {}
    small = settings.get("small", 25)
    trials = settings.get("trials", 50)
    today = datetime.date.today().isoformat()
    hw = f"{cpu()}, {os.cpu_count()} cores, libtorch threads = cores"

    cases = []
    for comp_dir in sorted(p for p in res.glob("*/*") if p.is_dir() and p.parent.name not in ("transfer", "throughput")):
        seeds = []
        for sd in sorted(comp_dir.glob("seed*"), key=lambda p: int(p.name[4:])):
            s, tc, first = load(sd / "summary.json"), load(sd / "test-compare.json"), load(sd / "first/curve.json")
            if not (s and tc and first):
                continue
            scores = a_pr(tc["results"])
            scores[f"{OPT}@{small}"] = first["results"][0]["curve"]["summary"]["a_pr"]
            trial_list = s["trials"]
            base = next(t for t in trial_list if t["number"] == 0)
            best_small = max(
                (t["value"] for t in trial_list if t["number"] < small and t["state"] == "complete"), default=None
            )
            seeds.append({
                "seed": int(sd.name[4:]), "scores": scores, "noise": s.get("noise"),
                "val_eps": base["value"], "val_best": s["best"]["validation_a_pr"], "val_best_small": best_small,
                "complete": sum(t["state"] == "complete" for t in trial_list),
                "pruned": sum(t["state"] == "pruned" for t in trial_list),
                "unpruned": tc["results"][0]["curve"]["unpruned_accuracy"],
            })
        if seeds:
            cases.append((f"{comp_dir.parent.name}/{comp_dir.name}", seeds))

    lines = [
        "### Does optimising LRP pay? Optimised composite vs. LRP-ε, presets and baselines (test split)",
        "",
        f"Command: `benchmarks/optimize/run.sh`. Per case and seed, one study: TPE over the default space, "
        f"successive halving over the coarse-first rate grid, the whole validation split (3-class task drawn by the "
        f"seed: about 1,500 images) as objective, averaged over {settings.get('draws', 1)} reference draws, {trials} trials; `{OPT}@{small}` is the best of the study's first "
        f"{small} trials (`relprune study rules --first {small}`), `{OPT}` the best of all {trials}. Reported on "
        f"{settings.get('test', 1000)} test images; the objective's noise on {settings.get('noise', 3)} held-out reference draws (draws the study did "
        f"not optimise on). "
        f"{hw}; measured {today}.",
        "",
        "A_PR: mean test accuracy over the rates 0, 0.05, …, 0.95. Mean ± standard error over seeds; gains are paired "
        "by seed. *Best other*: the best of LRP-ε, z+, the faithful preset and every baseline. "
        "*Validation noise*: the standard deviation of LRP-ε's validation A_PR over reference draws (mean over seeds), "
        "next to the gain the study found on validation (same draws, paired).",
        "",
        f"| case | seeds | LRP-ε | optimised@{small} | optimised@{trials} | gain over LRP-ε | best other | optimised − best other | validation: LRP-ε sd over draws | validation gain ± se |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    details = []
    for name, seeds in cases:
        crits = sorted({c for s in seeds for c in s["scores"]})
        per = {c: [s["scores"].get(c) for s in seeds] for c in crits}
        others = [c for c in crits if not c.startswith(OPT)]
        best_other = max(others, key=lambda c: mean_se(per[c])[0])
        gain = mean_se([s["scores"][OPT] - s["scores"]["lrp-epsilon"] for s in seeds])
        vs = mean_se([s["scores"][OPT] - s["scores"][best_other] for s in seeds])
        noise = [s["noise"] for s in seeds if s["noise"]]
        sd = mean_se([n["baseline_sd"] for n in noise])[0]
        vgain = mean_se([n["gain"] for n in noise])
        mark = " ✓" if not math.isnan(vs[1]) and vs[0] > vs[1] else ""
        lines.append(
            f"| {name} | {len(seeds)} | {fmt(*mean_se(per['lrp-epsilon']))} | {fmt(*mean_se(per[f'{OPT}@{small}']))} | "
            f"{fmt(*mean_se(per[OPT]))} | {gain[0]:+.3f} ± {gain[1]:.3f} | {best_other} {fmt(*mean_se(per[best_other]))} | "
            f"{vs[0]:+.3f} ± {vs[1]:.3f}{mark} | {sd:.3f} | {vgain[0]:+.3f} ± {vgain[1]:.3f} |"
        )
        details += [
            "",
            f"#### {name} — {len(seeds)} seed(s) ({', '.join(str(s['seed']) for s in seeds)}), unpruned test accuracy "
            f"{fmt(*mean_se([s['unpruned'] for s in seeds]))}",
            "",
            "| criterion | test A_PR | per seed |",
            "|---|---|---|",
        ]
        for c in sorted(crits, key=lambda c: -mean_se(per[c])[0]):
            details.append(
                f"| {c} | {fmt(*mean_se(per[c]))} | {' '.join('—' if v is None else f'{v:.3f}' for v in per[c])} |"
            )
        details.append("")
        details.append(
            "Validation A_PR per seed, LRP-ε → best of the first "
            f"{small} → best of {trials}: "
            + "; ".join(f"{s['val_eps']:.3f} → {s['val_best_small']:.3f} → {s['val_best']:.3f}" for s in seeds)
            + f". Trials run to the end / stopped by halving: "
            + ", ".join(f"{s['complete']}/{s['pruned']}" for s in seeds)
            + "."
        )
    lines.append("")
    lines.append("✓: above the best other criterion by more than one standard error.")
    replace(doc, "optimize", "\n".join(lines + details))

    # Transfer: seed 0's composite, unchanged, on other tasks.
    t_lines = [
        "### Optimise once, use elsewhere: seed 0's composite on other class subsets and on the 10-class task",
        "",
        "Command: `benchmarks/optimize/run.sh` (transfer step). The composite optimised on seed 0's 3-class task "
        "(`best-rules.yaml` of the study above) is applied unchanged to the 3-class tasks of the other seeds (other "
        "classes, other references) and to the 10-class task; test A_PR next to LRP-ε and, on the 3-class tasks, "
        f"the composite that task's own study found. {hw}; measured {today}.",
        "",
        "| case | task | LRP-ε | seed 0's composite | own composite | transferred − LRP-ε |",
        "|---|---|---|---|---|---|",
    ]
    for name, seeds in cases:
        by_seed = {s["seed"]: s for s in seeds}
        tdir = res / "transfer" / name
        diffs = []
        for target in sorted(tdir.glob("*"), key=lambda p: (p.name == "10class", p.name)) if tdir.is_dir() else []:
            c = load(target / "compare.json")
            if not c:
                continue
            scores = a_pr(c["results"])
            moved = next(v for k, v in scores.items() if k != "lrp-epsilon")
            if target.name == "10class":
                eps, own, task = scores["lrp-epsilon"], None, "10 classes"
            else:
                s = by_seed.get(int(target.name))
                if not s:
                    continue
                eps, own, task = s["scores"]["lrp-epsilon"], s["scores"][OPT], f"3 classes, seed {target.name}"
            diffs.append(moved - eps)
            t_lines.append(
                f"| {name} | {task} | {eps:.3f} | {moved:.3f} | {'—' if own is None else f'{own:.3f}'} | {moved - eps:+.3f} |"
            )
        if diffs:
            m, se = mean_se(diffs)
            t_lines.append(f"| {name} | **mean over tasks** | | | | **{m:+.3f}{'' if math.isnan(se) else f' ± {se:.3f}'}** |")
    replace(doc, "optimize-transfer", "\n".join(t_lines))

    # Throughput: configurations per hour with each pruner.
    tp = res / "throughput"
    rows = []
    for p in ("none", "median", "halving"):
        w, s = load(tp / p / "wall.json"), load(tp / p / "summary.json")
        if not (w and s):
            continue
        ts = s["trials"]
        rates = sum(len(t["intermediate"]) for t in ts)
        rows.append((p, w["trials"], w["seconds"], rates, sum(t["state"] == "complete" for t in ts),
                     s["best"]["validation_a_pr"]))
    if rows:
        base = next((r for r in rows if r[0] == "none"), rows[0])
        per_hour = lambda r: r[1] * 3600 / r[2]
        body = [
            "### Optimisation throughput: configurations per hour by pruner",
            "",
            "Command: `benchmarks/optimize/run.sh` (throughput step). fmnist-resnet18, filters, 3-class task of seed 0, "
            "the whole validation split averaged over 3 reference draws (the default), 20 rates, TPE with the "
            "default space, one worker on all cores; the same sampler seed for each pruner. A trial the pruner "
            "stops is judged on the first draw only, so a configuration run to the end costs 3 curves, one stopped "
            "at the first rung 3 of the first curve's 20 rates. "
            f"{hw}; measured {today}.",
            "",
            "| pruner | trials | wall time | configurations per hour | × no pruner | rates measured per trial | run to the end | best validation A_PR |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            body.append(
                f"| {r[0]} | {r[1]} | {r[2]:.0f} s | {per_hour(r):.0f} | {per_hour(r) / per_hour(base):.1f}× | "
                f"{r[3] / r[1]:.1f} of 20 | {r[4]} | {r[5]:.4f} |"
            )
        replace(doc, "optimize-throughput", "\n".join(body))


if __name__ == "__main__":
    main()
