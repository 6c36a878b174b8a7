"""Torch-Pruning (1.6.1) side of benchmarks/deploy: global pruning of the same zoo weights to the
same MACs ratio (its pruning ratio bisected), then the same fine-tuning recipe as relprune's
`prune --finetune 1 [--distill]`, on the same samples; accuracy on the full test split.

usage: tp_deploy.py ZOO_DIR SPLIT.json TARGET IMPORTANCE OUT.json [--ft-samples N]
ZOO_DIR: a zoo model's folder (manifest.json, model.safetensors); SPLIT.json from
`cargo run --release --example fmnist_split` (relprune's train/val split and reference draw);
IMPORTANCE: l1 | l2 | taylor | lamp | bn_scale.

MACs are counted by relprune's rules (models.relprune_macs, equal to `relprune info` on the
unpruned zoo models), so both tools are bisected to the same MACs by the same counter. A ViT is
pruned in its MLP hidden neurons only, as relprune's `--component neurons` does: every other layer
is in Torch-Pruning's ignored_layers.
"""
import argparse
import copy
import gzip
import json
import math
import pathlib
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch_pruning as tp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "oracles"))
import models  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("zoo")
p.add_argument("split")
p.add_argument("target", type=float)
p.add_argument("importance")
p.add_argument("out")
p.add_argument("--ft-samples", type=int, default=0)
p.add_argument("--ft-lr", type=float, default=None, help="default: relprune's, 0.01 (SGD) for CNNs, 1e-4 (AdamW) for the ViT")
p.add_argument("--ft-batch", type=int, default=128)
p.add_argument("--temperature", type=float, default=4.0)
p.add_argument("--alpha", type=float, default=0.5)
p.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
a = p.parse_args()
torch.set_num_threads(2)
torch.manual_seed(0)
split = json.loads(pathlib.Path(a.split).read_text())


def idx(path):
    raw = gzip.open(path).read() if str(path).endswith(".gz") else open(path, "rb").read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(prefix):
    d = pathlib.Path(a.fmnist)
    f = lambda s: next(x for x in [d / f"{prefix}-{s}-ubyte.gz", d / f"{prefix}-{s}-ubyte"] if x.exists())
    x = torch.from_numpy(idx(f("images-idx3")).copy()).float().div(255).sub(split["mean"]).div(split["std"])
    return x.unsqueeze(1), torch.from_numpy(idx(f("labels-idx1")).astype(np.int64))


xtr_all, ytr_all = load("train")
xte, yte = load("t10k")
train_idx = torch.tensor(split["train"])
if a.ft_samples > 0:
    train_idx = train_idx[: a.ft_samples]
xtr, ytr = xtr_all[train_idx], ytr_all[train_idx]
xref, yref = xtr_all[torch.tensor(split["references"])], ytr_all[torch.tensor(split["references"])]
fill = float(xtr_all[:256].min())

manifest = json.loads((pathlib.Path(a.zoo) / "manifest.json").read_text())
spec = models.spec_from_manifest(manifest["recipe"]["architecture"])
m = models.build(spec)
from safetensors.torch import load_file  # noqa: E402

missing, unexpected = m.load_state_dict(load_file(pathlib.Path(a.zoo) / "model.safetensors"), strict=False)
if missing or unexpected:
    sys.exit(f"{spec}: weights do not fit: missing {missing}, unexpected {unexpected}")
m.eval()
example = xte[:1]


def accuracy(model, x, y, batch=256):
    model.eval()
    with torch.no_grad():
        return sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch)) / len(x)


def latency(model, batch, runs=20):
    warmup, runs = (3, runs) if batch == 1 else (1, max(3, runs // 4))
    x = torch.randn(batch, *example.shape[1:])
    ts = []
    with torch.no_grad():
        for i in range(warmup + runs):
            t = time.perf_counter()
            model(x)
            if i >= warmup:
                ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


base_macs, base_params = models.relprune_macs(m, example), tp.utils.count_ops_and_params(m, example)[1]
is_vit = isinstance(m, models.torchvision.models.VisionTransformer)
importances = {
    "l1": lambda: tp.importance.MagnitudeImportance(p=1),
    "l2": lambda: tp.importance.MagnitudeImportance(p=2),
    "taylor": lambda: tp.importance.TaylorImportance(),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
}


def pruned_at(ratio):
    model = copy.deepcopy(m)
    classifier = [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)][-1]
    ignored, extra = [classifier], {}
    if is_vit:
        hidden = [layer.mlp[0] for layer in model.encoder.layers]
        ignored = [mod for mod in model.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d,
                   torch.nn.MultiheadAttention, torch.nn.LayerNorm)) and all(mod is not h for h in hidden)]
        extra = dict(unwrapped_parameters=[(model.class_token, 2), (model.encoder.pos_embedding, 2)])
    imp = importances[a.importance]()
    pruner = tp.pruner.MetaPruner(model, example, importance=imp, pruning_ratio=ratio, global_pruning=True,
                                  ignored_layers=ignored, **extra)
    if a.importance == "taylor":
        # Taylor on relprune's reference samples (the same 10 per class).
        model.zero_grad()
        F.cross_entropy(model(xref), yref).backward()
    pruner.step()
    model.zero_grad()
    macs, params = models.relprune_macs(model, example), tp.utils.count_ops_and_params(model, example)[1]
    return model, macs / base_macs, params


# The largest removal whose MACs ratio does not exceed the target (bisection on the ratio).
lo, hi, best = 0.0, 0.95, None
for _ in range(14):
    mid = (lo + hi) / 2
    model, ratio, params = pruned_at(mid)
    if ratio <= a.target:
        hi, best = mid, (mid, model, ratio, params)
    else:
        lo = mid
if best is None:
    sys.exit(f"Torch-Pruning {a.importance} cannot reach MACs ratio {a.target}")
rate, pruned, macs_ratio, params = best
result = {"spec": spec, "macs_counter": "relprune", "importance": a.importance, "target": a.target, "pruning_ratio": rate, "macs_ratio": macs_ratio,
          "parameter_ratio": params / base_params, "accuracy": accuracy(pruned, xte, yte),
          "latency_batch1_ms": latency(pruned, 1), "latency_batch64_ms": latency(pruned, 64),
          "unpruned": {"accuracy": accuracy(m, xte, yte), "latency_batch1_ms": latency(m, 1),
                       "latency_batch64_ms": latency(m, 64)}}


def finetune(model, distill):
    """relprune's recipe (src/recovery.rs): for CNNs SGD (Nesterov, momentum 0.9, weight decay 5e-4),
    for transformers AdamW (lr 1e-4, betas 0.9 / 0.999, weight decay 0.05), decay on >1-D tensors
    only; cosine from lr to 0 with no warm-up, random crop (padding 2, filled with the data's
    black) + horizontal flip, 1 epoch."""
    torch.manual_seed(0)
    teacher = m
    decay = [q for q in model.parameters() if q.dim() > 1]
    no_decay = [q for q in model.parameters() if q.dim() <= 1]
    if is_vit:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=a.ft_lr or 1e-4, betas=(0.9, 0.999), eps=1e-8)
    else:
        opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=a.ft_lr or 0.01, momentum=0.9, nesterov=True)
    steps = math.ceil(len(xtr) / a.ft_batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(xtr), generator=g)
    model.train()
    for b in range(steps):
        i = order[b * a.ft_batch:(b + 1) * a.ft_batch]
        x, y = xtr[i], ytr[i]
        x = F.pad(x, (2, 2, 2, 2), value=fill)
        offs = torch.randint(0, 5, (len(x), 2), generator=g)
        x = torch.stack([xi[:, oy:oy + 28, ox:ox + 28] for xi, (oy, ox) in zip(x, offs.tolist())])
        flip = torch.rand(len(x), generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        out = model(x)
        loss = F.cross_entropy(out, y)
        if distill:
            with torch.no_grad():
                soft = teacher(x)
            t = a.temperature
            kl = F.kl_div(F.log_softmax(out / t, -1), F.log_softmax(soft / t, -1), log_target=True, reduction="batchmean")
            loss = (1 - a.alpha) * loss + a.alpha * t * t * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return accuracy(model, xte, yte)


t0 = time.perf_counter()
result["accuracy_ft"] = finetune(copy.deepcopy(pruned), False)
result["accuracy_ft_distill"] = finetune(copy.deepcopy(pruned), True)
result["finetune_seconds"] = (time.perf_counter() - t0) / 2
result["ft_samples"] = len(xtr)
pathlib.Path(a.out).write_text(json.dumps(result, indent=1))
print(json.dumps(result))
