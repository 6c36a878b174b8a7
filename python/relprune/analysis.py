"""Curves, comparisons and the optimisation of the attribution method, on the user's module.

Each function exports the module, runs the core's ``curve`` / ``compare`` / ``optimize`` on it
and returns typed results (with ``.plot()``); nothing is sliced, so the module is never changed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import _core, _data, _export
from .api import Inputs, _core_device, _criterion_args, _device_of, _prepare, _refs


@dataclass(frozen=True)
class Curve:
    """Accuracy of one criterion at each pruning rate, and its summaries.

    ``a_pr`` is the mean accuracy over the rate grid (the paper's objective), ``auc`` the
    trapezoidal area, ``top_pr_95`` / ``top_pr_1pt`` the highest rate up to which accuracy stays
    ≥ 95 % of / within 1 point of the unpruned accuracy.
    """

    criterion: str
    component: str
    rates: tuple[float, ...]
    accuracies: tuple[float, ...]
    unpruned_accuracy: float
    chance: float
    a_pr: float
    auc: float
    top_pr_95: float
    top_pr_1pt: float
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, r: dict[str, Any]) -> Curve:
        """From one of the core's ``CurveResult`` objects."""
        c, s = r["curve"], r["curve"]["summary"]
        return cls(
            criterion=r["criterion"],
            component=r["component"],
            rates=tuple(c["rates"]),
            accuracies=tuple(c["accuracies"]),
            unpruned_accuracy=float(c["unpruned_accuracy"]),
            chance=float(c["chance"]),
            a_pr=float(s["a_pr"]),
            auc=float(s["auc_trapezoid"]),
            top_pr_95=float(s["top_pr_95"]),
            top_pr_1pt=float(s["top_pr_1pt"]),
            raw=r,
        )

    def plot(self, ax: Any = None) -> Any:
        """Draws accuracy against rate on ``ax`` (a new matplotlib figure when None); returns ``ax``."""
        return _plot([self], ax)


@dataclass(frozen=True)
class Comparison:
    """Several criteria's curves on the same references and evaluation samples."""

    curves: tuple[Curve, ...]

    def __getitem__(self, criterion: str) -> Curve:
        for c in self.curves:
            if c.criterion == criterion:
                return c
        raise KeyError(f"no curve for {criterion!r}; have {[c.criterion for c in self.curves]}")

    def best(self) -> Curve:
        """The curve with the highest A_PR."""
        return max(self.curves, key=lambda c: c.a_pr)

    def plot(self, ax: Any = None) -> Any:
        """Draws every curve on ``ax`` (a new matplotlib figure when None); returns ``ax``."""
        return _plot(list(self.curves), ax)


@dataclass(frozen=True)
class Study:
    """An optimisation of the LRP hyperparameters for pruning, and its winner.

    ``rules`` is the winner's rules file (YAML text); prune with it by saving it and passing
    ``criterion="file:PATH"``, or use :meth:`save_rules`. ``test`` compares the winner with
    the presets on the test split (never used to select anything). ``seeds`` gives the
    validation A_PR of each stand-alone criterion the study started from (``lrp-epsilon``,
    the LRP presets, ``gradient``, ``taylor``, as many as the trials allowed); the winner is
    never below the best of them.
    """

    best_trial: int
    best_validation_a_pr: float | None
    best_params: dict[str, Any]
    rules: str
    trials: int
    test: Comparison
    seeds: dict[str, float | None]
    raw: dict[str, Any] = field(repr=False)

    def save_rules(self, path: str | Path) -> Path:
        """Writes the winner's rules file; ``criterion=f"file:{path}"`` then prunes by it."""
        path = Path(path)
        path.write_text(self.rules)
        return path

    def plot(self, ax: Any = None) -> Any:
        """Draws the test comparison (winner and presets)."""
        return self.test.plot(ax)


def curve(
    model: nn.Module,
    example_inputs: Inputs,
    data: _data.Data,
    *,
    criterion: str = "lrp-epsilon",
    rules: str | None = None,
    component: str | None = None,
    rates: Sequence[float] | None = None,
    normalize: str | None = None,
    **options: Any,
) -> Curve:
    """Prunes by ``criterion`` at each rate of a grid and measures accuracy (``relprune curve``).

    ``rates`` defaults to the core's grid (0 to 0.95). Other keyword arguments as in
    :func:`compare`.
    """
    args = [*_criterion_args(criterion, rules, normalize)]
    result = _run("curve", model, example_inputs, data, component, rates, args, options)
    return Curve.from_json(result["results"][0])


def compare(
    model: nn.Module,
    example_inputs: Inputs,
    data: _data.Data,
    *,
    criteria: Sequence[str] = ("lrp-epsilon", "lrp-zplus", "gradient", "taylor", "weight", "random"),
    component: str | None = None,
    rates: Sequence[float] | None = None,
    normalize: str | None = None,
    seed: int = 0,
    refs_per_class: int | None = None,
    classes: int | None = None,
    device: str | torch.device | None = None,
    verbose: bool = False,
) -> Comparison:
    """Curves of several criteria on the same references and samples (``relprune compare``).

    ``classes`` restricts the task to that many classes drawn by ``seed`` (the paper's
    protocol); accuracy is measured on the ``test`` split of ``data`` (with ``(x, y)``, on the
    given samples).
    """
    if isinstance(criteria, str) or not criteria:
        raise TypeError("criteria must be a non-empty list of criterion names")
    args = ["--criteria", ",".join(criteria)]
    if normalize is not None:
        args += ["--normalize", normalize]
    options = {"seed": seed, "refs_per_class": refs_per_class, "classes": classes, "device": device, "verbose": verbose}
    result = _run("compare", model, example_inputs, data, component, rates, args, options)
    return Comparison(tuple(Curve.from_json(r) for r in result["results"]))


def optimize(
    model: nn.Module,
    example_inputs: Inputs,
    data: _data.Data,
    *,
    trials: int = 30,
    component: str | None = None,
    rates: Sequence[float] | None = None,
    space: str | Path | None = None,
    seed: int = 0,
    refs_per_class: int | None = None,
    classes: int | None = None,
    out: str | Path | None = None,
    device: str | torch.device | None = None,
    verbose: bool = False,
) -> Study:
    """Searches the LRP composite that prunes ``model`` best (``relprune optimize``).

    The objective is the A_PR on the ``val`` split of ``data`` (give ``data`` as a dict with
    ``train``, ``val`` and ``test`` to keep selection and the final comparison apart; with
    ``(x, y)`` all three are the same samples). ``out`` keeps the study (resumable, with its
    plots); by default it lives in a temporary folder.
    """
    with tempfile.TemporaryDirectory(prefix="relprune-study-") as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "study"
        args = ["--trials", str(trials), "--out", str(folder)]
        if space is not None:
            args += ["--space", str(space)]
        options = {"seed": seed, "refs_per_class": refs_per_class, "classes": classes, "device": device}
        result = _run("optimize", model, example_inputs, data, component, rates, args, {**options, "verbose": verbose})
        rules = Path(result["rules_file"]).read_text()
    best = result["best"]
    return Study(
        best_trial=int(best["trial"]),
        best_validation_a_pr=best.get("validation_a_pr"),
        best_params=dict(best["params"]),
        rules=rules,
        trials=len(result["trials"]),
        test=Comparison(tuple(Curve.from_json(r) for r in result["test"]["results"])),
        seeds={s["criterion"]: s.get("validation_a_pr") for s in result["seeds"]},
        raw=result,
    )


def _run(
    command: str,
    model: nn.Module,
    example_inputs: Inputs,
    data: _data.Data,
    component: str | None,
    rates: Sequence[float] | None,
    args: list[str],
    options: dict[str, Any],
) -> Any:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    known = {"seed", "refs_per_class", "classes", "device", "verbose"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; known: {sorted(known)}")
    inputs = _export.as_tuple(example_inputs)
    device = options.get("device")
    dev = torch.device(device) if device is not None else _device_of(model, inputs)
    with tempfile.TemporaryDirectory(prefix="relprune-") as tmp:
        work = Path(tmp)
        full = [command, *_prepare(model, inputs, data, work, _data.MAX_SAMPLES), *args]
        full += ["--seed", str(options.get("seed", 0)), "--device", _core_device(dev)]
        full += _refs(options.get("refs_per_class"), work)
        if options.get("classes") is not None:
            full += ["--classes", str(options["classes"])]
        if component is not None:
            full += ["--component", component]
        if rates is not None:
            full += ["--rates", ",".join(str(float(r)) for r in rates)]
        if "--out" not in full:
            full += ["--out", str(work / "out")]
        return _core.run(full, verbose=bool(options.get("verbose", False)))


def _plot(curves: list[Curve], ax: Any) -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # an optional dependency
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from e
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for c in curves:
        ax.plot(c.rates, c.accuracies, marker="o", markersize=3, label=f"{c.criterion} (A_PR {c.a_pr:.3f})")
    if curves:
        ax.axhline(curves[0].chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("pruning rate")
    ax.set_ylabel("accuracy")
    ax.legend()
    return ax
