"""Typed results of the API (read from the core's JSON reports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Measures:
    """A model's size and quality: parameters, MACs per sample, accuracy, latency (ms, median)."""

    parameters: int
    macs: int
    accuracy: float | None
    latency_ms_batch1: float | None
    latency_ms_batch64: float | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Measures:
        """From the core's ``Measures`` object."""

        def ms(v: dict[str, Any] | None) -> float | None:
            return None if v is None else float(v["median_ms"])

        return cls(
            parameters=int(d["parameters"]),
            macs=int(d["macs"]),
            accuracy=d.get("accuracy"),
            latency_ms_batch1=ms(d.get("latency_batch1")),
            latency_ms_batch64=ms(d.get("latency_batch64")),
        )


@dataclass(frozen=True)
class PruneReport:
    """What a prune did: the criterion, the amount removed, and the measures before and after.

    ``before.accuracy`` / ``after.accuracy`` are measured on the evaluation data (the ``test``
    split of ``data``; with ``(x, y)`` the given samples), ``after`` right after surgery; the
    fine-tuned accuracy is ``finetuned_accuracy``. ``finetune_kept_pruned``: fine-tuning did not
    beat the pruned model on validation, so the pruned weights were kept (a warning says so).
    ``chosen``: how the criterion was chosen, when it was not given: the candidates tried on the
    validation split and the winner (``{"candidates": [...], "chosen": i, ...}``), or the study
    behind ``optimize=N`` (``{"study": ..., "trial": ..., "rules_file": ...}``, and ``"selection"`` where
    the study chose the selection order); None otherwise.
    ``raw`` is the core's whole ``prune.json``.
    """

    criterion: str
    component: str
    rate: float
    normalize: str
    before: Measures
    after: Measures
    parameter_ratio: float
    macs_ratio: float
    finetuned_accuracy: float | None
    finetune_kept_pruned: bool
    emptied: tuple[str, ...]
    chosen: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PruneReport:
        """From the core's ``prune.json``."""
        ft = d.get("finetune")
        return cls(
            criterion=d["criterion"],
            component=d["component"],
            rate=float(d["rate"]),
            normalize=str(d["normalize"]),
            before=Measures.from_json(d["before"]),
            after=Measures.from_json(d["after"]),
            parameter_ratio=float(d["parameter_ratio"]),
            macs_ratio=float(d["macs_ratio"]),
            finetuned_accuracy=None if ft is None else ft.get("accuracy"),
            finetune_kept_pruned=bool(ft and ft["training"].get("kept_start")),
            emptied=tuple(d["surgery"]["emptied"]),
            chosen=d.get("choice") or d.get("study"),
            raw=d,
        )


@dataclass
class PruneResult:
    """The pruned model and what was done to it.

    Attributes:
        model: the user's own module (same classes, same names), its tensors sliced.
        removed: layer name → the removed unit indices (filters, neurons or heads) in the
            unpruned model's numbering; layer names are the module names of the model.
        report: parameters, MACs, accuracy and latency, before and after.
        replaced: module name → why it was swapped for a relprune class (empty when none was).
        notes: what the slicing could not check by itself (the outputs were verified anyway).
        max_difference: the largest difference between ``model``'s outputs and the core's
            pruned graph's on the example inputs (verified below the tolerance).
        generic: None when ``model`` is the user's own module sliced; otherwise why it could not
            be sliced, and ``model`` is relprune's pruned graph as a ``GraphModule`` (its
            parameters keep the user's names).
    """

    model: nn.Module
    removed: dict[str, list[int]]
    report: PruneReport
    replaced: dict[str, str]
    notes: list[str]
    max_difference: float
    generic: str | None
    _example_inputs: tuple[torch.Tensor, ...] = field(repr=False)

    def save_onnx(self, path: str | Path) -> Path:
        """Exports the pruned module to ONNX at ``path`` (opset 17, batch dimension dynamic).

        The file keeps the module's parameter names and its BatchNorm layers, so it can be pruned
        again or fine-tuned after an import; fold BatchNorm for deployment with your runtime's
        optimiser (onnxruntime does it when it loads the file).
        """
        from ._export import export

        path = Path(path)
        export(self.model, self._example_inputs, path)
        return path


@dataclass(frozen=True)
class Scores:
    """Per-unit scores of every prunable layer, by layer (module) name."""

    criterion: str
    component: str
    ranked: bool
    layers: dict[str, torch.Tensor]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.layers[name]

    def __iter__(self):  # noqa: D105
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)
