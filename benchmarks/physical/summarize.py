"""Summarises benchmarks/physical into the section `physical` of docs/benchmarks.md."""
import datetime
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from docsection import write_section  # noqa: E402

out, doc = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
section = sys.argv[3] if len(sys.argv) > 3 else "physical"
only = set(sys.argv[4:])
rows = []
hardware = ""
runs = 20
for d in sorted(out.glob("*/rate*")):
    if only and d.parent.name not in only:
        continue
    r = json.loads((d / "prune.json").read_text())
    t = json.loads((d / "torch_pruning.json").read_text())
    b, a = r["before"], r["after"]
    hardware = hardware or f"{b['latency_batch1']['threads']} threads"
    runs = b["latency_batch1"]["runs"]
    tb, ta = t["before"], t["after"]
    lat1, lat64, mac = r["latency_ratio_batch1"], r["latency_ratio_batch64"], r["macs_ratio"]
    rows.append(
        f"| {d.parent.name} | {r['component']} | {r['rate']:.1f} | {r['parameter_ratio']:.3f} | {mac:.3f} | {lat1:.3f} | {lat64:.3f} | "
        f"{lat64 / mac:.2f} | {ta['parameters'] / tb['parameters']:.3f} | {ta['macs'] / tb['macs']:.3f} | "
        f"{ta['latency_batch1_ms'] / tb['latency_batch1_ms']:.3f} | {ta['latency_batch64_ms'] / tb['latency_batch64_ms']:.3f} | "
        f"{b['latency_batch64']['median_ms']:.1f} → {a['latency_batch64']['median_ms']:.1f} | "
        f"{tb['latency_batch64_ms']:.1f} → {ta['latency_batch64_ms']:.1f} |")
curves = []
for m in sorted({p.name.rsplit('-', 1)[0] for p in (out / "curves").glob("*")} if not only else []):
    mk = json.loads((out / "curves" / f"{m}-masked" / "curve.json").read_text())["results"][0]
    ph = json.loads((out / "curves" / f"{m}-physical" / "curve.json").read_text())["results"][0]
    curves.append(f"| {m} | {mk['timings']['curve_seconds']:.1f} | {ph['timings']['curve_seconds']:.1f} | "
                  f"{mk['timings']['curve_seconds'] / ph['timings']['curve_seconds']:.2f} | "
                  f"{mk['curve']['summary']['a_pr']:.3f} | {ph['curve']['summary']['a_pr']:.3f} |")
heading = "Physical pruning" if not only else f"Physical pruning: {', '.join(sorted(only))}"
text = f"""### {heading}

Command: `benchmarks/physical/run.sh` — relprune's `prune --criterion weight` (L1 magnitude, global) vs
Torch-Pruning 1.6.1's `MagnitudePruner` (L1, `global_pruning=True`, classifier ignored; for `neurons` only the
MLP's first Linear layers are roots) on the same architecture at the same rate, in one run; {hardware}, median
latency of {runs} timed runs after 3 warm-up runs (batch 64: {max(3, runs // 4)} runs after 1), relprune in Rust/libtorch, Torch-Pruning in
PyTorch eager; measured {datetime.date.today().isoformat()}. Ratios are after / before. relprune's MACs count
convolutions, linear layers and attention matmuls; Torch-Pruning's its own `count_ops_and_params`.

| model | component | rate | params | MACs | latency b1 | latency b64 | b64 latency / MACs | TP params | TP MACs | TP latency b1 | TP latency b64 | relprune b64 ms | TP b64 ms |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + """

Masked vs. physically pruned accuracy curves (`curve --physical`, LRP-ε, 3-class task, 2000 test images,
20 rates); the physical curve removes coupled channels together (group-level ranking), so its A_PR differs
slightly from the masked one:

| model | masked curve s | physical curve s | speed-up | masked A_PR | physical A_PR |
|---|---|---|---|---|---|
""" + "\n".join(curves)
if only:
    text = text.split("\n\nMasked vs. physically pruned accuracy curves")[0]
write_section(doc, section, text, after="physical")
