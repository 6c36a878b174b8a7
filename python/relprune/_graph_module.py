"""A relprune graph folder (``graph.json`` + ``model.safetensors``) as a trainable torch module.

This is the fallback of :func:`relprune.prune` for a module that cannot be sliced: the core's
pruned graph, rebuilt in PyTorch. The format is ``docs/graph-format.md``; every op computes
exactly what its Rust forward does (``src/graph/ops/<op>.rs``), so the module's outputs are the
core's ``relprune run`` outputs.

Parameter layout: the module's ``state_dict()`` keys are the graph's safetensors keys, dots
included (``layer1.0.conv1.weight``). Each key is registered under a tree of plain holder
submodules built from its dotted prefixes (``layer1`` → ``0`` → ``conv1`` holds ``weight``),
inserted into the module dictionaries directly so that no key can clash with an ``nn.Module``
attribute name (``train``, ``eval``, …). The ops themselves hold no tensors: each node reads
its parameters from the tree by key at every forward, so ``.to()``, ``load_state_dict``,
optimisers and ``torch.save`` all see ordinary parameters (weights) and buffers (BatchNorm
running statistics).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from . import _safetensors

__all__ = ["GRAPH_FORMAT", "GraphModule", "OP_TYPES"]

#: The version of ``graph.json`` this module reads.
GRAPH_FORMAT = 1
# Bounds of the core's checks (src/graph/mod.rs): sizes, spatial fields.
_MAX_FIELD = 1 << 24
_MAX_SPATIAL = 1 << 16
# Additive bias that removes masked keys from the softmax (the core's, as Hugging Face's).
_MASK_BIAS = -3.402823466e38
_ROLES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_GRAPH_FIELDS = {"format", "nodes", "inputs", "output", "ignored_keys"}
_NODE_FIELDS = {"name", "op", "inputs", "params"}

Tensor = torch.Tensor
Params = Mapping[str, Tensor]


# --- field checks: each returns the value or raises ValueError naming the field ----------------


def _int(lo: int, hi: int = _MAX_FIELD) -> Callable[[str, Any], int]:
    def check(field: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{field} must be a whole number, not {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{field} = {v} is outside {lo}..={hi}")
        return v

    return check


def _pair(lo: int) -> Callable[[str, Any], tuple[int, int]]:
    def check(field: str, v: Any) -> tuple[int, int]:
        if not isinstance(v, list) or len(v) != 2:
            raise ValueError(f"{field} must be a list of two whole numbers, not {v!r}")
        item = _int(lo, _MAX_SPATIAL)
        return item(field, v[0]), item(field, v[1])

    return check


def _float(lo: float = -math.inf, hi: float = math.inf, *, below_hi: bool = False) -> Callable[[str, Any], float]:
    def check(field: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{field} must be a finite number, not {v!r}")
        if v < lo or v > hi or (below_hi and v == hi):
            raise ValueError(f"{field} = {v} is outside [{lo}, {hi}{')' if below_hi else ']'}")
        return float(v)

    return check


def _bool(field: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{field} must be true or false, not {v!r}")
    return v


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """``check``, or ``None`` for an absent (null or defaulted) field."""

    def optional(field: str, v: Any) -> Any:
        return None if v is None else check(field, v)

    return optional


def _spatial_list(n: int) -> Callable[[str, Any], list[int]]:
    def check(field: str, v: Any) -> list[int]:
        if not isinstance(v, list) or len(v) != n:
            raise ValueError(f"{field} must be a list of {n} whole numbers, not {v!r}")
        return [_int(0, _MAX_SPATIAL)(field, x) for x in v]

    return check


def _choice(*names: str) -> Callable[[str, Any], str]:
    def check(field: str, v: Any) -> str:
        if v not in names:
            raise ValueError(f"{field} must be one of {', '.join(names)}, not {v!r}")
        return v

    return check


_fill = _choice("zero", "neg_infinity")


_POS = _int(1)
_NAT = _int(0)
_NON_NEGATIVE = _float(0.0)


def _positive_list(field: str, v: Any) -> list[int]:
    """A list of whole numbers of at least 1."""
    if not isinstance(v, list):
        raise ValueError(f"field `{field}` must be a list of whole numbers, got {v!r}")
    return [_POS(field, x) for x in v]


def _fields(cfg: Mapping[str, Any], spec: Mapping[str, Callable[[str, Any], Any]], what: str) -> dict[str, Any]:
    """``cfg``'s fields checked against ``spec``: unknown and missing fields are errors."""
    unknown = sorted(set(cfg) - set(spec))
    if unknown:
        raise ValueError(f"unknown field `{unknown[0]}` in {what} (fields: {', '.join(spec) or 'none'})")
    missing = [f for f in spec if f not in cfg]
    if missing:
        raise ValueError(f"{what} lacks the field `{missing[0]}`")
    return {f: check(f, cfg[f]) for f, check in spec.items()}


# --- ops -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    """One tensor an op reads: its role, shape, and kind (weight, buffer or optional buffer)."""

    role: str
    shape: tuple[int, ...]
    kind: str = "weight"


class _Op:
    """One node's computation: its checked fields, the tensors it reads, its forward."""

    fields: ClassVar[Mapping[str, Callable[[str, Any], Any]]] = {}
    #: Fields the core leaves out of graph.json when they hold their default.
    defaults: ClassVar[Mapping[str, Any]] = {}
    arity: ClassVar[tuple[int, int | None]] = (1, 1)

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        for name, value in _fields({**self.defaults, **cfg}, self.fields, "the op").items():
            setattr(self, name, value)
        self.check()

    def check(self) -> None:
        """Checks relations between fields (raises ValueError)."""

    def accepts(self) -> tuple[int, int | None]:
        """How many inputs the op takes: (fewest, most or None)."""
        return self.arity

    def params(self) -> list[_Param]:
        """The tensors the op reads."""
        return []

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The output from the inputs and the node's tensors by role."""
        raise NotImplementedError


_OPS: dict[str, type[_Op]] = {}


def _op(name: str) -> Callable[[type[_Op]], type[_Op]]:
    def register(cls: type[_Op]) -> type[_Op]:
        _OPS[name] = cls
        return cls

    return register


_INPUT_KINDS = {
    "image": {"channels": _POS, "height": _int(1, _MAX_SPATIAL), "width": _int(1, _MAX_SPATIAL)},
    "token_ids": {"max_len": _POS},
    "attention_mask": {"max_len": _POS},
}


@_op("input")
class _Input(_Op):
    arity = (0, 0)

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        kinds = [k for k in cfg if k in _INPUT_KINDS]
        if len(cfg) != 1 or len(kinds) != 1:
            raise ValueError(f"an input takes exactly one of {', '.join(_INPUT_KINDS)}, got {sorted(cfg)}")
        self.kind = kinds[0]
        if not isinstance(cfg[self.kind], Mapping):
            raise ValueError(f"`{self.kind}` must be an object")
        self.size = _fields(cfg[self.kind], _INPUT_KINDS[self.kind], f"`{self.kind}`")

    def expectation(self) -> str:
        """What the input expects, for error messages."""
        if self.kind == "image":
            s = self.size
            return f"float images of shape (B, {s['channels']}, {s['height']}, {s['width']})"
        what = "token ids" if self.kind == "token_ids" else "a mask"
        return f"integer {what} of shape (B, T ≤ {self.size['max_len']})"

    def bind(self, t: object, device: torch.device, dtype: torch.dtype) -> Tensor | None:
        """``t`` checked and placed where the module computes; ``None`` when it does not fit."""
        if not isinstance(t, Tensor):
            return None
        if self.kind == "image":
            s = self.size
            shape = (s["channels"], s["height"], s["width"])
            fits = t.dim() == 4 and t.is_floating_point() and tuple(t.shape[1:]) == shape
            return t.to(device=device, dtype=dtype) if fits else None
        # Ids and masks: any integer (or boolean mask) type, as int64; at most max_len tokens.
        integer = not t.is_floating_point() and not t.is_complex()
        fits = t.dim() == 2 and integer and t.shape[1] <= self.size["max_len"]
        return t.to(device=device, dtype=torch.long) if fits else None


class _Affine(_Op):
    """Shared parameter declaration of linear maps with an (out, in) weight and optional bias."""

    def _weight_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def params(self) -> list[_Param]:
        """Weight, and the bias when the op has one."""
        out = self._weight_shape()[0]
        return [_Param("weight", self._weight_shape())] + ([_Param("bias", (out,))] if self.bias else [])


@_op("conv2d")
class _Conv2d(_Affine):
    fields = {
        "in_channels": _POS,
        "out_channels": _POS,
        "kernel": _pair(1),
        "stride": _pair(1),
        "padding": _pair(0),
        "dilation": _pair(1),
        "groups": _POS,
        "bias": _bool,
    }

    def check(self) -> None:
        """Channels split evenly into the groups."""
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{self.in_channels} input and {self.out_channels} output channels are not divisible into "
                f"{self.groups} groups"
            )

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Cross-correlation with symmetric zero padding (``padding`` on each side)."""
        return F.conv2d(xs[0], p["weight"], p.get("bias"), self.stride, self.padding, self.dilation, self.groups)


@_op("linear")
class _Linear(_Affine):
    fields = {"in_features": _NAT, "out_features": _NAT, "bias": _bool}

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """x·Wᵀ + b over the last dimension."""
        return F.linear(xs[0], p["weight"], p.get("bias"))


@_op("channel_linear")
class _ChannelLinear(_Affine):
    fields = {"in_channels": _NAT, "out_channels": _NAT, "bias": _bool}

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """A linear layer over dimension 1 (the channels of a map)."""
        return F.linear(xs[0].movedim(1, -1), p["weight"], p.get("bias")).movedim(-1, 1)


@_op("batch_norm2d")
class _BatchNorm2d(_Op):
    fields = {"features": _POS, "eps": _NON_NEGATIVE, "momentum": _NON_NEGATIVE}

    def params(self) -> list[_Param]:
        """Affine weight and bias; running statistics as buffers; the optional batch counter."""
        f = (self.features,)
        return [
            _Param("weight", f),
            _Param("bias", f),
            _Param("running_mean", f, "buffer"),
            _Param("running_var", f, "buffer"),
            _Param("num_batches_tracked", (), "optional"),
        ]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Batch statistics in training (updating the running ones by ``momentum``), running ones otherwise."""
        y = F.batch_norm(
            xs[0], p["running_mean"], p["running_var"], p["weight"], p["bias"], training, self.momentum, self.eps
        )
        if training and "num_batches_tracked" in p:
            with torch.no_grad():
                p["num_batches_tracked"].add_(1)
        return y


@_op("layer_norm")
class _LayerNorm(_Op):
    fields = {"dim": _POS, "eps": _NON_NEGATIVE}

    def params(self) -> list[_Param]:
        """Weight and bias over the last dimension."""
        return [_Param("weight", (self.dim,)), _Param("bias", (self.dim,))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """LayerNorm over the last dimension."""
        return F.layer_norm(xs[0], (self.dim,), p["weight"], p["bias"], self.eps)


@_op("layer_norm2d")
class _LayerNorm2d(_Op):
    fields = {"channels": _POS, "eps": _NON_NEGATIVE}

    def params(self) -> list[_Param]:
        """Weight and bias per channel."""
        return [_Param("weight", (self.channels,)), _Param("bias", (self.channels,))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """LayerNorm over the channels (dimension −3) of a map."""
        y = F.layer_norm(xs[0].movedim(-3, -1), (self.channels,), p["weight"], p["bias"], self.eps)
        return y.movedim(-1, -3)


@_op("group_norm")
class _GroupNorm(_Op):
    fields = {"groups": _POS, "channels": _POS, "eps": _NON_NEGATIVE}

    def check(self) -> None:
        """The channels split into the groups."""
        if self.channels % self.groups:
            raise ValueError(f"{self.channels} channels do not split into {self.groups} groups")

    def params(self) -> list[_Param]:
        """Weight and bias per channel."""
        return [_Param("weight", (self.channels,)), _Param("bias", (self.channels,))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """``F.group_norm`` over a map."""
        return F.group_norm(xs[0], self.groups, p["weight"], p["bias"], self.eps)


@_op("rms_norm")
class _RmsNorm(_Op):
    fields = {"dim": _POS, "eps": _NON_NEGATIVE}

    def params(self) -> list[_Param]:
        """Weight over the last dimension."""
        return [_Param("weight", (self.dim,))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """RMSNorm over the last dimension, x / √(mean(x²) + ε) · w, normalised in float32 or wider (LLaMA's)."""
        x = xs[0]
        if x.shape[-1] != self.dim:
            raise ValueError(f"input has last dimension {x.shape[-1]}, expected {self.dim}")
        wide = torch.float64 if x.dtype == torch.float64 else torch.float32
        xw = x.to(wide)
        ms = xw.square().mean(-1, keepdim=True)
        return (xw * ms.add(self.eps).rsqrt()).to(x.dtype) * p["weight"]


@_op("scale")
class _Scale(_Op):
    fields = {"channels": _POS, "last": _bool, "bias": _bool}
    defaults = {"last": False, "bias": False}

    def params(self) -> list[_Param]:
        """One factor (and shift) per channel, shaped (C, 1, 1) for a map, (C) when the channels are last."""
        shape = (self.channels,) if self.last else (self.channels, 1, 1)
        return [_Param("weight", shape)] + ([_Param("bias", shape)] if self.bias else [])

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The input times its per-channel factors (layer scale), plus the shift."""
        y = xs[0] * p["weight"]
        return y + p["bias"] if self.bias else y


class _Pointwise(_Op):
    """A parameter-free function of one input."""

    fn: ClassVar[Callable[[Tensor], Tensor]]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The function applied elementwise."""
        return type(self).fn(xs[0])


@_op("relu")
class _Relu(_Pointwise):
    fn = staticmethod(torch.relu)


@_op("tanh")
class _Tanh(_Pointwise):
    fn = staticmethod(torch.tanh)


@_op("sigmoid")
class _Sigmoid(_Pointwise):
    fn = staticmethod(torch.sigmoid)


@_op("silu")
class _Silu(_Pointwise):
    fn = staticmethod(F.silu)


@_op("hardsigmoid")
class _Hardsigmoid(_Pointwise):
    fn = staticmethod(F.hardsigmoid)


@_op("hardswish")
class _Hardswish(_Pointwise):
    fn = staticmethod(F.hardswish)


@_op("patches_to_tokens")
class _PatchesToTokens(_Pointwise):
    # (B, C, H, W) → (B, H·W, C).
    fn = staticmethod(lambda x: x.flatten(2).transpose(1, 2))


@_op("gelu")
class _Gelu(_Op):
    fields = {"tanh": _bool}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Exact (erf) GELU, or the tanh approximation when ``tanh``."""
        return F.gelu(xs[0], approximate="tanh" if self.tanh else "none")


@_op("hardtanh")
class _Hardtanh(_Op):
    fields = {"min_val": _float(), "max_val": _float()}

    def check(self) -> None:
        """The range is not empty."""
        if not self.min_val < self.max_val:
            raise ValueError(f"min_val {self.min_val} must be below max_val {self.max_val}")

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """A clamp, as the core's (its gradient passes at the bounds, unlike ``F.hardtanh``'s)."""
        return torch.clamp(xs[0], self.min_val, self.max_val)


@_op("leaky_relu")
class _LeakyRelu(_Op):
    fields = {"negative_slope": _float()}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """``F.leaky_relu`` with the node's slope."""
        return F.leaky_relu(xs[0], self.negative_slope)


@_op("pow")
class _Pow(_Op):
    fields = {"exponent": _float()}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """``torch.pow`` by the node's constant exponent."""
        return torch.pow(xs[0], self.exponent)


@_op("max_pool2d")
class _MaxPool2d(_Op):
    fields = {"kernel": _pair(1), "stride": _pair(1), "padding": _pair(0), "ceil_mode": _bool}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Max pooling (dilation 1)."""
        return F.max_pool2d(xs[0], self.kernel, self.stride, self.padding, 1, self.ceil_mode)


@_op("avg_pool2d")
class _AvgPool2d(_Op):
    fields = {
        "kernel": _pair(1),
        "stride": _pair(1),
        "padding": _pair(0),
        "ceil_mode": _bool,
        "count_include_pad": _bool,
    }
    defaults = {"ceil_mode": False, "count_include_pad": True}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Average pooling (by default padding counted, floor mode: PyTorch's defaults)."""
        return F.avg_pool2d(
            xs[0],
            self.kernel,
            self.stride,
            self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )


@_op("pad2d")
class _Pad2d(_Op):
    fields = {"pads": _spatial_list(4), "fill": _fill}
    defaults = {"fill": "zero"}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Constant padding of height and width, pads (top, left, bottom, right)."""
        top, left, bottom, right = self.pads
        value = -math.inf if self.fill == "neg_infinity" else 0.0
        return F.pad(xs[0], (left, right, top, bottom), value=value)


@_op("map_position_embedding")
class _MapPositionEmbedding(_Op):
    fields = {"channels": _POS, "height": _POS, "width": _POS}

    def params(self) -> list[_Param]:
        """The table, shaped (1, channels, height, width)."""
        return [_Param("weight", (1, self.channels, self.height, self.width))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The map plus its position table."""
        return xs[0] + p["weight"]


@_op("token_slice")
class _TokenSlice(_Op):
    fields = {"start": _NAT, "length": _POS}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Tokens ``start .. start + length`` of (B, T, D)."""
        return xs[0][:, self.start : self.start + self.length]


@_op("token_linear")
class _TokenLinear(_Op):
    fields = {"in_tokens": _POS, "out_tokens": _POS, "bias": _bool}

    def params(self) -> list[_Param]:
        """Weight (out_tokens, in_tokens), bias per output token."""
        w = [_Param("weight", (self.out_tokens, self.in_tokens))]
        return w + ([_Param("bias", (self.out_tokens,))] if self.bias else [])

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """A linear layer over the token axis of (B, T, C)."""
        return F.linear(xs[0].transpose(1, 2), p["weight"], p.get("bias")).transpose(1, 2)


@_op("resize2d")
class _Resize2d(_Op):
    fields = {"output": _pair(1), "mode": _choice("nearest", "bilinear", "bicubic"), "align_corners": _bool}
    defaults = {"align_corners": False}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """``F.interpolate`` to the fixed output size."""
        align = self.align_corners if self.mode != "nearest" else None
        return F.interpolate(xs[0], size=self.output, mode=self.mode, align_corners=align)


@_op("adaptive_avg_pool2d")
class _AdaptiveAvgPool2d(_Op):
    fields = {"output": _pair(1)}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Adaptive average pooling to ``output``."""
        return F.adaptive_avg_pool2d(xs[0], self.output)


@_op("flatten")
class _Flatten(_Op):
    fields = {"start_dim": _int(0)}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Dimensions from ``start_dim`` on, flattened into one."""
        return xs[0].flatten(self.start_dim, -1)


@_op("sub")
class _Sub(_Op):
    arity = (2, 2)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The first input minus the second."""
        return xs[0] - xs[1]


@_op("add")
class _Add(_Op):
    arity = (2, None)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The inputs' sum, left to right (broadcasting)."""
        acc = xs[0] + xs[1]
        for t in xs[2:]:
            acc = acc + t
        return acc


@_op("mul")
class _Mul(_Op):
    arity = (2, 2)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The product (a gate: broadcasting)."""
        return xs[0] * xs[1]


@_op("concat")
class _Concat(_Op):
    fields = {"dim": _int(-_MAX_FIELD)}
    arity = (1, None)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The inputs one after another along ``dim``."""
        return torch.cat(xs, self.dim)


@_op("channel_slice")
class _ChannelSlice(_Op):
    fields = {"start": _NAT, "length": _NAT}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Channels ``start .. start + length``: dimension 1 of a 4-d map, else the last."""
        x = xs[0]
        d = 1 if x.dim() == 4 else x.dim() - 1
        if self.start + self.length > x.shape[d]:
            raise ValueError(f"channels {self.start}..{self.start + self.length} of a tensor with {x.shape[d]}")
        return x.narrow(d, self.start, self.length)


@_op("dropout")
class _Dropout(_Op):
    fields = {"p": _float(0.0, 1.0)}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Dropout in training, the identity otherwise."""
        return F.dropout(xs[0], self.p, training=True) if training else xs[0]


@_op("stochastic_depth")
class _StochasticDepth(_Op):
    fields = {"p": _float(0.0, 1.0, below_hi=True)}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """In training, each sample's branch is dropped with probability p, kept ones scaled by 1/(1 − p)."""
        x = xs[0]
        if not training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        keep.bernoulli_(1.0 - self.p)
        return x * keep.div(1.0 - self.p)


@_op("class_token")
class _ClassToken(_Op):
    fields = {"dim": _POS, "tokens": _POS}
    defaults = {"tokens": 1}

    def params(self) -> list[_Param]:
        """The learned tokens, shaped (1, tokens, dim)."""
        return [_Param("weight", (1, self.tokens, self.dim))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The tokens prepended to every sequence: (B, T, D) → (B, T + tokens, D)."""
        x = xs[0]
        return torch.cat([p["weight"].expand(x.shape[0], self.tokens, self.dim), x], 1)


@_op("position_embedding")
class _PositionEmbedding(_Op):
    fields = {"max_len": _POS, "dim": _POS, "leading_one": _bool}

    def params(self) -> list[_Param]:
        """The table, (1, max_len, dim) with ``leading_one``, else (max_len, dim)."""
        shape = (1, self.max_len, self.dim) if self.leading_one else (self.max_len, self.dim)
        return [_Param("weight", shape)]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The table's first T rows added to (B, T, D)."""
        x, w = xs[0], p["weight"]
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(
                f"sequence of {t} tokens is longer than the position table ({self.max_len}); truncate the input"
            )
        return x + (w.narrow(1, 0, t) if self.leading_one else w.narrow(0, 0, t).unsqueeze(0))


@_op("token_position_embedding")
class _TokenPositionEmbedding(_Op):
    fields = {"max_len": _POS, "dim": _POS, "padding_idx": _NAT}
    arity = (2, 2)

    def check(self) -> None:
        """The padding index is a row of the table."""
        if self.padding_idx >= self.max_len:
            raise ValueError(f"padding_idx = {self.padding_idx} is outside 0..={self.max_len - 1}")

    def params(self) -> list[_Param]:
        """The table, (max_len, dim)."""
        return [_Param("weight", (self.max_len, self.dim))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Positions counted over the non-padding ids of input 1, from ``padding_idx + 1`` (RoBERTa)."""
        real = xs[1].ne(self.padding_idx).long()
        pos = real.cumsum(1) * real + self.padding_idx
        last = int(pos.max()) if pos.numel() else 0
        if last >= self.max_len:
            raise ValueError(f"position {last} is past the position table ({self.max_len} rows); truncate the input")
        return xs[0] + F.embedding(pos, p["weight"])


@_op("segment_embedding")
class _SegmentEmbedding(_Op):
    fields = {"types": _POS, "dim": _POS}

    def params(self) -> list[_Param]:
        """The table, (types, dim)."""
        return [_Param("weight", (self.types, self.dim))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Row 0 added everywhere (every token in segment 0)."""
        return xs[0] + p["weight"][0]


@_op("embedding")
class _Embedding(_Op):
    fields = {"num": _POS, "dim": _POS}

    def params(self) -> list[_Param]:
        """The table, (num, dim)."""
        return [_Param("weight", (self.num, self.dim))]

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Rows looked up by id; ids outside the table are a ValueError."""
        ids = xs[0]
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num:
                raise ValueError(f"token id out of range [{lo}, {hi}] for a vocabulary of {self.num}")
        return F.embedding(ids, p["weight"])


@_op("select_token")
class _SelectToken(_Op):
    fields = {"index": _int(-_MAX_FIELD)}

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Token ``index`` (negative from the end) of dimension 1."""
        return xs[0].select(1, self.index)


@_op("mean_pool")
class _MeanPool(_Op):
    arity = (1, 2)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """The mean over dimension 1, over the mask's tokens when a mask is given."""
        x = xs[0]
        if len(xs) == 1:
            return x.mean(1)
        m = xs[1].to(x.dtype).unsqueeze(-1)
        return (x * m).sum(1) / m.sum(1).clamp_min(1e-9)


@_op("attention")
class _Attention(_Op):
    fields = {"heads": _NAT, "head_dim": _POS, "packed": _bool}

    def check(self) -> None:
        """The width is bounded (pruning may leave no head)."""
        if self.heads * self.head_dim > _MAX_FIELD:
            raise ValueError(f"heads·head_dim = {self.heads * self.head_dim} is outside 0..={_MAX_FIELD}")

    def accepts(self) -> tuple[int, int | None]:
        """q|k|v packed in one input, or q, k, v apart; then an optional (B, T) mask."""
        return (1, 2) if self.packed else (3, 4)

    def _heads(self, x: Tensor) -> Tensor:
        # (B, T, H·dh) → (B, H, T, dh)
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Softmax(q·kᵀ/√dh + mask bias)·v per head, heads concatenated: (B, T, heads·head_dim).

        The mask (1 real, 0 padding) removes padded keys only, by adding −3.4e38 to their
        scores; padded queries are computed as any other.
        """
        width = self.heads * self.head_dim
        if self.packed:
            qkv = xs[0]
            if qkv.shape[-1] != 3 * width:
                raise ValueError(f"packed q|k|v input has last dimension {qkv.shape[-1]}, expected 3·{width}")
            q, k, v = (qkv.narrow(-1, i * width, width) for i in range(3))
            mask = xs[1] if len(xs) > 1 else None
        else:
            q, k, v = xs[:3]
            for t in (q, k, v):
                if t.shape[-1] != width:
                    raise ValueError(f"q/k/v input has last dimension {t.shape[-1]}, expected {width}")
            mask = xs[3] if len(xs) > 3 else None
        # Scores divided after the product, in this order, as the core does.
        scores = self._heads(q).matmul(self._heads(k).transpose(-2, -1)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask.to(scores.dtype).neg().add(1.0).mul(_MASK_BIAS)[:, None, None, :]
        ctx = scores.softmax(-1).matmul(self._heads(v))
        return ctx.transpose(1, 2).reshape(ctx.shape[0], ctx.shape[2], width)


@_op("causal_attention")
class _CausalAttention(_Op):
    fields = {
        "heads": _NAT,
        "kv_heads": _NAT,
        "head_dim": _POS,
        "rope_theta": _optional(_NON_NEGATIVE),
        "groups": _positive_list,
    }
    #: No ``rope_theta``: no rotary embedding; no ``groups``: heads / kv_heads query heads each.
    defaults = {"rope_theta": None, "groups": []}
    arity = (3, 4)

    def check(self) -> None:
        """Bounded width, query heads shared out over the key/value heads, even head_dim under rotation."""
        if self.heads * self.head_dim > _MAX_FIELD:
            raise ValueError(f"heads·head_dim = {self.heads * self.head_dim} is outside 0..={_MAX_FIELD}")
        if self.groups:
            if len(self.groups) != self.kv_heads or sum(self.groups) != self.heads:
                raise ValueError(
                    f"groups {self.groups} must give each of the {self.kv_heads} key/value heads at least one "
                    f"of the {self.heads} query heads"
                )
        elif (self.kv_heads == 0) != (self.heads == 0) or (self.kv_heads > 0 and self.heads % self.kv_heads):
            raise ValueError(f"{self.kv_heads} key/value heads do not divide {self.heads} query heads")
        if self.rope_theta is not None and self.head_dim % 2:
            raise ValueError(f"a rotary embedding needs an even head_dim, not {self.head_dim}")

    def _heads(self, x: Tensor, n: int, what: str) -> Tensor:
        # (B, T, n·dh) → (B, n, T, dh)
        if x.dim() != 3 or x.shape[2] != n * self.head_dim:
            raise ValueError(f"{what} input has shape {tuple(x.shape)}, expected (batch, tokens, {n * self.head_dim})")
        return x.reshape(x.shape[0], x.shape[1], n, self.head_dim).transpose(1, 2)

    def _rotation(self, tokens: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """The cos and sin of position · frequency, (T, head_dim), frequencies in float32 or wider."""
        wide = torch.float64 if dtype == torch.float64 else torch.float32
        half = self.head_dim // 2
        exps = torch.arange(0, 2 * half, 2, dtype=torch.long, device=device).to(wide) / self.head_dim
        inv_freq = torch.full((half,), self.rope_theta, dtype=wide, device=device).pow(exps).reciprocal()
        pos = torch.arange(tokens, dtype=torch.long, device=device).to(wide)
        freqs = pos[:, None] * inv_freq[None, :]
        emb = torch.cat([freqs, freqs], -1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, xs: list[Tensor], p: Params, training: bool) -> Tensor:
        """Causal softmax(q·kᵀ/√dh)·v per query head, heads concatenated: (B, T, heads·head_dim).

        Query head h reads key/value head h // (heads / kv_heads), or the key/value head whose
        group of ``groups`` it falls in. With ``rope_theta``, q and k
        are first rotated by their position (rotary embedding, the half-split layout). A key
        after the query, or padded in the optional (B, T) mask (1 real, 0 padding), has its
        score replaced by −3.4e38; the softmax runs in float32 or wider. Without heads the
        output is (B, T, 0).
        """
        if self.heads == 0:
            return xs[0].narrow(-1, 0, 0)
        q = self._heads(xs[0], self.heads, "q")
        k = self._heads(xs[1], self.kv_heads, "k")
        v = self._heads(xs[2], self.kv_heads, "v")
        tokens = q.shape[2]
        if self.rope_theta is not None:
            cos, sin = self._rotation(tokens, q.dtype, q.device)
            half = self.head_dim // 2

            def rotate(x: Tensor) -> Tensor:
                turned = torch.cat([x[..., half:].neg(), x[..., :half]], -1)
                return x * cos + turned * sin

            q, k = rotate(q), rotate(k)
        if self.kv_heads != self.heads:
            sizes = self.groups or [self.heads // self.kv_heads] * self.kv_heads
            index = torch.repeat_interleave(
                torch.arange(self.kv_heads, device=k.device), torch.tensor(sizes, device=k.device)
            )
            k, v = k.index_select(1, index), v.index_select(1, index)
        allowed = torch.ones(tokens, tokens, dtype=torch.bool, device=q.device).tril()[None, None]
        if len(xs) > 3:
            allowed = allowed.logical_and(xs[3].ne(0)[:, None, None, :])
        scores = q.matmul(k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(allowed.logical_not(), _MASK_BIAS)
        wide = torch.float64 if scores.dtype == torch.float64 else torch.float32
        ctx = scores.softmax(-1, dtype=wide).to(scores.dtype).matmul(v)
        return ctx.transpose(1, 2).reshape(ctx.shape[0], ctx.shape[2], self.heads * self.head_dim)


#: Every op type this module runs (``graph.json``'s ``type`` values).
OP_TYPES = frozenset(_OPS)


# --- the graph -------------------------------------------------------------------------------


@dataclass
class _Node:
    """One parsed node: its op, its producers, and its parameters' keys by role."""

    name: str
    type: str
    op: _Op
    inputs: tuple[int, ...]
    params: dict[str, str]


class _Holder(nn.Module):
    """A plain container: one level of the dotted key tree (not callable)."""


def _index(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what} must be a node index, not {v!r}")
    return v


def _parse(graph: Any) -> tuple[list[_Node], list[int], int]:
    """Nodes, inputs and output of a ``graph.json`` description, checked."""
    if not isinstance(graph, Mapping):
        raise ValueError("a graph description is a JSON object")
    unknown = sorted(set(graph) - _GRAPH_FIELDS)
    if unknown:
        raise ValueError(f"unknown field `{unknown[0]}` in the graph description")
    for f in ("format", "nodes", "inputs", "output"):
        if f not in graph:
            raise ValueError(f"the graph description lacks the field `{f}`")
    if type(graph["format"]) is not int or graph["format"] != GRAPH_FORMAT:  # not 1.0 nor True
        raise ValueError(f"graph format {graph['format']!r}; this relprune reads format {GRAPH_FORMAT}")
    raw = graph["nodes"]
    if not isinstance(raw, list) or not raw:
        raise ValueError("the graph has no nodes")
    nodes: list[_Node] = []
    names: set[str] = set()
    for i, n in enumerate(raw):
        if not isinstance(n, Mapping):
            raise ValueError(f"node {i} is not an object")
        name = n.get("name")
        if not isinstance(name, str):
            raise ValueError(f"node {i} has no name")
        if name in names:
            raise ValueError(f"two nodes are named `{name}`; node names must be unique")
        names.add(name)
        unknown = sorted(set(n) - _NODE_FIELDS)
        if unknown:
            raise ValueError(f"unknown field `{unknown[0]}` in node `{name}`")
        cfg = n.get("op")
        if not isinstance(cfg, Mapping) or not isinstance(cfg.get("type"), str):
            raise ValueError(f"node `{name}` has no op type")
        kind = cfg["type"]
        if kind not in _OPS:
            raise ValueError(f"node `{name}` has unknown op type `{kind}`; known: {', '.join(sorted(_OPS))}")
        try:
            op = _OPS[kind]({k: v for k, v in cfg.items() if k != "type"})
        except ValueError as e:
            raise ValueError(f"node `{name}` ({kind}): {e}") from None
        ins = n.get("inputs", None)
        if not isinstance(ins, list):
            raise ValueError(f"node `{name}` ({kind}) has no list of inputs")
        ins = [_index(j, f"an input of node `{name}`") for j in ins]
        late = [j for j in ins if j >= i]
        if late:
            raise ValueError(
                f"node `{name}` reads node {late[0]}, which does not come before it; nodes must be in topological order"
            )
        lo, hi = op.accepts()
        if len(ins) < lo or (hi is not None and len(ins) > hi):
            raise ValueError(f"node `{name}` ({kind}) has {len(ins)} input(s), which this layer kind does not accept")
        params = n.get("params", {})
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params.values()):
            raise ValueError(f"node `{name}` ({kind}): params must map roles to keys")
        bad = sorted(set(params) - set(_ROLES))
        if bad:
            raise ValueError(f"node `{name}` ({kind}) has an unknown parameter role `{bad[0]}`")
        nodes.append(_Node(name, kind, op, tuple(ins), dict(params)))
    if not isinstance(graph["inputs"], list):
        raise ValueError("the graph's inputs must be a list of node indices")
    inputs = [_index(i, "a graph input") for i in graph["inputs"]]
    for i in inputs:
        if i >= len(nodes) or nodes[i].type != "input":
            raise ValueError(f"graph input {i} is not an input node")
    if len(set(inputs)) != len(inputs):
        raise ValueError("a graph input is listed twice")
    for i, n in enumerate(nodes):
        if n.type == "input" and i not in inputs:
            raise ValueError(f"input node `{n.name}` is not listed among the graph inputs")
    output = _index(graph["output"], "the graph output")
    if output >= len(nodes):
        raise ValueError(f"graph output {output} is not a node")
    keys = graph.get("ignored_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("ignored_keys must be a list of strings")
    return nodes, inputs, output


def _shape(t: Tensor) -> list[int]:
    return list(t.shape)


class GraphModule(nn.Module):
    """A relprune graph folder as a trainable torch module: parameters under the graph's keys.

    ``state_dict()`` keys are exactly the keys of the graph's ``model.safetensors`` (weights
    as parameters, BatchNorm running statistics as buffers). ``forward`` takes the graph's
    inputs in order: float images (B, C, H, W), or for a token model int64 token ids (B, T)
    and the attention mask (B, T). Inputs are moved to the module's device and images to its
    dtype. Dropout and stochastic depth act in train mode only; BatchNorm in train mode uses
    batch statistics and updates the running ones with the op's momentum, as
    ``nn.BatchNorm2d`` does.
    """

    def __init__(
        self,
        graph: Mapping[str, Any],
        tensors: Mapping[str, Tensor],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Builds the module from a parsed ``graph.json`` and its tensors by key.

        Raises ``ValueError`` (naming the node, key and shapes) for a description that is not
        valid format 1, or tensors that do not match it: a missing tensor, a wrong shape, or a
        tensor no node uses.
        """
        super().__init__()
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch.dtype, not {dtype!r}")
        nodes, inputs, output = _parse(graph)
        # Plain attributes are set before the key tree exists, so none can clash with a key.
        self._graph_spec: dict[str, Any] = copy.deepcopy(dict(graph))
        self._graph_nodes = nodes
        self._graph_inputs = inputs
        self._graph_output = output
        self._graph_dtype = dtype
        last = list(range(len(nodes)))
        for i, n in enumerate(nodes):
            for j in n.inputs:
                last[j] = max(last[j], i)
        self._graph_last_use = last
        self._graph_paths: dict[str, tuple[str, ...]] = {}
        self._place(tensors, dtype)
        if device is not None:
            self.to(device)

    @classmethod
    def load(
        cls, folder: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> GraphModule:
        """The graph folder ``folder`` (``graph.json`` + ``model.safetensors``) as a module.

        ``device`` is where the parameters go (the CPU by default), ``dtype`` their
        floating-point type.
        """
        folder = Path(folder)
        graph = json.loads((folder / "graph.json").read_text(encoding="utf-8"))
        tensors = _safetensors.load(folder / "model.safetensors")
        return cls(graph, tensors, device=device, dtype=dtype)

    @property
    def graph(self) -> dict[str, Any]:
        """The ``graph.json`` description this module runs (a copy)."""
        return copy.deepcopy(self._graph_spec)

    def _place(self, tensors: Mapping[str, Tensor], dtype: torch.dtype) -> None:
        """Registers every tensor the nodes read under its key; checks shapes and leftovers."""
        kinds: dict[str, str] = {}
        for n in self._graph_nodes:
            for spec in n.op.params():
                key = n.params.get(spec.role)
                if key is None:
                    if spec.kind == "optional":
                        continue
                    raise ValueError(f"node `{n.name}` ({n.type}) has no parameter `{spec.role}`")
                t = tensors.get(key)
                if t is None:
                    if spec.kind == "optional":
                        del n.params[spec.role]  # the core treats an absent counter as not kept
                        continue
                    raise ValueError(
                        f"model.safetensors lacks `{key}` (node `{n.name}`, {spec.role}, shape {list(spec.shape)})"
                    )
                if tuple(t.shape) != spec.shape:
                    raise ValueError(
                        f"`{key}` (node `{n.name}`, {spec.role}) has shape {_shape(t)}, expected {list(spec.shape)}"
                    )
                if key in kinds:
                    if kinds[key] != spec.kind:
                        raise ValueError(f"`{key}` is both a {kinds[key]} and a {spec.kind}")
                    continue
                kinds[key] = spec.kind
                self._register(key, t, spec.kind, dtype)
            # Roles the op does not read are not bound (as in the core); their tensors are leftovers.
            for role in [r for r in n.params if r not in {s.role for s in n.op.params()}]:
                del n.params[role]
        unused = sorted(set(tensors) - set(kinds))
        if unused:
            raise ValueError(
                f"model.safetensors holds {len(unused)} tensor(s) no node uses, e.g. {unused[:5]}; the description "
                "does not match its weights file"
            )

    def _register(self, key: str, t: Tensor, kind: str, dtype: torch.dtype) -> None:
        parts = tuple(key.split("."))
        if not all(parts):
            raise ValueError(f"parameter key `{key}` has an empty part")
        holder: nn.Module = self
        for i, part in enumerate(parts[:-1]):
            if part in holder._parameters or part in holder._buffers:
                raise ValueError(f"key `{key}` nests under the tensor `{'.'.join(parts[: i + 1])}`")
            if part not in holder._modules:
                holder._modules[part] = _Holder()
            holder = holder._modules[part]  # type: ignore[assignment]
        leaf = parts[-1]
        if leaf in holder._modules or leaf in holder._parameters or leaf in holder._buffers:
            raise ValueError(f"key `{key}` is also a prefix of other keys")
        t = t.detach().clone()
        if kind == "optional":
            if t.is_floating_point() or t.is_complex():
                raise ValueError(f"`{key}` must be an integer counter, not {t.dtype}")
            holder._buffers[leaf] = t.to(torch.long)
        elif not t.is_floating_point():
            raise ValueError(f"`{key}` must be a floating-point tensor, not {t.dtype}")
        elif kind == "buffer":
            holder._buffers[leaf] = t.to(dtype)
        else:
            holder._parameters[leaf] = nn.Parameter(t.to(dtype))
        self._graph_paths[key] = parts

    def _tensor(self, key: str) -> Tensor:
        parts = self._graph_paths[key]
        holder: nn.Module = self
        for part in parts[:-1]:
            holder = holder._modules[part]  # type: ignore[assignment]
        leaf = parts[-1]
        t = holder._parameters.get(leaf)
        return t if t is not None else holder._buffers[leaf]  # type: ignore[return-value]

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        """Where the module computes: its first floating tensor's device and dtype."""
        for t in self.parameters():
            return t.device, t.dtype
        for t in self.buffers():
            if t.is_floating_point():
                return t.device, t.dtype
        return torch.device("cpu"), self._graph_dtype

    def forward(self, *inputs: Tensor) -> Tensor:
        """The graph's output for its inputs, in the graph's input order.

        Raises ``ValueError`` for inputs that do not fit the graph, and names the node
        (``node `name` (op): …``) when an op fails.
        """
        nodes = self._graph_nodes
        if len(inputs) != len(self._graph_inputs):
            names = ", ".join(nodes[i].name for i in self._graph_inputs)
            raise ValueError(f"the model takes {len(self._graph_inputs)} input tensor(s) ({names}), got {len(inputs)}")
        device, dtype = self._placement()
        values: list[Tensor | None] = [None] * len(nodes)
        for i, t in zip(self._graph_inputs, inputs, strict=True):
            op: _Input = nodes[i].op  # type: ignore[assignment]
            bound = op.bind(t, device, dtype)
            if bound is None:
                got = f"a {t.dtype} tensor of shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"input `{nodes[i].name}` expects {op.expectation()}, got {got}")
            values[i] = bound
        for i, n in enumerate(nodes):
            if n.type == "input":
                continue
            xs: list[Tensor] = [values[j] for j in n.inputs]  # type: ignore[misc]
            p = {role: self._tensor(key) for role, key in n.params.items()}
            try:
                values[i] = n.op.forward(xs, p, self.training)
            except torch.OutOfMemoryError:
                raise
            except ValueError as e:
                raise ValueError(f"node `{n.name}` ({n.type}): {e}") from e
            except (RuntimeError, IndexError) as e:
                raise RuntimeError(f"node `{n.name}` ({n.type}): {str(e).splitlines()[0] if str(e) else e}") from e
            # Intermediate results are freed after their last reader.
            for j in n.inputs:
                if self._graph_last_use[j] == i and j != self._graph_output:
                    values[j] = None
        return values[self._graph_output]  # type: ignore[return-value]

    def train(self, mode: bool = True) -> GraphModule:
        """As ``nn.Module.train``.

        The flag is set in each module's ``__dict__``: ``nn.Module.__setattr__`` would refuse
        it on a holder that has a child named ``training`` (a key such as ``training.scale``).
        """
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def extra_repr(self) -> str:
        """Node count, inputs and output."""
        nodes = self._graph_nodes
        ins = ", ".join(nodes[i].name for i in self._graph_inputs)
        return f"{len(nodes)} nodes, inputs ({ins}), output {nodes[self._graph_output].name}"
