"""Apply a relprune slicing plan to the user's own ``torch.nn.Module``.

relprune's core prunes an ONNX export whose initializer names are the module's ``state_dict()`` keys and returns
a *plan*: for every tensor that changed, its original shape and the indices kept along each sliced dimension
(indices into the ORIGINAL tensor). :func:`apply_plan` slices those tensors in place and updates the size
attributes that each layer's ``forward`` reads, so the user gets their own classes back, smaller and trainable.

Shape attributes are updated through a registry that maps a layer class (or its dotted name, so that timm and
transformers need not be importable) to one updater function per layer family, plus a few structural matchers
for attention modules. Add a family by writing an updater and decorating it with ``@_register(...)``.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ParamPlan",
    "PrunedMultiheadAttention",
    "SliceError",
    "SliceReport",
    "apply_plan",
    "parse_plan",
]


# --------------------------------------------------------------------------------------------------------------------
# Plan


def _is_int(value: object) -> bool:
    # JSON booleans are ints in Python; a plan never means True as index 1.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ParamPlan:
    """How one ``state_dict`` tensor is sliced.

    Attributes:
        shape: The tensor's original shape.
        kept: ``(dim, indices)`` pairs, one per sliced dimension, sorted by ``dim``. ``indices`` index the ORIGINAL
            tensor and are strictly ascending. An empty ``indices`` tuple means every unit along that dimension is
            removed (a layer the core reports as emptied).

    Lists are accepted and stored as tuples; an inconsistent plan raises :class:`ValueError`.
    """

    shape: tuple[int, ...]
    kept: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if not all(_is_int(s) and s >= 0 for s in shape):
            raise ValueError(f"'shape' must be a list of non-negative integers, got {list(shape)!r}")
        pairs: list[tuple[int, tuple[int, ...]]] = []
        for pair in self.kept:
            if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
                raise ValueError(f"each 'kept' item must be a [dim, [indices...]] pair, got {pair!r}")
            dim, indices = pair[0], pair[1]
            if not _is_int(dim) or not 0 <= dim < len(shape):
                raise ValueError(f"dim {dim!r} is out of range for shape {list(shape)}")
            if any(d == dim for d, _ in pairs):
                raise ValueError(f"dim {dim} is listed twice in 'kept'")
            if not isinstance(indices, Sequence) or isinstance(indices, str):
                raise ValueError(f"indices for dim {dim} must be a list of integers, got {indices!r}")
            indices = tuple(indices)
            previous = -1
            for index in indices:
                if not _is_int(index) or not 0 <= index < shape[dim]:
                    raise ValueError(f"index {index!r} for dim {dim} is out of range [0, {shape[dim]})")
                if index <= previous:
                    raise ValueError(f"indices for dim {dim} must be strictly ascending (sorted, no duplicates)")
                previous = index
            pairs.append((dim, indices))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "kept", tuple(sorted(pairs, key=lambda p: p[0])))

    @property
    def new_shape(self) -> tuple[int, ...]:
        """Shape of the tensor after slicing."""
        shape = list(self.shape)
        for dim, indices in self.kept:
            shape[dim] = len(indices)
        return tuple(shape)

    def kept_along(self, dim: int) -> tuple[int, ...] | None:
        """Kept indices along ``dim``, or ``None`` when that dimension is not sliced."""
        for d, indices in self.kept:
            if d == dim:
                return indices
        return None

    def _normalized(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        # Listing every index of a dimension is the same as not slicing it; compare plans without such entries.
        return tuple((d, idx) for d, idx in self.kept if idx != tuple(range(self.shape[d])))


def parse_plan(obj: Mapping[str, Any]) -> dict[str, ParamPlan]:
    """Validate the JSON plan ``{"NAME": {"shape": [..], "kept": [[dim, [i, ...]], ...]}, ...}``.

    Extra fields in an entry are ignored. An empty index list is allowed (every unit along that dimension removed).

    Raises:
        ValueError: naming the offending key, when an entry is malformed (wrong types, dim or index out of range,
            unsorted or duplicate indices).
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a plan must be a JSON object mapping state_dict keys to entries, got {type(obj).__name__}")
    plan: dict[str, ParamPlan] = {}
    for key, entry in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"plan key {key!r} is not a string")
        if not isinstance(entry, Mapping):
            raise ValueError(f"plan entry {key!r}: expected an object with 'shape' and 'kept', got {entry!r}")
        missing = [name for name in ("shape", "kept") if name not in entry]
        if missing:
            raise ValueError(f"plan entry {key!r}: missing {', '.join(repr(m) for m in missing)}")
        shape, kept = entry["shape"], entry["kept"]
        if not isinstance(shape, (list, tuple)):
            raise ValueError(f"plan entry {key!r}: 'shape' must be a list, got {shape!r}")
        if not isinstance(kept, (list, tuple)):
            raise ValueError(f"plan entry {key!r}: 'kept' must be a list of [dim, [indices...]] pairs, got {kept!r}")
        try:
            plan[key] = ParamPlan(tuple(shape), tuple(kept))
        except ValueError as exc:
            raise ValueError(f"plan entry {key!r}: {exc}") from None
    return plan


# --------------------------------------------------------------------------------------------------------------------
# Errors and report


class SliceError(ValueError):
    """The plan cannot be applied to this model; the message names the module and says what to do.

    Attributes:
        module: Dotted name of the module concerned ("" for the root module or when unknown).
    """

    def __init__(self, message: str, *, module: str = "") -> None:
        super().__init__(message)
        self.module = module


def _fail(name: str, module: nn.Module | None, problem: str, advice: str) -> SliceError:
    where = f"'{name}'" if name else "the root module"
    kind = f" ({type(module).__name__})" if module is not None else ""
    return SliceError(f"{where}{kind}: {problem}. {advice}", module=name)


@dataclass
class SliceReport:
    """What :func:`apply_plan` changed.

    Attributes:
        sliced: ``state_dict`` key -> (old shape, new shape), tied aliases included.
        modules: Module name -> the attributes updated, e.g. ``"Conv2d: out_channels 64→40, in_channels 64→48"``.
        replaced: Module name -> why it now is a relprune class (``PrunedMultiheadAttention``).
        notes: Things the caller should verify, e.g. modules of unknown classes whose tensors were sliced.
    """

    sliced: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)
    replaced: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------------
# Pruned multi-head attention


def _keep_fused_kernels_off(module: nn.Module, args: tuple[Any, ...]) -> None:
    # nn.TransformerEncoderLayer calls a fused kernel that assumes num_heads * head_dim == embed_dim instead of
    # calling self_attn; it skips that kernel whenever any submodule has a hook, so this no-op hook keeps it off.
    return None


class PrunedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose heads keep their width after some heads were removed.

    ``nn.MultiheadAttention`` requires ``num_heads * head_dim == embed_dim``, so removing heads cannot be expressed
    in it. This subclass keeps its parameter names (``in_proj_weight``, ``in_proj_bias``, ``q/k/v_proj_weight``,
    ``bias_k``, ``bias_v``, ``out_proj.*``), its forward signature and return convention, and computes attention
    with ``num_heads`` heads of ``head_dim`` each; ``embed_dim`` stays the model width.

    Attributes:
        kept_heads: Indices of the surviving heads among the ``original_num_heads`` heads before pruning. A 3-D
            ``attn_mask`` written for the original head count is reduced to these heads.
        original_num_heads: Head count before pruning.

    Notes:
        ``average_attn_weights=True`` averages over the surviving heads only.
    """

    kept_heads: tuple[int, ...]
    original_num_heads: int

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Build a fresh instance; ``head_dim`` defaults to ``embed_dim // num_heads``."""
        # MultiheadAttention.__init__ asserts num_heads * head_dim == embed_dim, which is exactly what is dropped.
        nn.Module.__init__(self)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = head_dim if head_dim is not None else embed_dim // num_heads
        inner = num_heads * self.head_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty((3 * inner, embed_dim), **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty((inner, embed_dim), **factory))
            self.k_proj_weight = nn.Parameter(torch.empty((inner, self.kdim), **factory))
            self.v_proj_weight = nn.Parameter(torch.empty((inner, self.vdim), **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * inner, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.modules.linear.NonDynamicallyQuantizableLinear(inner, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty((1, 1, inner), **factory))
            self.bias_v = nn.Parameter(torch.empty((1, 1, inner), **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self.kept_heads = tuple(range(num_heads))
        self.original_num_heads = num_heads
        self._reset_parameters()
        self.register_forward_pre_hook(_keep_fused_kernels_off)

    @classmethod
    def convert(cls, mha: nn.MultiheadAttention) -> PrunedMultiheadAttention:
        """Turn ``mha`` into a ``PrunedMultiheadAttention`` in place, with all its heads, and return it.

        The object itself changes class, so its parent, any other reference to it, its hooks and its parameters
        stay valid. Plain ``nn.MultiheadAttention`` instances and instances of this class are accepted.
        """
        if isinstance(mha, cls):
            return mha
        if type(mha) is not nn.MultiheadAttention:
            raise TypeError(f"cannot convert {type(mha).__name__}: its forward may differ from nn.MultiheadAttention's")
        heads = mha.num_heads
        mha.__class__ = cls
        assert isinstance(mha, cls)
        mha.kept_heads = tuple(range(heads))
        mha.original_num_heads = heads
        mha.register_forward_pre_hook(_keep_fused_kernels_off)
        return mha

    def _projection_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._qkv_same_embed_dim:
            inner = self.num_heads * self.head_dim
            w = self.in_proj_weight
            return w[:inner], w[inner : 2 * inner], w[2 * inner :]
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight

    def _per_head_mask(self, mask: torch.Tensor, bsz: int) -> torch.Tensor:
        tgt, src = mask.shape[-2:]
        if mask.size(0) == bsz * self.num_heads:
            return mask.view(bsz, self.num_heads, tgt, src)
        if mask.size(0) == bsz * self.original_num_heads:
            # A mask written for the unpruned model: keep the rows of the surviving heads.
            index = torch.tensor(self.kept_heads, dtype=torch.long, device=mask.device)
            return mask.view(bsz, self.original_num_heads, tgt, src).index_select(1, index)
        raise RuntimeError(
            f"The shape of the 3D attn_mask is {tuple(mask.shape)}, but should be ({bsz * self.num_heads}, {tgt}, "
            f"{src}) (or ({bsz * self.original_num_heads}, {tgt}, {src}) for the heads before pruning)."
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Same contract as :meth:`torch.nn.MultiheadAttention.forward`."""
        is_batched = query.dim() == 3
        # Work batch-first internally: (N, L, E).
        if not is_batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. You may use the Transformer module method "
                "`generate_square_subsequent_mask` to create this mask."
            )
        bsz, tgt_len, _ = query.shape
        heads, head_dim = self.num_heads, self.head_dim
        inner = heads * head_dim
        w_q, w_k, w_v = self._projection_weights()
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b = self.in_proj_bias
            b_q, b_k, b_v = b[:inner], b[inner : 2 * inner], b[2 * inner :]
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

        mask = _float_mask(attn_mask, q.dtype)
        padding = _float_mask(key_padding_mask, q.dtype)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(bsz, 1, inner)], dim=1)
            v = torch.cat([v, self.bias_v.expand(bsz, 1, inner)], dim=1)
            mask = None if mask is None else F.pad(mask, (0, 1))
            padding = None if padding is None else F.pad(padding, (0, 1))
        # Explicit lengths: a layer that lost every head has zero-sized views.
        q = q.view(bsz, tgt_len, heads, head_dim).transpose(1, 2)
        k = k.view(bsz, k.shape[1], heads, head_dim).transpose(1, 2)
        v = v.view(bsz, v.shape[1], heads, head_dim).transpose(1, 2)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros(bsz, heads, 1, head_dim)], dim=2)
            v = torch.cat([v, v.new_zeros(bsz, heads, 1, head_dim)], dim=2)
            mask = None if mask is None else F.pad(mask, (0, 1))
            padding = None if padding is None else F.pad(padding, (0, 1))
        src_len = k.size(2)

        merged: torch.Tensor | None = None
        if mask is not None:
            if mask.dim() == 2:
                merged = mask.view(1, 1, tgt_len, src_len)
            elif mask.dim() == 3:
                merged = self._per_head_mask(mask, bsz)
            else:
                raise RuntimeError(f"attn_mask's dimension {mask.dim()} is not supported")
        if padding is not None:
            padding = padding.view(bsz, 1, 1, src_len)
            merged = padding if merged is None else merged + padding
        dropout_p = self.dropout if self.training else 0.0

        weights: torch.Tensor | None = None
        if need_weights:
            scores = torch.matmul(q * (1.0 / math.sqrt(head_dim)), k.transpose(-2, -1))
            if merged is not None:
                scores = scores + merged
            weights = scores.softmax(dim=-1)
            attn = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
            out = torch.matmul(attn, v)
        else:
            # As in nn.MultiheadAttention, the causal hint replaces the mask unless a padding mask must be merged.
            causal = is_causal and key_padding_mask is None
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if causal else merged, dropout_p=dropout_p, is_causal=causal
            )
        out = out.transpose(1, 2).reshape(bsz, tgt_len, inner)
        # F.linear rather than self.out_proj(...), like nn.MultiheadAttention (hooks on out_proj never fire).
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)

        if weights is not None and average_attn_weights:
            # No head left: no attention at all (the mean over no heads would be NaN).
            weights = weights.mean(dim=1) if heads else weights.new_zeros(bsz, tgt_len, src_len)
        if not is_batched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    # Boolean masks mean "True = not allowed", as in nn.MultiheadAttention; make them additive.
    if mask is None or torch.is_floating_point(mask):
        return mask
    if mask.dtype != torch.bool:
        raise AssertionError("only bool and floating types of masks are supported")
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))


# --------------------------------------------------------------------------------------------------------------------
# Updaters: one function per layer family


@dataclass
class _Change:
    """Planned, not yet applied, updates of one module (and possibly of its parent or siblings)."""

    summary: list[str] = field(default_factory=list)
    attrs: list[tuple[object, str, Any]] = field(default_factory=list)
    convert: Callable[[], object] | None = None
    reason: str = ""

    def set(self, obj: object, attr: str, value: Any, label: str | None = None, quiet: bool = False) -> None:
        """Plan ``obj.<attr> = value``; ``quiet`` keeps bookkeeping attributes out of the report."""
        old = getattr(obj, attr, None)
        if old != value:
            self.attrs.append((obj, attr, value))
            if not quiet:
                self.summary.append(f"{label or attr} {_fmt(old)}→{_fmt(value)}")


def _fmt(value: Any) -> str:
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(str(v) for v in sorted(value)) + "}"
    return str(value)


class _Ctx:
    """Read-only view of the model as it will be after slicing; updaters read new shapes from here."""

    def __init__(self, planned: Mapping[int, ParamPlan], modules: Mapping[str, nn.Module], touched: set[int]) -> None:
        self._planned = planned
        self._modules = modules
        self._touched = touched

    @staticmethod
    def tensor(module: nn.Module, attr: str) -> torch.Tensor | None:
        if attr in module._parameters:
            return module._parameters[attr]
        return module._buffers.get(attr)

    def plan(self, module: nn.Module, attr: str) -> ParamPlan | None:
        t = self.tensor(module, attr)
        return None if t is None else self._planned.get(id(t))

    def shape(self, module: nn.Module, attr: str) -> tuple[int, ...] | None:
        """New shape of ``module.<attr>``, or None when the module has no such tensor."""
        t = self.tensor(module, attr)
        if t is None:
            return None
        p = self._planned.get(id(t))
        return p.new_shape if p is not None else tuple(t.shape)

    def kept(self, module: nn.Module, attr: str, dim: int) -> tuple[int, ...] | None:
        """Kept indices of ``module.<attr>`` along ``dim``, or None when that dimension is not sliced."""
        p = self.plan(module, attr)
        return None if p is None else p.kept_along(dim)

    def kept_or_all(self, module: nn.Module, attr: str, dim: int) -> tuple[int, ...]:
        t = self.tensor(module, attr)
        assert t is not None
        kept = self.kept(module, attr, dim)
        return tuple(range(t.shape[dim])) if kept is None else kept

    def touched(self, module: nn.Module) -> bool:
        """Whether a tensor of ``module`` or of one of its submodules is sliced."""
        return id(module) in self._touched

    def parent(self, name: str) -> nn.Module | None:
        return self._modules.get(name.rpartition(".")[0]) if name else None

    def ancestors(self, name: str) -> list[tuple[str, nn.Module]]:
        parts = name.split(".") if name else []
        names = [".".join(parts[:i]) for i in range(len(parts))]
        return [(n, self._modules[n]) for n in names if n in self._modules]


Updater = Callable[[_Ctx, str, nn.Module], "_Change | None"]
_REGISTRY: dict[type | str, Updater] = {}
_STRUCTURAL: list[tuple[Callable[[nn.Module], bool], Updater]] = []


def _register(*keys: type | str) -> Callable[[Updater], Updater]:
    """Register an updater for classes (or dotted class names, matched along the MRO)."""

    def decorate(fn: Updater) -> Updater:
        for key in keys:
            _REGISTRY[key] = fn
        return fn

    return decorate


def _find_updater(module: nn.Module) -> Updater | None:
    for cls in type(module).__mro__:
        fn = _REGISTRY.get(cls) or _REGISTRY.get(f"{cls.__module__}.{cls.__qualname__}")
        if fn is not None:
            return fn
    for matches, fn in _STRUCTURAL:
        if matches(module):
            return fn
    return None


def _same_kept(ctx: _Ctx, name: str, module: nn.Module, *tensors: tuple[str, int]) -> tuple[int, ...] | None:
    """Check that the given (attr, dim) pairs keep the same indices; return them (None when nothing is sliced)."""
    present = [(a, d) for a, d in tensors if ctx.tensor(module, a) is not None]
    kept = {(a, d): ctx.kept_or_all(module, a, d) for a, d in present}
    values = set(kept.values())
    if len(values) > 1:
        detail = ", ".join(f"{a} dim {d} keeps {len(k)}" for (a, d), k in kept.items())
        raise _fail(
            name,
            module,
            f"the plan slices its tensors inconsistently ({detail}; they must keep the same indices)",
            "The plan does not match this model; re-export the model and prune again",
        )
    if not present or all(ctx.kept(module, a, d) is None for a, d in present):
        return None
    return values.pop()


def _nonzero(name: str, module: nn.Module, what: str, value: int) -> None:
    if value == 0:
        raise _fail(
            name,
            module,
            f"the plan removes every {what}, which this layer type cannot run with",
            "Exclude this layer from pruning or lower the pruning ratio",
        )


@_register(nn.Linear)
def _update_linear(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    # Zero in/out features are allowed: PyTorch runs zero-size Linear layers (an emptied hidden layer).
    out_features, in_features = ctx.shape(m, "weight") or (m.out_features, m.in_features)
    _same_kept(ctx, name, m, ("weight", 0), ("bias", 0))
    change = _Change()
    change.set(m, "out_features", out_features)
    change.set(m, "in_features", in_features)
    return change


@_register(nn.Bilinear)
def _update_bilinear(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    out_features, in1, in2 = ctx.shape(m, "weight") or (m.out_features, m.in1_features, m.in2_features)
    _same_kept(ctx, name, m, ("weight", 0), ("bias", 0))
    change = _Change()
    change.set(m, "out_features", out_features)
    change.set(m, "in1_features", in1)
    change.set(m, "in2_features", in2)
    return change


@_register("transformers.pytorch_utils.Conv1D")
def _update_hf_conv1d(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    # GPT-2 style Conv1D stores its weight transposed: (in, out).
    nx, nf = ctx.shape(m, "weight") or (m.nx, m.nf)
    _same_kept(ctx, name, m, ("weight", 1), ("bias", 0))
    change = _Change()
    change.set(m, "nf", nf)
    change.set(m, "nx", nx)
    return change


@_register(
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.modules.conv._ConvNd
)
def _update_conv(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    # Weight layout: conv (out, in/groups, *k); transposed conv (in, out/groups, *k). Dim 0 is split into groups.
    weight = ctx.tensor(m, "weight")
    assert weight is not None
    groups = m.groups
    per_group = weight.shape[0] // groups
    kept0 = ctx.kept_or_all(m, "weight", 0)
    counts = Counter(i // per_group for i in kept0)
    surviving = sorted(counts)
    if len(set(counts.values())) > 1:
        detail = ", ".join(str(counts.get(g, 0)) for g in range(groups))
        raise _fail(
            name,
            m,
            f"the plan keeps {detail} channels in its {groups} groups; a grouped convolution needs the same count "
            "in every group that survives",
            "Prune this layer group-wise (the same number of channels per group) or exclude it from pruning",
        )
    new_shape = ctx.shape(m, "weight")
    assert new_shape is not None
    new0, new1 = new_shape[0], new_shape[1]
    new_groups = len(surviving)
    transposed = bool(getattr(m, "transposed", False))
    out_channels, in_channels = (new_groups * new1, new0) if transposed else (new0, new_groups * new1)
    _nonzero(name, m, "output channel", out_channels)
    _nonzero(name, m, "input channel", in_channels)
    if ctx.tensor(m, "bias") is not None:
        if transposed:
            old_per_group = weight.shape[1]
            kept1 = ctx.kept_or_all(m, "weight", 1)
            expected = tuple(g * old_per_group + j for g in surviving for j in kept1)
        else:
            expected = kept0
        if ctx.kept_or_all(m, "bias", 0) != expected:
            raise _fail(
                name,
                m,
                "the plan keeps different output channels in its weight and its bias",
                "The plan does not match this model; re-export the model and prune again",
            )
    change = _Change()
    change.set(m, "out_channels", out_channels)
    change.set(m, "in_channels", in_channels)
    change.set(m, "groups", new_groups)
    return change


def _norm_length(ctx: _Ctx, name: str, m: nn.Module, attrs: Iterable[str]) -> int | None:
    attrs = [a for a in attrs if ctx.tensor(m, a) is not None]
    if not attrs:
        return None
    _same_kept(ctx, name, m, *((a, 0) for a in attrs))
    shape = ctx.shape(m, attrs[0])
    assert shape is not None
    return shape[0]


@_register(
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.modules.batchnorm._NormBase,
)
def _update_batchnorm(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    n = _norm_length(ctx, name, m, ("weight", "bias", "running_mean", "running_var"))
    change = _Change()
    if n is not None:
        _nonzero(name, m, "feature", n)
        change.set(m, "num_features", n)
    return change


@_register(nn.GroupNorm)
def _update_groupnorm(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    change = _Change()
    n = _norm_length(ctx, name, m, ("weight", "bias"))
    if n is None:
        return change
    _nonzero(name, m, "channel", n)
    groups, per_group = m.num_groups, m.num_channels // m.num_groups
    attr = "weight" if ctx.tensor(m, "weight") is not None else "bias"
    counts = Counter(i // per_group for i in ctx.kept_or_all(m, attr, 0))
    if all(c == per_group for c in counts.values()):
        # Whole groups removed: the surviving groups keep exactly their statistics.
        new_groups = len(counts)
    elif len(counts) == groups and len(set(counts.values())) == 1:
        new_groups = groups
    else:
        raise _fail(
            name,
            m,
            f"the plan keeps {n} of {m.num_channels} channels unevenly across its {groups} groups, so no group "
            "count divides them as before",
            "Prune whole groups or the same number of channels per group, or exclude this layer",
        )
    change.set(m, "num_channels", n)
    change.set(m, "num_groups", new_groups)
    return change


@_register(nn.LayerNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))
def _update_layernorm(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    change = _Change()
    attrs = [a for a in ("weight", "bias") if ctx.tensor(m, a) is not None]
    if not attrs:
        return change
    shape = ctx.shape(m, attrs[0])
    assert shape is not None
    for dim in range(len(shape)):
        _same_kept(ctx, name, m, *((a, dim) for a in attrs))
    _nonzero(name, m, "feature", math.prod(shape))
    change.set(m, "normalized_shape", tuple(shape))
    return change


@_register(nn.Embedding, nn.EmbeddingBag)
def _update_embedding(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    num, dim = ctx.shape(m, "weight") or (m.num_embeddings, m.embedding_dim)
    change = _Change()
    change.set(m, "num_embeddings", num)
    change.set(m, "embedding_dim", dim)
    rows = ctx.kept(m, "weight", 0)
    if m.padding_idx is not None and rows is not None:
        if m.padding_idx not in rows:
            raise _fail(
                name,
                m,
                f"the plan removes row {m.padding_idx}, its padding_idx",
                "Keep the padding row when pruning the vocabulary",
            )
        change.set(m, "padding_idx", rows.index(m.padding_idx))
    return change


@_register(nn.PReLU)
def _update_prelu(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    shape = ctx.shape(m, "weight") or (m.num_parameters,)
    change = _Change()
    change.set(m, "num_parameters", math.prod(shape))
    return change


@_register("timm.layers.layer_scale.LayerScale", "timm.layers.layer_scale.LayerScale2d")
def _update_elementwise(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    # Per-channel scale vectors: forward reads no size attribute.
    return _Change()


# ---- attention ------------------------------------------------------------------------------------------------------


def _heads(
    ctx: _Ctx, name: str, m: nn.Module, owner: nn.Module, attr: str, dim: int, offset: int, width: int, head_dim: int
) -> tuple[int, ...] | None:
    """Heads whose ``head_dim`` slice in ``owner.<attr>[offset:offset+width]`` (along ``dim``) survives.

    None when ``owner`` has no such tensor (e.g. no bias), so it takes no part in the comparison.
    """
    if ctx.tensor(owner, attr) is None:
        return None
    kept = ctx.kept(owner, attr, dim)
    if kept is None:
        return tuple(range(width // head_dim))
    counts = Counter((i - offset) // head_dim for i in kept if offset <= i < offset + width)
    partial = sorted(h for h, c in counts.items() if c != head_dim)
    if partial:
        raise _fail(
            name,
            m,
            f"the plan keeps only part of head(s) {partial} in {attr}; relprune can only remove whole heads "
            f"(head_dim {head_dim} stays)",
            "Prune attention by whole heads or exclude this layer",
        )
    return tuple(sorted(counts))


def _same_heads(name: str, m: nn.Module, found: Mapping[str, tuple[int, ...] | None]) -> tuple[int, ...]:
    present = {k: v for k, v in found.items() if v is not None}
    distinct = set(present.values())
    assert distinct, "an attention always has projection weights"
    if len(distinct) > 1:
        detail = "; ".join(f"{k} keeps heads {list(v)}" for k, v in present.items())
        raise _fail(
            name,
            m,
            f"the plan keeps different heads in the projections of one attention ({detail})",
            "The plan does not match this model; re-export the model and prune again",
        )
    return distinct.pop()


def _no_slicing_in(ctx: _Ctx, name: str, m: nn.Module, children: Iterable[str], why: str) -> None:
    for child in children:
        sub = getattr(m, child, None)
        if isinstance(sub, nn.Module) and ctx.touched(sub):
            raise _fail(name, m, f"the plan slices {child}, {why}", "Prune attention by whole heads only")


def _width_attrs(change: _Change, m: nn.Module, old_width: int, new_width: int, names: Iterable[str]) -> None:
    for attr in names:
        if getattr(m, attr, None) == old_width and _is_int(getattr(m, attr)):
            change.set(m, attr, new_width)


def _is_timm_attention(m: nn.Module) -> bool:
    has_qkv = isinstance(getattr(m, "qkv", None), nn.Linear) or all(
        isinstance(getattr(m, a, None), nn.Linear) for a in ("q_proj", "k_proj", "v_proj")
    )
    return (
        has_qkv
        and isinstance(getattr(m, "proj", None), nn.Linear)
        and _is_int(getattr(m, "num_heads", None))
        and _is_int(getattr(m, "head_dim", None))
    )


@_register("timm.layers.attention.Attention", "timm.layers.attention.AttentionRope")
def _update_timm_attention(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    # timm's forward reshapes qkv to (B, N, 3, num_heads, head_dim) and the context to (B, N, attn_dim).
    heads, head_dim = m.num_heads, m.head_dim
    width = heads * head_dim
    kv_heads = getattr(m, "num_kv_heads", heads)
    found: dict[str, tuple[int, ...] | None] = {}
    qkv = getattr(m, "qkv", None)
    if isinstance(qkv, nn.Linear):
        if qkv.weight.shape[0] != 3 * width:
            raise _fail(
                name,
                m,
                f"qkv has {qkv.weight.shape[0]} rows, not 3 * num_heads * head_dim = {3 * width}",
                "relprune does not know this attention layout; exclude it from pruning",
            )
        for i, part in enumerate("qkv"):
            for attr in ("weight", "bias"):
                found[f"qkv.{attr}[{part}]"] = _heads(ctx, name, m, qkv, attr, 0, i * width, width, head_dim)
        q_heads = _same_heads(name, m, {k: v for k, v in found.items() if "[q]" in k})
        k_heads = _same_heads(name, m, {k: v for k, v in found.items() if "[q]" not in k})
    else:
        q_found = {f"q_proj.{a}": _heads(ctx, name, m, m.q_proj, a, 0, 0, width, head_dim) for a in ("weight", "bias")}
        kv_width = kv_heads * head_dim
        kv_found = {
            f"{p}.{a}": _heads(ctx, name, m, getattr(m, p), a, 0, 0, kv_width, head_dim)
            for p in ("k_proj", "v_proj")
            for a in ("weight", "bias")
        }
        q_heads = _same_heads(name, m, q_found)
        k_heads = _same_heads(name, m, kv_found)
    proj_heads = _heads(ctx, name, m, m.proj, "weight", 1, 0, width, head_dim)
    q_heads = _same_heads(name, m, {"queries": q_heads, "proj input": proj_heads})
    _no_slicing_in(ctx, name, m, ("q_norm", "k_norm"), "a per-head norm over head_dim, which must stay whole")
    change = _Change()
    if kv_heads == heads:
        _same_heads(name, m, {"queries": q_heads, "keys/values": k_heads})
        new_kv = len(q_heads)
    else:
        # Grouped-query attention: query head h reads key/value head h // groups.
        groups = heads // kv_heads
        per_kv = Counter(h // groups for h in q_heads)
        if set(per_kv) != set(k_heads) or len(set(per_kv.values())) > 1:
            raise _fail(
                name,
                m,
                "the plan's query heads do not map evenly onto its surviving key/value heads",
                "Prune grouped-query attention by whole key/value groups or exclude this layer",
            )
        new_kv = len(k_heads)
        change.set(m, "num_kv_groups", len(q_heads) // max(new_kv, 1))
    change.set(m, "num_heads", len(q_heads))
    _width_attrs(change, m, width, len(q_heads) * head_dim, ("attn_dim", "attention_dim", "all_head_dim"))
    if hasattr(m, "num_kv_heads"):
        change.set(m, "num_kv_heads", new_kv)
        _width_attrs(change, m, kv_heads * head_dim, new_kv * head_dim, ("kv_dim",))
    return change


def _hf_pruned_heads(change: _Change, owner: nn.Module | None, heads_now: int, kept: tuple[int, ...]) -> None:
    # Keep HF's bookkeeping (original head numbers) right, so a later `prune_heads` call still means the same heads.
    if owner is None or not isinstance(getattr(owner, "pruned_heads", None), set):
        return
    before = set(owner.pruned_heads)
    remaining = [h for h in range(heads_now + len(before)) if h not in before]
    removed = {remaining[i] for i in range(heads_now) if i not in kept}
    if removed:
        change.set(owner, "pruned_heads", before | removed, label="pruned_heads")


def _is_hf_self_attention(m: nn.Module) -> bool:
    return all(isinstance(getattr(m, a, None), nn.Linear) for a in ("query", "key", "value")) and all(
        _is_int(getattr(m, a, None)) for a in ("num_attention_heads", "attention_head_size", "all_head_size")
    )


@_register(
    "transformers.models.bert.modeling_bert.BertSelfAttention",
    "transformers.models.vit.modeling_vit.ViTSelfAttention",
)
def _update_hf_self_attention(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    # BERT/ViT forward: view(B, -1, num_attention_heads, attention_head_size) ... reshape(..., all_head_size).
    heads, head_dim = m.num_attention_heads, m.attention_head_size
    width = m.all_head_size
    found = {
        f"{p}.{a}": _heads(ctx, name, m, getattr(m, p), a, 0, 0, width, head_dim)
        for p in ("query", "key", "value")
        for a in ("weight", "bias")
    }
    parent = ctx.parent(name)
    dense = getattr(getattr(parent, "output", None), "dense", None)
    if isinstance(dense, nn.Linear) and dense.weight.shape[1] == width:
        found["output.dense.weight"] = _heads(ctx, name, m, dense, "weight", 1, 0, width, head_dim)
    kept = _same_heads(name, m, found)
    change = _Change()
    change.set(m, "num_attention_heads", len(kept))
    change.set(m, "all_head_size", len(kept) * head_dim)
    _hf_pruned_heads(change, parent, heads, kept)
    return change


def _is_distilbert_attention(m: nn.Module) -> bool:
    return all(isinstance(getattr(m, a, None), nn.Linear) for a in ("q_lin", "k_lin", "v_lin", "out_lin")) and all(
        _is_int(getattr(m, a, None)) for a in ("n_heads", "dim")
    )


@_register("transformers.models.distilbert.modeling_distilbert.MultiHeadSelfAttention")
def _update_distilbert_attention(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    # DistilBERT forward: dim_per_head = self.dim // self.n_heads, so `dim` is the heads' total width.
    heads = m.n_heads
    head_dim = m.dim // heads
    width = m.dim
    found = {
        f"{p}.{a}": _heads(ctx, name, m, getattr(m, p), a, 0, 0, width, head_dim)
        for p in ("q_lin", "k_lin", "v_lin")
        for a in ("weight", "bias")
    }
    found["out_lin.weight"] = _heads(ctx, name, m, m.out_lin, "weight", 1, 0, width, head_dim)
    kept = _same_heads(name, m, found)
    change = _Change()
    change.set(m, "n_heads", len(kept))
    change.set(m, "dim", len(kept) * head_dim)
    _hf_pruned_heads(change, m, heads, kept)
    return change


@_register(nn.MultiheadAttention)
def _update_multihead_attention(ctx: _Ctx, name: str, m: nn.Module) -> _Change:
    assert isinstance(m, nn.MultiheadAttention)
    if type(m) is not nn.MultiheadAttention and not isinstance(m, PrunedMultiheadAttention):
        raise _fail(
            name,
            m,
            "this subclass of nn.MultiheadAttention may have its own forward, which relprune cannot adapt to "
            "removed heads",
            "Exclude this layer from pruning",
        )
    heads, head_dim = m.num_heads, m.head_dim
    width = heads * head_dim
    found: dict[str, tuple[int, ...] | None] = {}
    if m._qkv_same_embed_dim:
        for i, part in enumerate("qkv"):
            found[f"in_proj_weight[{part}]"] = _heads(ctx, name, m, m, "in_proj_weight", 0, i * width, width, head_dim)
    else:
        for part in "qkv":
            found[f"{part}_proj_weight"] = _heads(ctx, name, m, m, f"{part}_proj_weight", 0, 0, width, head_dim)
    for i, part in enumerate("qkv"):
        found[f"in_proj_bias[{part}]"] = _heads(ctx, name, m, m, "in_proj_bias", 0, i * width, width, head_dim)
    for attr in ("bias_k", "bias_v"):
        found[attr] = _heads(ctx, name, m, m, attr, 2, 0, width, head_dim)
    found["out_proj.weight"] = _heads(ctx, name, m, m.out_proj, "weight", 1, 0, width, head_dim)
    kept = _same_heads(name, m, found)

    q_attr, k_attr, v_attr = (
        ("in_proj_weight",) * 3 if m._qkv_same_embed_dim else ("q_proj_weight", "k_proj_weight", "v_proj_weight")
    )
    q_shape, k_shape, v_shape = ctx.shape(m, q_attr), ctx.shape(m, k_attr), ctx.shape(m, v_attr)
    assert q_shape is not None and k_shape is not None and v_shape is not None
    old_kept = getattr(m, "kept_heads", tuple(range(heads)))
    change = _Change()
    change.set(m, "num_heads", len(kept))
    change.set(m, "embed_dim", q_shape[1])
    change.set(m, "kdim", k_shape[1])
    change.set(m, "vdim", v_shape[1])
    change.set(m, "kept_heads", tuple(old_kept[h] for h in kept), quiet=True)
    change.set(m, "original_num_heads", getattr(m, "original_num_heads", heads), quiet=True)
    for ancestor_name, ancestor in ctx.ancestors(name):
        # The nested-tensor path of nn.TransformerEncoder only works with the fused kernel; keep it off.
        if isinstance(ancestor, nn.TransformerEncoder) and getattr(ancestor, "use_nested_tensor", False):
            change.set(ancestor, "use_nested_tensor", False, label=f"{ancestor_name or '<root>'}.use_nested_tensor")
    if not isinstance(m, PrunedMultiheadAttention):
        change.convert = functools.partial(PrunedMultiheadAttention.convert, m)
        change.reason = (
            "nn.MultiheadAttention requires num_heads * head_dim == embed_dim, which no longer holds; the module "
            "object now is a relprune PrunedMultiheadAttention (same parameter names, forward and return values, "
            f"{len(kept)} heads of width {head_dim})"
        )
    return change


_STRUCTURAL.extend(
    [
        (_is_hf_self_attention, _update_hf_self_attention),
        (_is_distilbert_attention, _update_distilbert_attention),
        (_is_timm_attention, _update_timm_attention),
    ]
)


# --------------------------------------------------------------------------------------------------------------------
# apply_plan


@dataclass
class _Slot:
    """One name under which a parameter or buffer is reachable."""

    name: str
    module: nn.Module
    attr: str
    tensor: torch.Tensor
    is_param: bool


def _collect_slots(model: nn.Module) -> dict[str, _Slot]:
    slots: dict[str, _Slot] = {}
    # remove_duplicate=False: tied tensors and shared modules show up under every name.
    for mod_name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{mod_name}." if mod_name else ""
        for attr, p in module._parameters.items():
            if p is not None:
                slots[prefix + attr] = _Slot(prefix + attr, module, attr, p, True)
        for attr, b in module._buffers.items():
            if b is not None:
                slots[prefix + attr] = _Slot(prefix + attr, module, attr, b, False)
    return slots


def _check_plan(plan: Mapping[str, ParamPlan], slots: Mapping[str, _Slot], keys: set[str]) -> dict[int, ParamPlan]:
    planned: dict[int, ParamPlan] = {}
    owner: dict[int, str] = {}
    for key, pp in plan.items():
        module_name = key.rpartition(".")[0]
        if not isinstance(pp, ParamPlan):
            raise SliceError(f"plan entry {key!r} is a {type(pp).__name__}, not a ParamPlan", module=module_name)
        if key not in keys or key not in slots:
            close = difflib.get_close_matches(key, list(keys), n=5, cutoff=0.6)
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise SliceError(
                f"plan key {key!r} is not a parameter or buffer of the model's state_dict.{hint} The plan must come "
                "from an ONNX export of this same model (initializer names equal to state_dict keys).",
                module=module_name,
            )
        slot = slots[key]
        if tuple(slot.tensor.shape) != pp.shape:
            raise SliceError(
                f"'{module_name}' ({type(slot.module).__name__}): {slot.attr} has shape {tuple(slot.tensor.shape)} "
                f"but the plan was made for {pp.shape}. Apply the plan to the same, unpruned model it was made for.",
                module=module_name,
            )
        tid = id(slot.tensor)
        if tid in planned and planned[tid]._normalized() != pp._normalized():
            raise SliceError(
                f"{owner[tid]!r} and {key!r} are the same (tied) tensor but the plan slices them differently. "
                "The plan must treat tied tensors alike; re-run the pruning.",
                module=module_name,
            )
        planned[tid] = pp
        owner.setdefault(tid, key)
    return planned


def _sliced_copy(t: torch.Tensor, pp: ParamPlan) -> torch.Tensor:
    out = t.detach()
    for dim, indices in pp.kept:
        out = out.index_select(dim, torch.tensor(indices, dtype=torch.long, device=t.device))
    # Always a fresh tensor: nothing may keep pointing at the old storage through the new object.
    return out.clone() if not pp.kept else out


def _install(slot: _Slot, new: torch.Tensor) -> None:
    module = slot.module
    if slot.is_param:
        # setattr (not _parameters[...] =) so modules that mirror parameters, e.g. RNNs' _flat_weights, follow.
        setattr(module, slot.attr, new)
    else:
        persistent = slot.attr not in module._non_persistent_buffers_set
        module.register_buffer(slot.attr, new, persistent=persistent)


def _new_tensor(old: torch.Tensor, sliced: torch.Tensor, is_param: bool) -> torch.Tensor:
    if is_param:
        p = nn.Parameter(sliced, requires_grad=old.requires_grad)
        # Keep user flags stored on the parameter object (e.g. no-weight-decay markers).
        p.__dict__.update(old.__dict__)
        return p
    if old.requires_grad:
        sliced.requires_grad_(True)
    return sliced


def apply_plan(model: nn.Module, plan: Mapping[str, ParamPlan]) -> SliceReport:
    """Slice ``model``'s tensors as ``plan`` says and update its layers' size attributes, in place.

    Everything is checked before anything changes: plan keys must be ``state_dict`` keys of parameters or buffers,
    shapes must equal the plan's original shapes, tied tensors must be planned alike, and every affected layer must
    be expressible with the new shapes. Sliced parameters become new ``nn.Parameter`` objects (same dtype, device,
    requires_grad) and sliced buffers new buffers (same persistence); a tensor reachable under several names (tied
    weights) is sliced once and all names see the new tensor. ``nn.MultiheadAttention`` modules whose heads change
    become :class:`PrunedMultiheadAttention`. Deep-copy the model first to keep the original.

    Args:
        model: The module the plan was made for (its ONNX export's initializer names equal its state_dict keys).
        plan: ``state_dict`` key -> :class:`ParamPlan`, e.g. from :func:`parse_plan`.

    Returns:
        A :class:`SliceReport` of what changed.

    Raises:
        SliceError: naming the module, when the plan does not fit the model; the model is then unchanged.
    """
    slots = _collect_slots(model)
    keys = set(model.state_dict(keep_vars=True).keys())
    planned = _check_plan(plan, slots, keys)
    affected = [s for s in slots.values() if id(s.tensor) in planned]

    modules = dict(model.named_modules(remove_duplicate=False))
    touched: set[int] = set()
    for slot in affected:
        parts = slot.name.split(".")[:-1]
        for i in range(len(parts) + 1):
            touched.add(id(modules[".".join(parts[:i])]))
    ctx = _Ctx(planned, modules, touched)

    report = SliceReport()
    changes: list[tuple[str, str, _Change]] = []
    for name, module in model.named_modules():
        if id(module) not in touched:
            continue
        updater = _find_updater(module)
        if updater is not None:
            change = updater(ctx, name, module)
            if change is not None:
                changes.append((name, type(module).__name__, change))
            continue
        own = sorted(
            a for a, t in {**module._parameters, **module._buffers}.items() if t is not None and id(t) in planned
        )
        if own:
            report.notes.append(
                f"'{name}' ({type(module).__name__}): sliced {', '.join(own)}, but relprune knows no size attributes "
                "of this class; if its forward reads sizes (e.g. a stored channel count), update them by hand and "
                "verify the outputs."
            )

    # Everything checked: mutate.
    fresh: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for slot in affected:
            tid = id(slot.tensor)
            if tid not in fresh:
                fresh[tid] = _new_tensor(slot.tensor, _sliced_copy(slot.tensor, planned[tid]), slot.is_param)
                if slot.is_param and type(slot.tensor) is not nn.Parameter:
                    report.notes.append(
                        f"'{slot.name}' was a {type(slot.tensor).__name__}; it is now a plain nn.Parameter."
                    )
            _install(slot, fresh[tid])
            if slot.name in keys:
                report.sliced[slot.name] = (tuple(slot.tensor.shape), tuple(fresh[tid].shape))
    for name, kind, change in changes:
        if change.convert is not None:
            change.convert()
            report.replaced[name] = change.reason
        for obj, attr, value in change.attrs:
            setattr(obj, attr, value)
        if change.summary:
            report.modules[name] = f"{kind}: {', '.join(change.summary)}"
    return report
