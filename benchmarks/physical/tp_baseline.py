"""Torch-Pruning (1.6.1) side of benchmarks/physical: its magnitude pruner on the same
architecture at the same rate, in the same run; MACs / parameters (tp.utils.count_ops_and_params)
and PyTorch eager latency (median after warm-up, batch 1 and 64, 2 threads).

usage: torch_pruning.py ARCH KIND RATE OUT.json [--weights FILE]
ARCH uses relprune's syntax (see tests/oracles/models.py); KIND: filters | neurons.
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import torch
import torch_pruning as tp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "oracles"))
import models  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("arch")
p.add_argument("kind")
p.add_argument("rate", type=float)
p.add_argument("out")
p.add_argument("--weights")
p.add_argument("--runs", type=int, default=20)
a = p.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)

name, _, opts = a.arch.partition(":")
kv = dict(o.split("=") for o in opts.split(",") if o)
if name.startswith("vit"):
    from torchvision.models import vision_transformer as tv
    if name == "vit":
        m = tv.VisionTransformer(int(kv["size"]), int(kv["patch"]), int(kv["layers"]), int(kv["heads"]), int(kv["dim"]),
                                 int(kv["mlp"]), num_classes=int(kv.get("classes", 1000)))
        m.conv_proj = torch.nn.Conv2d(int(kv.get("in", 3)), int(kv["dim"]), int(kv["patch"]), int(kv["patch"]))
    else:
        m = getattr(tv, name)(weights=None)
    size, chans = m.image_size, m.conv_proj.in_channels
else:
    m = models.build(a.arch)
    size, chans = int(kv.get("size", 224 if not name.startswith("cifar") else 32)), int(kv.get("in", 3))
if a.weights:
    from safetensors.torch import load_file
    m.load_state_dict(load_file(a.weights), strict=False)
m.eval()
example = torch.randn(1, chans, size, size)


def latency(model, batch):
    # as relprune: batch 1 after 3 warm-up runs; batch 64 after 1, with a quarter of the runs (at least 3)
    warmup, runs = (3, a.runs) if batch == 1 else (1, max(3, a.runs // 4))
    x = torch.randn(batch, chans, size, size)
    times = []
    with torch.no_grad():
        for i in range(warmup + runs):
            t = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def measure(model):
    macs, params = tp.utils.count_ops_and_params(model, example)
    return {"macs": int(macs), "parameters": int(params), "latency_batch1_ms": latency(model, 1),
            "latency_batch64_ms": latency(model, 64)}


before = measure(m)
classifier = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
ignored = [classifier]
root_types = None
if a.kind == "neurons":
    # Only the MLP hidden units (the first Linear of each MLP) are roots; everything else stays.
    roots = [mod for n, mod in m.named_modules() if n.endswith("mlp.0") or n.endswith("classifier.0") or n.endswith("classifier.3")]
    ignored = [mod for mod in m.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and mod not in roots]
pruner = tp.pruner.MagnitudePruner(m, example, importance=tp.importance.MagnitudeImportance(p=1),
                                   pruning_ratio=a.rate, global_pruning=True, ignored_layers=ignored)
pruner.step()
after = measure(m)
json.dump({"arch": a.arch, "kind": a.kind, "rate": a.rate, "before": before, "after": after}, open(a.out, "w"), indent=1)
