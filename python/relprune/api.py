"""The workflows: prune a module, score its components.

Each call exports the module (parameters under their ``state_dict`` names), runs the core on it
and, for :func:`prune`, slices the user's own module by the core's plan and verifies it against
the core's pruned graph before returning it.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _core, _data, _export, _safetensors, _slice
from ._errors import VerificationError
from .results import PruneReport, PruneResult, Scores

Inputs = torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]
#: Outputs of the returned module and of the core's pruned graph agree to this (relative to
#: the outputs' scale).
TOLERANCE = 1e-4


def prune(
    model: nn.Module,
    example_inputs: Inputs,
    *,
    data: _data.Data = None,
    criterion: str = "auto",
    optimize: int | None = None,
    rules: str | None = None,
    component: str | None = None,
    rate: float | None = None,
    target: str | Mapping[str, float] | None = None,
    max_drop: float | None = None,
    selection: str | None = None,
    normalize: str | None = None,
    round_to: int | None = None,
    ignored: Sequence[str | nn.Module] = (),
    finetune: int | Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    inplace: bool = False,
    fallback: bool = True,
    seed: int = 0,
    refs_per_class: int | None = None,
    latency_runs: int = 10,
    max_samples: int = _data.MAX_SAMPLES,
    verbose: bool = False,
) -> PruneResult:
    """Prunes ``model`` by ``criterion`` and returns the same module class, smaller.

    Args:
        model: the network (any ``nn.Module`` the ONNX exporter can trace).
        example_inputs: a batch the model takes (a tensor or a tuple of tensors).
        data: ``(x, y)`` tensors, a ``{"train": (x, y), "val": …, "test": …}`` dict, a
            ``Dataset`` / ``DataLoader`` of ``(x, y)``, or a CLI data spec string. Attribution
            criteria draw their reference samples from it; accuracy is measured on it.
        criterion: ``auto`` (default: LRP-ε, LRP-ε-plus, gradient and Taylor, each with and
            without the per-layer mean, in the relevance and cost-aware orders, are tried at the
            budget on the validation split and the best prunes; ``report["choice"]`` holds the
            table and the winner; a given ``normalize`` or ``selection`` stays fixed; a language
            model, ``max_drop`` and several steps use ``lrp-epsilon``), or ``lrp-epsilon``,
            ``lrp`` (with ``rules``), ``lrp-zplus``, ``gradient``, ``taylor``, ``activation``,
            ``weight``, ``random``, …, or ``file:RULES.yaml`` from :func:`relprune.optimize`.
        optimize: run a study of this many trials of the LRP composite (the paper's method) on the
            validation split, its objective the accuracy over removals up to the budget, and prune
            with the winner (``report.chosen`` names the trial and its rules file).
        rules: LRP rules for ``criterion="lrp"`` (``"low=zplus,mid=epsilon,high=epsilon"``).
        component: ``filters``, ``neurons`` or ``heads``, or several ranked together joined by
            ``+`` (``neurons+heads``); default: the model's natural kind.
        rate: fraction of components to remove. One of ``rate``, ``target``, ``max_drop``.
        target: a size budget: ``"macs=0.5"`` or ``{"macs": 0.5}`` keeps half the MACs;
            ``params=``, ``latency=`` likewise.
        max_drop: an accuracy budget in percentage points.
        selection: ``relevance``, ``cost-aware``, ``uniform`` (every layer loses the same share) or
            ``kv-groups`` (whole key/value groups of grouped-query attention).
        normalize: per-layer scaling before the global ranking (``none``, ``mean``, ``lamp``, …).
        round_to: keep every pruned width a multiple of this.
        ignored: modules (or their names) never pruned, with the layers coupled to them.
        finetune: epochs of recovery fine-tuning in the core (or a dict of the CLI's fine-tuning
            options: ``{"epochs": 1, "lr": 0.01, "batch": 128, "distill": True}``; ``steps`` or
            ``tokens`` make an epoch that many optimiser steps or tokens, ``val_samples`` the
            validation samples that pick the kept epoch).
        device: where the core works (default: the model's device).
        inplace: prune ``model`` itself instead of a copy (a model that cannot be sliced is then an
            error, as no other module can take its place).
        fallback: where the model cannot be sliced (a forward with hard-coded shapes, a layer
            relprune cannot resize), return relprune's pruned graph as a trainable
            ``relprune.GraphModule`` instead (said in ``.generic`` and as a warning); ``False``
            raises the slicing error.
        seed: the reference draw's seed.
        refs_per_class: reference samples per class (default: 10, fewer when the data has fewer).
        latency_runs: timed forward passes for the latency figures at batch 1 (batch 64 takes a
            quarter of them, at least 3); 0 skips measuring latency.
        max_samples: samples read from a ``Dataset`` / ``DataLoader``.
        verbose: show the core's progress on stderr.

    Returns:
        :class:`PruneResult` with ``.model``, ``.removed``, ``.report`` and ``.save_onnx()``.

    Raises:
        TypeError: the model cannot be exported, or an argument has the wrong type.
        ValueError: input to change (data that does not fit, an unknown criterion, a budget
            that cannot be met), with the core's message.
        VerificationError: the sliced module would not compute what the pruned graph computes.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    inputs = _export.as_tuple(example_inputs)
    amount = _amount(rate, target, max_drop)
    names = _module_names(model, ignored)
    dev = torch.device(device) if device is not None else _device_of(model, inputs)
    with tempfile.TemporaryDirectory(prefix="relprune-") as tmp:
        work = Path(tmp)
        base = _prepare(model, inputs, data, work, max_samples)
        args = ["prune", *base, *_criterion_args(criterion, rules, normalize), *amount]
        args += ["--seed", str(seed), "--device", _core_device(dev), "--latency-runs", str(latency_runs)]
        args += ["--split", "test", "--eval-samples", "0"]
        if not inputs[0].dtype.is_floating_point:  # token ids: MACs and latency at the example's length
            args += ["--seq-len", str(inputs[0].shape[-1])]
        args += _refs(refs_per_class, work)
        if component is not None:
            args += ["--component", component]
        if selection is not None:
            args += ["--selection", selection]
        if optimize is not None:
            if isinstance(optimize, bool) or not isinstance(optimize, int):
                raise TypeError(f"optimize must be a number of trials, not {type(optimize).__name__}")
            args += ["--optimize", str(optimize)]
        if round_to is not None:
            args += ["--round-to", str(round_to)]
        for name in names:
            args += ["--ignore", name]
        args += _finetune_args(finetune)
        args += ["--out", str(work / "out")]
        raw = _core.run(args, verbose=verbose)
        report = PruneReport.from_json(raw)
        if report.finetune_kept_pruned:
            warnings.warn(
                "relprune: fine-tuning did not beat the pruned model on validation; the pruned weights are kept "
                "(try a lower finetune lr or more epochs)",
                stacklevel=2,
            )
        plan_json = json.loads((work / "out" / "plan.json").read_text())
        plan = _slice.parse_plan(plan_json["params"])
        weights = _safetensors.load(work / "out" / "model" / "model.safetensors")
        finetuned = report.raw.get("finetune") is not None
        expected = _core_outputs(work, inputs)
        # Slice a copy first: a plan that does not fit leaves the caller's model as it was.
        target_model: nn.Module = copy.deepcopy(model)
        generic = None
        try:
            sliced = _slice.apply_plan(target_model, plan)
            _load_core_weights(target_model, weights, finetuned=finetuned)
            difference = _verify(target_model, inputs, expected, sliced)
        except (_slice.SliceError, VerificationError) as e:
            if inplace or not fallback:
                raise
            sliced = _slice.SliceReport(sliced={}, modules={}, replaced={}, notes=[])
            target_model, difference = _generic(work / "out" / "model", inputs, expected, dev, model, sliced)
            generic = (
                f"{type(model).__name__} could not be sliced ({e}); the model is relprune's pruned graph as a module"
            )
            warnings.warn(f"relprune: {generic}", stacklevel=2)
        if inplace:
            _slice.apply_plan(model, plan)
            _load_core_weights(model, weights, finetuned=finetuned)
            target_model = model
    removed = {name: _removed(layer) for name, layer in plan_json["layers"].items()}
    return PruneResult(
        model=target_model,
        removed=removed,
        report=report,
        replaced=dict(sliced.replaced),
        notes=list(sliced.notes),
        max_difference=difference,
        generic=generic,
        _example_inputs=inputs,
    )


def _generic(
    folder: Path,
    inputs: tuple[torch.Tensor, ...],
    expected: torch.Tensor,
    dev: torch.device,
    model: nn.Module,
    nothing_sliced: _slice.SliceReport,
) -> tuple[nn.Module, float]:
    """The core's pruned graph as a trainable module (``GraphModule``), verified like a slice."""
    from ._graph_module import GraphModule

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    module = GraphModule.load(folder, device=dev, dtype=dtype)
    return module, _verify(module, inputs, expected, nothing_sliced)


def scores(
    model: nn.Module,
    example_inputs: Inputs,
    data: _data.Data = None,
    *,
    criterion: str = "lrp-epsilon",
    rules: str | None = None,
    component: str | None = None,
    normalize: str | None = None,
    ranked: bool = False,
    seed: int = 0,
    refs_per_class: int | None = None,
    device: str | torch.device | None = None,
    max_samples: int = _data.MAX_SAMPLES,
    verbose: bool = False,
) -> Scores:
    """Per-unit scores of every prunable layer of ``model``, by the layer's module name.

    The scores are the criterion's own (with ``normalize`` applied when given); ``ranked=True``
    gives them as :func:`prune` ranks them (scaled per layer by the default normalisation).
    Arguments as for :func:`prune`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    inputs = _export.as_tuple(example_inputs)
    dev = torch.device(device) if device is not None else _device_of(model, inputs)
    with tempfile.TemporaryDirectory(prefix="relprune-") as tmp:
        work = Path(tmp)
        args = ["scores", *_prepare(model, inputs, data, work, max_samples)]
        args += [*_criterion_args(criterion, rules, normalize), "--seed", str(seed), "--device", _core_device(dev)]
        args += _refs(refs_per_class, work)
        if component is not None:
            args += ["--component", component]
        if ranked:
            args.append("--ranked")
        raw = _core.run(args, verbose=verbose)
    layers = {layer["name"]: torch.tensor(layer["scores"], dtype=torch.float64) for layer in raw["layers"]}
    return Scores(criterion=raw["criterion"], component=raw["component"], ranked=raw["ranked"], layers=layers)


# --- helpers ------------------------------------------------------------------------------


def _prepare(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], data: _data.Data, work: Path, max_samples: int
) -> list[str]:
    """Exports the model and writes the data; returns the core's model and data options."""
    with _export.eval_mode(model), torch.no_grad():
        out = model(*inputs)
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise TypeError(
            "the model's output must be one tensor of shape (N, classes) (a classifier's logits); "
            f"got {type(out).__name__}{f' of shape {tuple(out.shape)}' if isinstance(out, torch.Tensor) else ''}"
        )
    _export.export(model, inputs, work / "model.onnx")
    prepared = _data.prepare(data, inputs, int(out.shape[-1]), work / "data", max_samples)
    (work / "refs").write_text("" if prepared.refs_per_class is None else str(prepared.refs_per_class))
    return ["--model", str(work / "model.onnx"), *prepared.args]


def _refs(given: int | None, work: Path) -> list[str]:
    if given is not None:
        return ["--refs-per-class", str(given)]
    text = (work / "refs").read_text()
    return ["--refs-per-class", text] if text else []


def _criterion_args(criterion: str, rules: str | None, normalize: str | None) -> list[str]:
    if not isinstance(criterion, str):
        raise TypeError(f"criterion must be a string such as 'lrp-epsilon', not {type(criterion).__name__}")
    args = ["--criterion", criterion]
    if rules is not None:
        args += ["--rules", rules]
    if normalize is not None:
        args += ["--normalize", normalize]
    return args


def _amount(rate: float | None, target: str | Mapping[str, float] | None, max_drop: float | None) -> list[str]:
    given = [(k, v) for k, v in (("rate", rate), ("target", target), ("max_drop", max_drop)) if v is not None]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of rate=, target= or max_drop= (e.g. target='macs=0.5'); "
            f"got {', '.join(k for k, _ in given) or 'none'}"
        )
    key, value = given[0]
    if key == "target":
        if isinstance(value, Mapping):
            if len(value) != 1:
                raise ValueError(f"target as a dict holds one measure, e.g. {{'macs': 0.5}}; got {dict(value)}")
            ((measure, fraction),) = value.items()
            value = f"{measure}={fraction}"
        if not isinstance(value, str):
            raise TypeError(
                f"target must be a string like 'macs=0.5' or a dict like {{'macs': 0.5}}, not {type(value).__name__}"
            )
        return ["--target", value]
    if not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number, not {type(value).__name__}")
    return [f"--{key.replace('_', '-')}", str(value)]


def _finetune_args(finetune: int | Mapping[str, Any] | None) -> list[str]:
    if finetune is None or finetune == 0:
        return []
    if isinstance(finetune, bool) or not isinstance(finetune, (int, Mapping)):
        raise TypeError(f"finetune must be a number of epochs or a dict of options, not {type(finetune).__name__}")
    opts = {"epochs": finetune} if isinstance(finetune, int) else dict(finetune)
    flags = {"epochs": "--finetune", "lr": "--ft-lr", "batch": "--ft-batch", "samples": "--ft-samples",
             "val_samples": "--ft-val-samples", "steps": "--ft-steps", "tokens": "--ft-tokens",
             "temperature": "--distill-temperature", "alpha": "--distill-alpha"}  # fmt: skip
    unknown = sorted(set(opts) - set(flags) - {"distill"})
    if unknown:
        raise ValueError(f"unknown fine-tuning option(s) {unknown}; known: {sorted([*flags, 'distill'])}")
    if "epochs" not in opts:
        raise ValueError("finetune as a dict needs 'epochs'")
    args: list[str] = []
    for k, flag in flags.items():
        if k in opts:
            args += [flag, str(opts[k])]
    if opts.get("distill"):
        args.append("--distill")
    return args


def _module_names(model: nn.Module, ignored: Sequence[str | nn.Module]) -> list[str]:
    """Names of the ignored modules (given as names or as modules of ``model``)."""
    if isinstance(ignored, (str, nn.Module)):
        ignored = [ignored]
    by_id = {id(m): n for n, m in model.named_modules()}
    names = []
    for item in ignored:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, nn.Module):
            if id(item) not in by_id or not by_id[id(item)]:
                raise ValueError(f"ignored module {type(item).__name__} is not a submodule of the model")
            names.append(by_id[id(item)])
        else:
            raise TypeError(f"ignored takes module names or modules, not {type(item).__name__}")
    return names


def _device_of(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.device:
    for p in model.parameters():
        return p.device
    return inputs[0].device


def _core_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda:{dev.index}" if dev.index is not None else "cuda"
    if dev.type == "cpu":
        return "cpu"
    raise ValueError(f"relprune's core runs on cpu or cuda; the model is on {dev}")


def _core_outputs(work: Path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The core's pruned graph's outputs on the example inputs."""
    files = []
    for i, t in enumerate(inputs):
        path = work / f"input{i}.npy"
        np.save(path, t.detach().cpu().numpy())
        files.append(str(path))
    out = work / "expected.npy"
    _core.run(["run", "--model", str(work / "out" / "model"), "--input", *files, "--output", str(out)])
    return torch.from_numpy(np.load(out))


def _load_core_weights(model: nn.Module, weights: dict[str, torch.Tensor], *, finetuned: bool) -> None:
    """Copies the core's pruned tensors into the sliced module where the names are the user's.

    Without fine-tuning they must already be equal (the slice is checked by it); after
    fine-tuning they are the trained values.
    """
    state = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, value in weights.items():
            mine = state.get(name)
            if mine is None:
                continue
            if tuple(mine.shape) != tuple(value.shape):
                raise VerificationError(
                    f"`{name}`: the sliced module holds shape {tuple(mine.shape)}, the core's pruned graph "
                    f"{tuple(value.shape)}; the module that owns it cannot be sliced by relprune"
                )
            if finetuned:
                mine.copy_(value.to(mine.dtype))
            elif not torch.equal(mine.detach().cpu().to(value.dtype), value):
                module = name.rsplit(".", 1)[0]
                raise VerificationError(
                    f"`{name}` sliced by the plan differs from the core's pruned tensor; module `{module}` "
                    "cannot be sliced by relprune. The model was not changed; pass it as ignored= to leave it whole"
                )


def _verify(model: nn.Module, inputs: tuple[torch.Tensor, ...], expected: torch.Tensor, sliced: Any) -> float:
    """The largest output difference to the core's graph, or ``VerificationError``."""
    try:
        with _export.eval_mode(model), torch.no_grad():
            got = model(*inputs).detach().float().cpu()
    except Exception as e:  # a forward that reads shapes relprune did not update fails in any way
        raise VerificationError(f"the sliced module does not run: {type(e).__name__}: {e}") from e
    if tuple(got.shape) != tuple(expected.shape):
        raise VerificationError(
            f"the sliced module outputs shape {tuple(got.shape)}, the core's {tuple(expected.shape)}"
        )
    scale = max(1.0, float(expected.abs().max()))
    diff = float((got - expected).abs().max())
    if not diff <= TOLERANCE * scale:
        suspects = list(sliced.replaced) + [n.split(":")[0] for n in sliced.notes]
        where = f"; modules relprune could not check by their class: {suspects}" if suspects else ""
        raise VerificationError(
            f"the sliced module's outputs differ from relprune's pruned graph by {diff:.3g} (outputs up to "
            f"{scale:.3g}){where}. The model was not changed; pass the module as ignored= to leave it whole"
        )
    return diff


def _removed(layer: Mapping[str, Any]) -> list[int]:
    kept = set(layer["kept"])
    return [u for u in range(int(layer["count"])) if u not in kept]
