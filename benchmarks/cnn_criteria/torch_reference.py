"""Plain PyTorch reference for the cost of a pruning curve (benchmarks/cnn_criteria).

The same zoo weights in PyTorch eager, 2 threads, `torch.no_grad()`: the time of 20 evaluation
passes over EVAL test images (what a 20-rate curve must at least cost in a plainly batched PyTorch
script), per batch size, and a forward+backward per reference sample. Prints one JSON object.

usage: torch_reference.py ARCH WEIGHTS [--eval 2000] [--refs 100]
ARCH uses relprune's syntax (tests/oracles/models.py), e.g.
cifar_resnet18:width=16,in=1,size=28,classes=10
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "oracles"))
import models  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("arch")
p.add_argument("weights")
p.add_argument("--eval", type=int, default=2000)
p.add_argument("--refs", type=int, default=100)
a = p.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)
m = models.build(a.arch)
missing, unexpected = m.load_state_dict(load_file(a.weights), strict=False)
# relprune does not store BatchNorm's num_batches_tracked (unused in eval mode); nothing else may differ.
assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
m.eval()
kv = dict(o.split("=") for o in a.arch.partition(":")[2].split(",") if o)
size, chans = int(kv.get("size", 32)), int(kv.get("in", 3))
# Timing does not depend on the pixel values; random inputs avoid reading the IDX files here.
x = torch.randn(a.eval, chans, size, size)

result = {"arch": a.arch, "eval_samples": a.eval, "threads": 2, "torch": torch.__version__}
with torch.no_grad():
    for bs in (64, 256):
        for b in x.split(bs):  # warm-up
            m(b)
        t = time.perf_counter()
        for _ in range(20):
            for b in x.split(bs):
                m(b).argmax(-1)
        result[f"twenty_evaluations_batch{bs}_seconds"] = time.perf_counter() - t

refs = torch.randn(a.refs, chans, size, size, requires_grad=True)
times = []
for i in range(6):
    t = time.perf_counter()
    out = m(refs)
    out.max(-1).values.sum().backward()
    if i:
        times.append(time.perf_counter() - t)
result["forward_backward_seconds_per_reference"] = statistics.median(times) / a.refs
print(json.dumps(result))
