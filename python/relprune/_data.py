"""The user's data as the core's ``tensors:DIR`` dataset (or a data spec passed through)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

#: What ``data=`` accepts.
Data = (
    None
    | str
    | tuple[torch.Tensor, torch.Tensor]
    | Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    | Dataset
    | DataLoader
)

#: Samples read from a Dataset or DataLoader (a handful is what attribution needs).
MAX_SAMPLES = 4096
#: References per class when the data has that many (the core's default).
REFS_PER_CLASS = 10
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Prepared:
    """Data ready for the core: its command-line options and what it holds."""

    args: list[str]
    samples: int
    refs_per_class: int | None


def prepare(data: Data, sample_shape: tuple[int, ...], classes: int, folder: Path, max_samples: int) -> Prepared:
    """Writes ``data`` under ``folder`` as the core reads it; checks shapes and labels first.

    ``(x, y)`` serves as every split: the references are drawn from it and accuracy is measured
    on it. A mapping gives ``train`` (references, fine-tuning) and ``val`` / ``test`` apart.
    """
    if data is None:
        return Prepared(["--data", "none"], 0, None)
    if isinstance(data, str):
        return Prepared(["--data", data], 0, None)
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - set(SPLITS))
        if unknown or "train" not in data:
            raise ValueError(f"data as a mapping takes the splits {SPLITS} ('train' required); got {sorted(data)}")
        splits = {k: _pair(v, f"data[{k!r}]") for k, v in data.items()}
    elif isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        splits = {"train": _pair(data, "data")}
    elif isinstance(data, (Dataset, DataLoader)):
        splits = {"train": _collect(data, max_samples)}
    else:
        raise TypeError(
            "data must be (x, y) tensors, a dict of such pairs per split, a torch Dataset or DataLoader of "
            f"(x, y) samples, or a relprune data spec string; not {type(data).__name__}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    smallest = None
    for name, (x, y) in splits.items():
        _check(name, x, y, sample_shape, classes)
        counts = torch.bincount(y, minlength=classes)
        present = counts[counts > 0]
        if name == "train":
            smallest = int(present.min())
            if len(present) < 2:
                raise ValueError(
                    "data holds samples of one class only; pruning by attribution needs samples of at least two classes"
                )
    for name in SPLITS:
        x, y = splits.get(name, splits.get("val", splits["train"]))
        np.savez(folder / f"{name}.npz", x=x.numpy(), y=y.numpy())
    (folder / "classes.txt").write_text("".join(f"{k}\n" for k in range(classes)))
    refs = min(REFS_PER_CLASS, smallest or REFS_PER_CLASS)
    return Prepared(["--data", f"tensors:{folder}"], len(splits["train"][1]), refs)


def _pair(value: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)):
        raise TypeError(f"{what} must be a pair (x, y) of tensors")
    x, y = value
    return x.detach().to("cpu", torch.float32).contiguous(), y.detach().to("cpu").reshape(-1)


def _collect(source: Dataset | DataLoader, max_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_samples`` (x, y) samples of a Dataset or DataLoader, stacked."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    n = 0
    batched = isinstance(source, DataLoader)
    items = iter(source) if batched else (source[i] for i in range(len(source)))  # type: ignore[arg-type]
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise TypeError(
                f"each {'batch' if batched else 'sample'} of data must be (x, y); got {type(item).__name__}"
            )
        x, y = item[0], item[1]
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        y = torch.as_tensor(y)
        if not batched:
            x, y = x.unsqueeze(0), y.reshape(1)
        xs.append(x.detach().cpu())
        ys.append(y.detach().cpu().reshape(-1))
        n += len(ys[-1])
        if n >= max_samples:
            break
    if not xs:
        raise ValueError("data holds no samples")
    return torch.cat(xs)[:max_samples].to(torch.float32).contiguous(), torch.cat(ys)[:max_samples]


def _check(name: str, x: torch.Tensor, y: torch.Tensor, sample_shape: tuple[int, ...], classes: int) -> None:
    if tuple(x.shape[1:]) != sample_shape:
        raise ValueError(
            f"{name} samples have shape {tuple(x.shape[1:])} but the model's example input has {sample_shape}; "
            "give data shaped as the model's input (x of shape (N, *example_inputs.shape[1:]))"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no samples")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{name}: y must hold integer class labels, not {y.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: x holds NaN or infinite values")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"{name}: labels range over {lo}..{hi} but the model has {classes} outputs; "
            f"labels must be in 0..{classes - 1}"
        )
