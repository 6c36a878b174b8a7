"""Summarises benchmarks/physical/heads.sh into the section `physical-heads` of docs/benchmarks.md."""
import datetime
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from docsection import write_section  # noqa: E402

out, doc, runs = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
rows, threads = [], ""
for d in sorted(out.glob("*/rate*"), key=lambda p: (p.parent.name, p.name)):
    r = json.loads((d / "prune.json").read_text())
    b, a, s = r["before"], r["after"], r["surgery"]
    threads = threads or f"{b['latency_batch1']['threads']} threads"
    acc = f"{b['accuracy']:.3f} → {a['accuracy']:.3f}" if b.get("accuracy") is not None else "—"
    mac, lat64 = r["macs_ratio"], r["latency_ratio_batch64"]
    rows.append(
        f"| {d.parent.name} | {r['criterion']} | {r['rate']:.1f} | {s['removed_units']} | {len(s['emptied'])} | {r['parameter_ratio']:.3f} | "
        f"{mac:.3f} | {r['latency_ratio_batch1']:.3f} | {lat64:.3f} | {lat64 / mac:.2f} | "
        f"{b['latency_batch64']['median_ms']:.1f} → {a['latency_batch64']['median_ms']:.1f} | {acc} |")
text = f"""### Physical pruning of attention heads

Command: `benchmarks/physical/heads.sh` — `relprune prune --component heads` at rates 0.3 / 0.5 / 0.7, one
global ranking: LRP-z⁺ (10 references per class) on the zoo models, weight magnitude (L1 of each head's Q/K/V rows
and output-projection columns) on ViT-B-16; {threads}, median
latency of {runs} timed runs after 3 warm-up runs (batch 64: a quarter of them after 1); measured
{datetime.date.today().isoformat()}. Ratios are after / before; "emptied" counts layers left with no head (they
become a residual plus the projection's bias). Accuracy: 500 test samples of the full task, no fine-tuning.
ViT-B-16 has random weights (latency does not depend on them), so no data and no accuracy. No Torch-Pruning
rows: for torchvision's fused `nn.MultiheadAttention` its pruner narrows the embedding width and keeps every head
(`MultiheadAttentionPruner`); its `prune_num_heads` works on separate q/k/v Linear layers (timm, HF) and is not
wired up here.

| model | criterion | rate | heads removed | emptied layers | params | MACs | latency b1 | latency b64 | b64 latency / MACs | b64 ms | accuracy |
|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows)
write_section(doc, "physical-heads", text, after="physical")  # right after the filters/neurons table
