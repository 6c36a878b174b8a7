"""Fine-tuning after pruning, on a CNN exported with BatchNorm folded and with BatchNorm kept.

A 5-conv CNN with BatchNorm is trained on Fashion-MNIST (PyTorch, 2 epochs, seeded), then exported
twice: with the exporter's defaults (BatchNorm folded into the convolutions) and as
docs/import-onnx.md documents (BatchNorm kept). Each file is pruned by `relprune prune --data
fashion-mnist --target macs=0.5` and fine-tuned one epoch with the default recipe, with
`--distill`, and, for the folded file, at the learning rates in LRS. The rows give test accuracy
before pruning, after pruning, after fine-tuning, and whether the fine-tune was kept or the pruned
model handed back (prune.json's `kept_start`).

Usage: benchmarks/import/folded_finetune.sh   (writes benchmarks/import/results/folded_finetune.json)
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[2]
FMNIST = pathlib.Path(os.environ.get("RELPRUNE_FMNIST", "/usr/share/datasets/fashion-mnist"))
LRS = [0.01, 0.003, 0.001]


def idx(path: pathlib.Path) -> np.ndarray:
    """An IDX file's array."""
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def net() -> nn.Module:
    """Five convolutions with BatchNorm, global pooling, a linear classifier."""
    layers, cin = [], 1
    for i, cout in enumerate([32, 32, 64, 64, 128]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        if i in (1, 3):
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    """SGD with momentum, cosine decay, batch 128."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * (len(x) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - 127, 128):
            b = perm[i : i + 128]
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def relprune(bin_: str, *args: str) -> str | None:
    """`relprune --json …`; its error line, or None when it succeeded."""
    done = subprocess.run([bin_, "--json", *args], capture_output=True, text=True)
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1]
    return None


def main() -> None:
    """Trains, exports, prunes and fine-tunes; writes the rows."""
    bin_, work = sys.argv[1], pathlib.Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    mean, std = 0.2860, 0.3530
    x = (torch.from_numpy(idx(FMNIST / "train-images-idx3-ubyte.gz").copy()).float() / 255 - mean) / std
    y = torch.from_numpy(idx(FMNIST / "train-labels-idx1-ubyte.gz").astype(np.int64))
    files = {"folded": work / "folded.onnx", "kept": work / "kept.onnx"}
    if not all(f.exists() for f in files.values()):
        model = net()
        t0 = time.time()
        train(model, x.unsqueeze(1), y, 2)
        print(f"trained in {time.time() - t0:.0f} s", flush=True)
        example = (torch.randn(1, 1, 28, 28),)
        torch.onnx.export(
            model, example, str(files["folded"]), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}}
        )
        torch.onnx.export(
            model,
            example,
            str(files["kept"]),
            dynamo=False,
            input_names=["x"],
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
            keep_initializers_as_inputs=True,
            dynamic_axes={"x": {0: "batch"}},
        )
    runs = [
        ("kept", "default", []),
        ("kept", "distill", ["--distill"]),
        ("folded", "default", []),
        ("folded", "distill", ["--distill"]),
    ]
    runs += [("folded", f"lr {lr}", ["--ft-lr", str(lr)]) for lr in LRS]
    runs += [("folded", f"distill, lr {lr}", ["--distill", "--ft-lr", str(lr)]) for lr in LRS]
    rows = []
    for export, recipe, extra in runs:
        out = work / f"{export}-{recipe.replace(' ', '').replace(',', '-')}"
        t0 = time.time()
        error = relprune(
            bin_,
            "--threads",
            "2",
            "prune",
            "--model",
            str(files[export]),
            "--data",
            "fashion-mnist",
            "--criterion",
            "lrp-epsilon",
            "--target",
            "macs=0.5",
            "--finetune",
            "1",
            "--latency-runs",
            "0",
            "--out",
            str(out),
            *extra,
        )
        if error:
            rows.append({"export": export, "recipe": recipe, "error": error})
            print(json.dumps(rows[-1]), flush=True)
            continue
        report = json.loads((out / "prune.json").read_text())
        ft = report.get("finetune") or {}
        training = ft.get("training") or {}
        row = {
            "export": export,
            "recipe": recipe,
            "seconds": round(time.time() - t0, 1),
            "accuracy_before": report["before"]["accuracy"],
            "accuracy_pruned": report["after"]["accuracy"],
            "accuracy_finetuned": ft.get("accuracy"),
            "kept_start": training.get("kept_start"),
            "train_loss": [e["train_loss"] for e in training.get("history", [])],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    res = ROOT / "benchmarks/import/results/folded_finetune.json"
    res.write_text(json.dumps({"threads": 2, "rows": rows}, indent=1) + "\n")
    lines = [
        "## Fine-tuning a BatchNorm-folded export (`benchmarks/import/folded_finetune.sh`)",
        "",
        "A 5-conv CNN with BatchNorm trained 2 epochs on Fashion-MNIST (PyTorch, seeded), exported with the "
        "exporter's defaults (BatchNorm folded into the convolutions) and as docs/import-onnx.md documents "
        "(BatchNorm kept); each pruned by `relprune prune --criterion lrp-epsilon --target macs=0.5 --finetune 1`. "
        "Accuracy on the evaluation samples prune measures by default (2,000 of the test split). x86_64, 2 cores, "
        "2 threads.",
        "",
        "| export | recipe | before | pruned | fine-tuned | pruned model handed back | train loss | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['export']} | {r['recipe']} | | | {r['error'].removeprefix('error: ')} | | | |")
            continue
        loss = ", ".join(f"{v:.3f}" for v in r["train_loss"])
        lines.append(
            f"| {r['export']} | {r['recipe']} | {r['accuracy_before']:.4f} | {r['accuracy_pruned']:.4f} | "
            f"{r['accuracy_finetuned']:.4f} | {'yes' if r['kept_start'] else 'no'} | {loss} | {r['seconds']} |"
        )
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from docsection import write_section

    write_section(ROOT / "docs/benchmarks.md", "import-folded", "\n".join(lines), after="import")


if __name__ == "__main__":
    main()
