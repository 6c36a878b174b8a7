"""The user's module as ONNX for the core, with its ``state_dict`` names on the initializers."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts every submodule in eval mode and restores each one's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def as_tuple(example_inputs: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The example inputs as a tuple of tensors, or ``TypeError``."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if (
        isinstance(example_inputs, (tuple, list))
        and example_inputs
        and all(isinstance(t, torch.Tensor) for t in example_inputs)
    ):
        return tuple(example_inputs)
    raise TypeError(
        "example_inputs must be a tensor or a tuple of tensors (what the model's forward takes, with a batch "
        f"dimension), not {type(example_inputs).__name__}"
    )


def export(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """Writes ``model`` as ONNX at ``path``.

    The settings keep what the core must map back to the user's module: parameters and buffers
    stay initializers under their ``state_dict`` names (no constant folding; initializers kept
    as inputs, which also stops the exporter from merging equal-valued tensors into one), and
    BatchNorm stays a node of its own (not folded into the convolution, which could not be undone).
    """
    # Not under no_grad: in eval mode without gradients nn.MultiheadAttention takes its fused
    # fast path, an operator ONNX cannot express.
    with eval_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [f"input{i}" for i in range(len(inputs))]
        try:
            torch.onnx.export(
                model,
                inputs,
                str(path),
                dynamo=False,
                training=torch.onnx.TrainingMode.PRESERVE,
                do_constant_folding=False,
                keep_initializers_as_inputs=True,
                opset_version=17,
                input_names=names,
                output_names=["output"],
                dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}},
            )
        except Exception as e:  # the exporter raises many types; all but a missing package mean "cannot export this"
            if isinstance(e, ImportError) or "not installed" in str(e):
                raise ImportError(f"torch.onnx.export needs a package this environment lacks: {e}") from e
            raise TypeError(
                f"relprune cannot export {type(model).__name__} to ONNX (torch.onnx.export, TorchScript tracing): "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Make forward traceable with these "
                "example inputs (no data-dependent Python control flow, tensors in and out)"
            ) from e
