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


def prepare(data: Data, example: tuple[torch.Tensor, ...], classes: int, folder: Path, max_samples: int) -> Prepared:
    """Writes ``data`` under ``folder`` as the core reads it; checks shapes and labels first.

    ``(x, y)`` serves as every split: the references are drawn from it and accuracy is measured
    on it. A mapping gives ``train`` (references, fine-tuning) and ``val`` / ``test`` apart.
    ``x`` is what the model takes: an image batch (N, C, H, W), or for a token model its token
    ids (N, T), alone or as ``(ids, attention_mask)`` in the model's input order.
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
    elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], torch.Tensor):
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
        _check(name, x, y, example, classes)
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
        arrays = {"x": x[0].numpy(), "y": y.numpy()}
        if len(x) == 2:
            arrays["mask"] = x[1].numpy()
        np.savez(folder / f"{name}.npz", **arrays)
    (folder / "classes.txt").write_text("".join(f"{k}\n" for k in range(classes)))
    refs = min(REFS_PER_CLASS, smallest or REFS_PER_CLASS)
    return Prepared(["--data", f"tensors:{folder}"], len(splits["train"][1]), refs)


Inputs = tuple[torch.Tensor, ...]


def _inputs(x: Any, what: str) -> Inputs:
    """``x`` as a tuple of CPU tensors: images as float32, token ids and masks as int64."""
    parts = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    if not parts or not all(isinstance(t, torch.Tensor) for t in parts):
        raise TypeError(f"{what}: x must be a tensor or a tuple of tensors (the model's inputs)")
    out = []
    for t in parts:
        t = t.detach().to("cpu")
        t = t.to(torch.float32) if t.dtype.is_floating_point else t.to(torch.int64)
        out.append(t.contiguous())
    return tuple(out)


def _pair(value: Any, what: str) -> tuple[Inputs, torch.Tensor]:
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], torch.Tensor)):
        raise TypeError(f"{what} must be a pair (x, y): x the model's inputs, y the labels")
    return _inputs(value[0], what), value[1].detach().to("cpu").reshape(-1)


def _collect(source: Dataset | DataLoader, max_samples: int) -> tuple[Inputs, torch.Tensor]:
    """The first ``max_samples`` (x, y) samples of a Dataset or DataLoader, stacked."""
    xs: list[Inputs] = []
    ys: list[torch.Tensor] = []
    n = 0
    batched = isinstance(source, DataLoader)
    items = iter(source) if batched else (source[i] for i in range(len(source)))  # type: ignore[arg-type]
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise TypeError(
                f"each {'batch' if batched else 'sample'} of data must be (x, y); got {type(item).__name__}"
            )
        parts = item[0] if isinstance(item[0], (tuple, list)) else (item[0],)
        parts = tuple(t if isinstance(t, torch.Tensor) else torch.as_tensor(t) for t in parts)
        y = torch.as_tensor(item[1])
        if not batched:
            parts, y = tuple(t.unsqueeze(0) for t in parts), y.reshape(1)
        xs.append(_inputs(parts, "data"))
        ys.append(y.detach().cpu().reshape(-1))
        n += len(ys[-1])
        if n >= max_samples:
            break
    if not xs:
        raise ValueError("data holds no samples")
    stacked = tuple(torch.cat([x[i] for x in xs])[:max_samples] for i in range(len(xs[0])))
    return stacked, torch.cat(ys)[:max_samples]


def _check(name: str, x: Inputs, y: torch.Tensor, example: tuple[torch.Tensor, ...], classes: int) -> None:
    tokens = not example[0].dtype.is_floating_point
    if len(x) != len(example) or (not tokens and len(x) != 1):
        raise ValueError(
            f"{name}: x holds {len(x)} tensor(s) but the model takes {len(example)} input(s); give x as the model's "
            "inputs (images (N, C, H, W), or token ids (N, T) with their attention mask)"
        )
    if tokens:
        if x[0].dtype.is_floating_point or x[0].dim() != 2:
            raise ValueError(f"{name}: x must be integer token ids of shape (N, T), as the model's example input")
        if len(x) == 2 and tuple(x[1].shape) != tuple(x[0].shape):
            raise ValueError(f"{name}: the attention mask has shape {tuple(x[1].shape)}, the ids {tuple(x[0].shape)}")
    elif tuple(x[0].shape[1:]) != tuple(example[0].shape[1:]):
        raise ValueError(
            f"{name} samples have shape {tuple(x[0].shape[1:])} but the model's example input has "
            f"{tuple(example[0].shape[1:])}; give data shaped as the model's input "
            "(x of shape (N, *example_inputs.shape[1:]))"
        )
    n = x[0].shape[0]
    if n != y.shape[0]:
        raise ValueError(f"{name}: x has {n} samples but y has {y.shape[0]} labels")
    if n == 0:
        raise ValueError(f"{name} holds no samples")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{name}: y must hold integer class labels, not {y.dtype}")
    if not tokens and not torch.isfinite(x[0]).all():
        raise ValueError(f"{name}: x holds NaN or infinite values")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"{name}: labels range over {lo}..{hi} but the model has {classes} outputs; "
            f"labels must be in 0..{classes - 1}"
        )
