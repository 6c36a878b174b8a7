#!/usr/bin/env bash
# benchmarks/import: ONNX import time, and curve time of an imported model against the same
# model built natively (same weights, data and settings), side by side in one run.
#   1. Import time: torchvision ResNet-50 (both exporters) and ViT-B/16 at 224×224 and a Hugging
#      Face BERT-base-sized encoder, exported by torch.onnx.export (random weights: the time does
#      not depend on them); the median of RUNS imports as `relprune info` reports it.
#   2. Curve time: the zoo's fmnist-resnet18 and fmnist-vit, written to ONNX by relprune
#      (`prune --rate 0`) and imported, against the zoo models themselves: `relprune curve`
#      (LRP-ε, 3 classes, default grid) alternately A B A B, RUNS times each; A_PR must agree.
# Usage: benchmarks/import/run.sh   (env: WORK, RUNS=3)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime >/dev/null
. "$root/scripts/env.sh"
cd "$root"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/relprune"
work="${WORK:-$root/out/bench/import}"
runs="${RUNS:-3}"
mkdir -p "$work" benchmarks/import/results
res="benchmarks/import/results/import.json"

"$RELPRUNE_PYTHON" - "$work" <<'PY'
import pathlib, sys, torch, torchvision
from torch import nn
out = pathlib.Path(sys.argv[1])
torch.manual_seed(0)
def export(model, args, name, dynamo=False, **kw):
    path = out / name
    if path.exists():
        return
    model.eval()
    if dynamo:
        torch.onnx.export(model, args, str(path), dynamo=True, external_data=False,
                          dynamic_shapes=tuple({0: torch.export.Dim("batch")} for _ in args))
    else:
        torch.onnx.export(model, args, str(path), dynamo=False, input_names=[f"in{i}" for i in range(len(args))],
                          dynamic_axes={f"in{i}": {0: "batch"} for i in range(len(args))}, **kw)
x = (torch.randn(1, 3, 224, 224),)
export(torchvision.models.resnet50(), x, "resnet50.onnx")
export(torchvision.models.resnet50(), x, "resnet50-dynamo.onnx", dynamo=True)
export(torchvision.models.vit_b_16(), x, "vit_b_16.onnx")
from transformers import BertConfig, BertForSequenceClassification
class Logits(nn.Module):
    def __init__(self, m):
        super().__init__(); self.m = m
    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask).logits
bert = Logits(BertForSequenceClassification(BertConfig(num_labels=2, attn_implementation="eager")))
ids = torch.randint(0, 30000, (1, 128)); mask = torch.ones(1, 128, dtype=torch.long)
export(bert, (ids, mask), "bert_base.onnx")
PY

# Curve models: the zoo's, written to ONNX by relprune itself.
for z in fmnist-resnet18 fmnist-vit; do
  [ -f "$work/$z/model.onnx" ] || "$bin" prune --model "$z" --rate 0 --criterion weight --data none --out "$work/$z" >/dev/null
done

"$RELPRUNE_PYTHON" - "$bin" "$work" "$runs" "$res" <<'PY'
import json, os, platform, statistics, subprocess, sys, time
bin_, work, runs, res = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def info(model):
    out = subprocess.run([bin_, "--json", "info", "--model", model], check=True, capture_output=True, text=True).stdout
    return json.loads(out)
rows = []
for name in ["resnet50.onnx", "resnet50-dynamo.onnx", "vit_b_16.onnx", "bert_base.onnx"]:
    path = os.path.join(work, name)
    secs = []
    for _ in range(runs):
        r = info(path)
        secs.append(r["import"]["seconds"])
    rows.append({"model": name, "megabytes": round(os.path.getsize(path) / 2**20, 1), "onnx_nodes": r["import"]["onnx_nodes"],
                 "relprune_nodes": len(r["import"]["mapped"]), "import_seconds": sorted(secs),
                 "median": statistics.median(secs), "max_difference": r["import"]["max_difference"]})
    print(rows[-1], flush=True)
curves = []
common = ["--criterion", "lrp-epsilon", "--classes", "3", "--seed", "0"]
for z, comp in [("fmnist-resnet18", "filters"), ("fmnist-vit", "heads")]:
    onnx = os.path.join(work, z, "model.onnx")
    cmds = {"native": [bin_, "--json", "curve", "--model", z, "--component", comp] + common,
            "imported": [bin_, "--json", "curve", "--model", onnx, "--data", "fashion-mnist", "--component", comp] + common}
    times = {k: [] for k in cmds}
    apr = {}
    for _ in range(runs):
        for k, c in cmds.items():
            t0 = time.perf_counter()
            out = subprocess.run(c + ["--out", os.path.join(work, f"curve-{z}-{k}")], check=True, capture_output=True, text=True).stdout
            times[k].append(time.perf_counter() - t0)
            apr[k] = json.loads(out)["results"][0]["curve"]["summary"]["a_pr"]
    curves.append({"model": z, "component": comp, "native_seconds": sorted(times["native"]), "imported_seconds": sorted(times["imported"]),
                   "ratio_median": statistics.median(i / n for i, n in zip(times["imported"], times["native"])),
                   "a_pr": apr})
    print(curves[-1], flush=True)
machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
json.dump({"machine": machine, "runs": runs, "imports": rows, "curves": curves}, open(res + ".tmp", "w"), indent=1)
os.replace(res + ".tmp", res)
PY
"$RELPRUNE_PYTHON" benchmarks/import/summarize.py "$res"
