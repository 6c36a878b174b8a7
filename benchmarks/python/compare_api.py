"""relprune's Python API beside Torch-Pruning's, on the same module, weights, data and MACs target.

One run, one process per library call (both in this script): the zoo's trained Fashion-MNIST
ResNet-18 as a PyTorch module (torchvision names), relprune.prune with LRP-ε on 10 references
per class, Torch-Pruning 1.6.1's MetaPruner (L2 magnitude, global) bisected to the same MACs,
then the same fine-tuning loop (1 epoch, SGD) on both returned modules. Also: the API's overhead
over the CLI doing the same work on the same exported file.

    benchmarks/python/run.sh    # writes benchmarks/python/results/compare.json
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "oracles"))
sys.path.insert(0, str(ROOT / "python"))
import models  # noqa: E402
import relprune  # noqa: E402
import torch_pruning as tp  # noqa: E402
from relprune import _core, _data, _export  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--split", required=True, help="fmnist_split JSON (mean, std, train, references)")
p.add_argument("--target", type=float, default=0.5, help="MACs kept")
p.add_argument("--ft-samples", type=int, default=10000)
p.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
p.add_argument("--out", required=True)
a = p.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)
split = json.loads(pathlib.Path(a.split).read_text())


def idx(path: pathlib.Path) -> np.ndarray:
    raw = gzip.open(path).read() if str(path).endswith(".gz") else open(path, "rb").read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    d = pathlib.Path(a.fmnist)

    def f(s: str) -> pathlib.Path:
        return next(x for x in [d / f"{prefix}-{s}-ubyte.gz", d / f"{prefix}-{s}-ubyte"] if x.exists())

    x = torch.from_numpy(idx(f("images-idx3")).copy()).float().div(255).sub(split["mean"]).div(split["std"])
    return x.unsqueeze(1), torch.from_numpy(idx(f("labels-idx1")).astype(np.int64))


xtr_all, ytr_all = load("train")
xte, yte = load("t10k")
refs = torch.tensor(split["references"])
xref, yref = xtr_all[refs], ytr_all[refs]
train = torch.tensor(split["train"])[: a.ft_samples]
xtr, ytr = xtr_all[train], ytr_all[train]

zoo = ROOT / "zoo" / "fmnist-resnet18"
manifest = json.loads((zoo / "manifest.json").read_text())
model = models.build(models.spec_from_manifest(manifest["recipe"]["architecture"]))
from safetensors.torch import load_file  # noqa: E402

model.load_state_dict(load_file(zoo / "model.safetensors"))
model.eval()
example = xte[:2]


def accuracy(m: torch.nn.Module) -> float:
    m.eval()
    with torch.no_grad():
        return sum((m(xte[i : i + 500]).argmax(1) == yte[i : i + 500]).sum().item() for i in range(0, len(xte), 500)) / len(
            xte
        )


def finetune(m: torch.nn.Module) -> float:
    """One epoch of SGD (lr 0.01, momentum 0.9, cosine), the same loop for both libraries."""
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    steps = (len(xtr) + 127) // 128
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(xtr), generator=g)
    t = time.perf_counter()
    for i in range(0, len(xtr), 128):
        b = order[i : i + 128]
        opt.zero_grad()
        F.cross_entropy(m(xtr[b]), ytr[b]).backward()
        opt.step()
        sched.step()
    return time.perf_counter() - t


def macs(m: torch.nn.Module) -> int:
    return int(models.relprune_macs(m, xte[:1]))


base_macs = macs(model)
rows = {}

# --- relprune: the user's code is these lines -----------------------------------------------
RELPRUNE_CODE = """
result = relprune.prune(model, example, data=(xref, yref), target=f"macs={a.target}")
pruned = result.model
"""
t = time.perf_counter()
result = relprune.prune(model, example, data=(xref, yref), target=f"macs={a.target}")
pruned = result.model
api_seconds = time.perf_counter() - t
rows["relprune lrp-epsilon"] = {"prune_seconds": api_seconds, "model": pruned}

# --- the same work through the CLI (the API's overhead: export, data, slicing, verification) --
with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(tmp)
    _export.export(model, (example,), work / "m.onnx")
    _data.prepare((xref, yref), (example,), 10, work / "d", 10_000)
    t = time.perf_counter()
    subprocess.run(
        [str(_core.binary()), "--json", "prune", "--model", str(work / "m.onnx"), "--data", f"tensors:{work / 'd'}",
         "--refs-per-class", "10", "--target", f"macs={a.target}", "--latency-runs", "0", "--split", "test",
         "--eval-samples", "0", "--out", str(work / "o")],
        env=_core._environment(), check=True, capture_output=True,
    )  # fmt: skip
    cli_seconds = time.perf_counter() - t

# --- Torch-Pruning: the user's code is these lines (plus the bisection a MACs target needs) ---
TP_CODE = """
imp = tp.importance.GroupMagnitudeImportance(p=2)
pruner = tp.pruner.MetaPruner(model, example, importance=imp, pruning_ratio=ratio, global_pruning=True,
                              ignored_layers=[model.fc])
pruner.step()
"""


IMPORTANCES = {
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),  # Torch-Pruning's best in benchmarks/deploy
}


def tp_pruned(ratio: float, importance: str) -> torch.nn.Module:
    m = copy.deepcopy(model)
    imp = IMPORTANCES[importance]()
    pruner = tp.pruner.MetaPruner(
        m, example, importance=imp, pruning_ratio=ratio, global_pruning=True, ignored_layers=[m.fc]
    )
    pruner.step()
    return m


target_ratio = macs(pruned) / base_macs
for importance in IMPORTANCES:
    t = time.perf_counter()
    lo, hi = 0.0, 0.95
    for _ in range(14):  # bisect the ratio to relprune's MACs (equal MACs, not equal "rate")
        mid = (lo + hi) / 2
        if macs(tp_pruned(mid, importance)) / base_macs > target_ratio:
            lo = mid
        else:
            hi = mid
    tp_model = tp_pruned(hi, importance)
    bisection = time.perf_counter() - t
    t = time.perf_counter()
    tp_pruned(hi, importance)
    once = time.perf_counter() - t
    rows[f"torch-pruning {importance}"] = {"prune_seconds": once, "bisection_seconds": bisection, "model": tp_model}

out = {
    "model": "fmnist-resnet18 (zoo weights, torchvision names)",
    "target_macs": a.target,
    "unpruned": {"accuracy": accuracy(model), "macs": base_macs, "parameters": sum(p.numel() for p in model.parameters())},
    "api_seconds": api_seconds,
    "cli_seconds": cli_seconds,
    "api_overhead_seconds": api_seconds - cli_seconds,
    "lines_of_user_code": {
        "relprune": len([ln for ln in RELPRUNE_CODE.strip().splitlines() if ln.strip()]),
        "torch-pruning": len([ln for ln in TP_CODE.strip().splitlines() if ln.strip()]) + 1,  # + the bisection
    },
    "ft_samples": len(xtr),
    "rows": {},
}
for name, r in rows.items():
    m = r.pop("model")
    row = {**r, "macs_ratio": macs(m) / base_macs, "parameters": sum(p.numel() for p in m.parameters())}
    row["accuracy"] = accuracy(m)
    row["finetune_seconds"] = finetune(m)
    row["accuracy_finetuned"] = accuracy(m)
    out["rows"][name] = row
    print(name, json.dumps(row), file=sys.stderr)
pathlib.Path(a.out).write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
