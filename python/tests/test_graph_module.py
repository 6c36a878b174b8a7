"""GraphModule: relprune's graph folders as torch modules, checked against the core's own ``relprune run``.

Models are tiny and random-initialised (no downloads). Each model case exports a PyTorch model as
the package does, prunes it with the binary (rate 0.3, so the folder holds a really pruned graph)
and compares GraphModule's eval-mode output with the core's on the same inputs. Three hand-written
graphs use every op type, including those no ONNX import yields (dropout, stochastic depth,
channel slices, layer scale, token positions, attention without heads, a decoder's RMSNorm and
causal attention, ...).
"""

import copy
import io
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from relprune import _core, _safetensors
from relprune._data import prepare
from relprune._export import export
from relprune._graph_module import OP_TYPES, GraphModule

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4
# The hand-written graphs are small: both sides run the same float32 kernels, and a subtle
# difference (GELU's tanh approximation: 3e-5 of the output) must show.
HAND_TOLERANCE = 1e-5


def _binary(*args: str) -> dict:
    # The binary has a RUNPATH to its libtorch: no LD_LIBRARY_PATH of the caller's.
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.setdefault("RELPRUNE_THREADS", "2")
    done = subprocess.run([str(_core.binary()), "--json", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


def _core_run(folder: Path, inputs: tuple[torch.Tensor, ...], work: Path) -> torch.Tensor:
    files = []
    for i, t in enumerate(inputs):
        files.append(str(work / f"run{i}.npy"))
        np.save(files[-1], t.numpy())
    _binary("run", "--model", str(folder), "--input", *files, "--output", str(work / "expected.npy"))
    return torch.from_numpy(np.load(work / "expected.npy"))


def _assert_close(got: torch.Tensor, expected: torch.Tensor, tolerance: float = TOLERANCE) -> float:
    assert got.shape == expected.shape
    scale = float(expected.abs().max())
    # A vanishing or constant output would let a wrong module pass.
    assert scale > 1e-2 and float((expected - expected[0]).abs().max()) > 1e-3 * scale
    diff = float((got.detach().float() - expected).abs().max())
    assert diff <= tolerance * max(1.0, scale), (diff, scale)
    return diff


def _numel(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for k, t in tensors.items() if not k.endswith("num_batches_tracked"))


def _randomize(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """Random values everywhere (torchvision zero-initialises heads), activations kept O(1).

    BatchNorm's running statistics are then those of ``inputs`` (one pass in train mode with a
    cumulative average), so that eval-mode outputs neither vanish nor explode in deep networks.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            if t.dim() == 1 and name.endswith("weight"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() <= 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()(*inputs)
        for m in norms:
            m.momentum = 0.1
    return model.eval()


# --- model cases: export, prune with the binary, compare ------------------------------------


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


class Logits(nn.Module):
    """A Hugging Face sequence classifier that returns only the logits (how users wrap one)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _hf(family: str) -> nn.Module:
    import transformers as tf

    small = dict(vocab_size=200, num_labels=2, attn_implementation="eager", max_position_embeddings=32)
    if family == "bert":
        cfg = tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **small)
        return Logits(tf.BertForSequenceClassification(cfg))
    cfg = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **small)
    return Logits(tf.DistilBertForSequenceClassification(cfg))


def _tokens(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 200, (n, 12), generator=g)
    mask = torch.ones(n, 12, dtype=torch.int64)
    for i, length in enumerate(torch.randint(4, 13, (n,), generator=g)):
        mask[i, length:] = 0  # right padding
        ids[i, length:] = 0
    return ids, mask


def _sequential() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )


def _vit() -> nn.Module:
    return torchvision.models.vision_transformer.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
    )


# name → (constructor, token model, classes, prune options)
CASES: dict[str, tuple[Callable[[], nn.Module], bool, int, list[str]]] = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), False, 10, []),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), False, 10, []),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(num_classes=10), False, 10, []),
    "densenet121": (lambda: torchvision.models.densenet121(num_classes=10), False, 10, []),
    "vit-heads": (_vit, False, 10, ["--component", "heads"]),
    "vit-neurons": (_vit, False, 10, ["--component", "neurons"]),
    "sequential": (_sequential, False, 4, []),
    "bert-heads": (lambda: _hf("bert"), True, 2, ["--component", "heads", "--seq-len", "12"]),
    "distilbert-neurons": (lambda: _hf("distilbert"), True, 2, ["--component", "neurons", "--seq-len", "12"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pruned_model_runs_as_the_core_runs_it_and_trains(name: str, tmp_path: Path) -> None:
    make, tokens, classes, options = CASES[name]
    torch.manual_seed(0)
    per_class = 1 if classes >= 10 else 2  # few references: the time is in the core's attribution
    n = per_class * classes
    if tokens:
        data = _tokens(n, seed=2)
        test = _tokens(4, seed=3)
    else:
        data = (_images(n, 32, seed=2),)
        test = (_images(4, 32, seed=3),)
    model = _randomize(make(), data)
    example = tuple(t[:2] for t in data)
    export(model, example, tmp_path / "m.onnx")
    labels = torch.arange(n) % classes
    prepare((data if tokens else data[0], labels), example, classes, tmp_path / "data", 10_000)
    _binary(
        "prune", "--model", str(tmp_path / "m.onnx"), "--data", f"tensors:{tmp_path / 'data'}",
        "--refs-per-class", str(per_class), "--rate", "0.3", "--latency-runs", "0", "--eval-samples", "8", *options,
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    folder = tmp_path / "out" / "model"
    tensors = _safetensors.load(folder / "model.safetensors")
    assert _numel(tensors) < _numel(model.state_dict()), "the folder is not pruned"

    module = GraphModule.load(folder).eval()
    state = module.state_dict()
    assert sorted(state) == sorted(tensors)
    for k, t in tensors.items():
        assert torch.equal(state[k], t), k
    with torch.no_grad():
        got = module(*test)
    _assert_close(got, _core_run(folder, test, tmp_path))

    # Trainable: a loss on the output reaches every parameter, and one SGD step changes the output.
    # (Not every gradient is non-zero: attention's key bias shifts all scores of a query alike.)
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    nn.functional.cross_entropy(module(*test), torch.arange(4) % classes).backward()
    for k, p in module.named_parameters():
        assert p.grad is not None and bool(p.grad.isfinite().all()), k
    grads = [bool(p.grad.any()) for p in module.parameters()]
    assert sum(grads) > 0.9 * len(grads)
    optimizer.step()
    with torch.no_grad():
        assert not torch.allclose(module.eval()(*test), got)


# --- hand-written graphs with every op --------------------------------------------------------


class Builder:
    """A graph.json description and its tensors, node by node (keys ``NODE.ROLE`` unless given)."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.g = torch.Generator().manual_seed(seed)

    def w(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.g) / max(1, int(np.prod(shape[1:]))) ** 0.5

    def r(self, *shape: int, lo: float | None = None) -> torch.Tensor:
        if lo is not None:
            return torch.rand(shape, generator=self.g) + lo
        return torch.randn(shape, generator=self.g) * 0.3

    def bn(self, features: int) -> dict[str, torch.Tensor]:
        return {
            "weight": self.r(features, lo=0.5),
            "bias": self.r(features),
            "running_mean": self.r(features),
            "running_var": self.r(features, lo=0.5),
            "num_batches_tracked": torch.tensor(7),
        }

    def node(
        self,
        name: str,
        op: str,
        inputs: tuple[int, ...] = (),
        params: dict[str, torch.Tensor] | None = None,
        keys: dict[str, str] | None = None,
        **fields: Any,
    ) -> int:
        n: dict[str, Any] = {"name": name, "op": {"type": op, **fields}, "inputs": list(inputs)}
        if params:
            n["params"] = {}
            for role, t in params.items():
                key = (keys or {}).get(role, f"{name}.{role}")
                n["params"][role] = key
                self.tensors[key] = t.contiguous()
        self.nodes.append(n)
        return len(self.nodes) - 1

    def graph(self, inputs: list[int], output: int) -> dict[str, Any]:
        return {"format": 1, "nodes": copy.deepcopy(self.nodes), "inputs": inputs, "output": output}

    def save(self, folder: Path, inputs: list[int], output: int) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "graph.json").write_text(json.dumps(self.graph(inputs, output)))
        save_file(self.tensors, str(folder / "model.safetensors"))
        return folder


def _conv(cin: int, cout: int, k: int, *, stride: int = 1, pad: int = 0, dil: int = 1, groups: int = 1, bias: bool):
    return dict(
        in_channels=cin, out_channels=cout, kernel=[k, k], stride=[stride, stride], padding=[pad, pad],
        dilation=[dil, dil], groups=groups, bias=bias,
    )  # fmt: skip


def image_graph(b: Builder) -> tuple[list[int], int]:
    """A CNN branch and a ViT branch over one (3, 10, 10) image; keys include `training.*` and `eval.*`."""
    x = b.node("x", "input", image={"channels": 3, "height": 10, "width": 10})
    c = b.node(
        "features.conv", "conv2d", (x,), {"weight": b.w(8, 3, 3, 3), "bias": b.r(8)}, **_conv(3, 8, 3, pad=1, bias=True)
    )
    bn = b.node("features.bn", "batch_norm2d", (c,), b.bn(8), features=8, eps=1e-3, momentum=0.1)
    h = b.node("features.act", "hardswish", (bn,))
    # ceil_mode: 10 → 6 (5 in floor mode); avg pooling counts the padding.
    mp = b.node("features.pool", "max_pool2d", (h,), kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=True)
    ap = b.node("features.avg", "avg_pool2d", (mp,), kernel=[3, 3], stride=[1, 1], padding=[1, 1])
    dw = b.node(
        "features.dw",
        "conv2d",
        (ap,),
        {"weight": b.w(8, 1, 3, 3)},
        **_conv(8, 8, 3, pad=2, dil=2, groups=8, bias=False),
    )
    ln = b.node("features.ln", "layer_norm2d", (dw,), {"weight": b.r(8, lo=0.5), "bias": b.r(8)}, channels=8, eps=1e-6)
    cl = b.node(
        "features.pw",
        "channel_linear",
        (ln,),
        {"weight": b.w(12, 8), "bias": b.r(12)},
        in_channels=8,
        out_channels=12,
        bias=True,
    )
    sc = b.node(
        "features.scale",
        "scale",
        (cl,),
        {"weight": b.r(12, 1, 1, lo=0.5)},
        keys={"weight": "training.gamma"},
        channels=12,
    )
    ge = b.node("features.gelu", "gelu", (sc,), tanh=True)
    s1 = b.node("split.0", "channel_slice", (ge,), start=2, length=6)
    s2 = b.node("split.1", "channel_slice", (ge,), start=8, length=4)
    cat = b.node("cat", "concat", (s1, s2), dim=1)
    dr = b.node("drop", "dropout", (cat,), p=0.3)
    sd = b.node("sd", "stochastic_depth", (dr,), p=0.2)
    ht = b.node("clip", "hardtanh", (sd,), min_val=-0.5, max_val=1.5)
    gp = b.node("gate.pool", "adaptive_avg_pool2d", (ht,), output=[1, 1])
    hs = b.node("gate.act", "hardsigmoid", (gp,))
    mu = b.node("gate", "mul", (ht, hs))
    sg = b.node("sig", "sigmoid", (ht,))
    si = b.node("silu", "silu", (ht,))
    ad = b.node("sum", "add", (mu, sg, si))
    th = b.node("tanh", "tanh", (ad,))
    re_ = b.node("relu", "relu", (th,))
    sq = b.node("square", "pow", (re_,), exponent=2.0)
    lk = b.node("leaky", "leaky_relu", (sq,), negative_slope=0.2)
    gn = b.node(
        "gn", "group_norm", (lk,), {"weight": b.r(10, lo=0.5), "bias": b.r(10)}, groups=2, channels=10, eps=1e-5
    )
    pd = b.node("pad", "pad2d", (gn,), pads=[0, 1, 2, 0])  # 6×6 → 8×7
    pi = b.node("pad_inf", "pad2d", (pd,), pads=[0, 0, 1, 1], fill="neg_infinity")  # → 9×8
    mx = b.node("pad_pool", "max_pool2d", (pi,), kernel=[2, 2], stride=[1, 1], padding=[0, 0], ceil_mode=False)
    rz = b.node("resize", "resize2d", (mx,), output=[6, 6], mode="bicubic", align_corners=True)
    df = b.node("diff", "sub", (rz, re_))
    af = b.node(
        "affine", "scale", (df,), {"weight": b.r(10, 1, 1, lo=0.5), "bias": b.r(10, 1, 1)}, channels=10, bias=True
    )
    mp = b.node(
        "map_pos", "map_position_embedding", (af,), {"weight": b.r(1, 10, 6, 6)}, channels=10, height=6, width=6
    )
    aap = b.node("pool", "adaptive_avg_pool2d", (mp,), output=[4, 3])  # 6 → 4: overlapping windows
    fl = b.node("flat", "flatten", (aap,), start_dim=1)
    fc = b.node(
        "fc", "linear", (fl,), {"weight": b.w(5, 120), "bias": b.r(5)}, in_features=120, out_features=5, bias=True
    )
    pc = b.node(
        "eval", "conv2d", (x,), {"weight": b.w(16, 3, 5, 5), "bias": b.r(16)}, **_conv(3, 16, 5, stride=5, bias=True)
    )
    pt = b.node("eval.tokens", "patches_to_tokens", (pc,))
    ct = b.node("cls", "class_token", (pt,), {"weight": b.r(1, 1, 16)}, keys={"weight": "cls_token"}, dim=16)
    pe = b.node("pos", "position_embedding", (ct,), {"weight": b.r(1, 6, 16)}, max_len=6, dim=16, leading_one=True)
    rg = b.node("reg", "class_token", (pe,), {"weight": b.r(1, 2, 16)}, dim=16, tokens=2)
    lt = b.node("ln", "layer_norm", (rg,), {"weight": b.r(16, lo=0.5), "bias": b.r(16)}, dim=16, eps=1e-5)
    qkv = b.node(
        "attn.qkv",
        "linear",
        (lt,),
        {"weight": b.w(24, 16), "bias": b.r(24)},
        in_features=16,
        out_features=24,
        bias=True,
    )
    at = b.node("attn", "attention", (qkv,), heads=2, head_dim=4, packed=True)
    pr = b.node("attn.proj", "linear", (at,), {"weight": b.w(16, 8)}, in_features=8, out_features=16, bias=False)
    ls = b.node("attn.ls", "scale", (pr,), {"weight": b.r(16, lo=0.5)}, channels=16, last=True)
    rs = b.node("res", "add", (ls, rg))
    rs = b.node(
        "mix", "token_linear", (rs,), {"weight": b.w(7, 7), "bias": b.r(7)}, in_tokens=7, out_tokens=7, bias=True
    )
    first = b.node("first", "select_token", (rs,), index=0)
    last = b.node("last", "select_token", (rs,), index=-1)
    mean = b.node("mean", "mean_pool", (b.node("patches", "token_slice", (rs,), start=3, length=4),))
    tok = b.node("tok", "add", (first, last, mean))
    hd = b.node("head", "linear", (tok,), {"weight": b.w(5, 16)}, in_features=16, out_features=5, bias=False)
    return [x], b.node("out", "add", (fc, hd))


def token_graph(b: Builder) -> tuple[list[int], int]:
    """Embeddings, attention with the mask (q, k, v apart; packed; no heads left), masked mean pooling."""
    ids = b.node("input_ids", "input", token_ids={"max_len": 12})
    mask = b.node("attention_mask", "input", attention_mask={"max_len": 12})
    e = b.node("emb.word", "embedding", (ids,), {"weight": b.r(30, 16)}, num=30, dim=16)
    tp = b.node(
        "emb.tok_pos", "token_position_embedding", (e, ids), {"weight": b.r(14, 16)}, max_len=14, dim=16, padding_idx=1
    )
    sg = b.node("emb.seg", "segment_embedding", (tp,), {"weight": b.r(2, 16)}, types=2, dim=16)
    pe = b.node("emb.pos", "position_embedding", (sg,), {"weight": b.r(12, 16)}, max_len=12, dim=16, leading_one=False)
    h = b.node("emb.ln", "layer_norm", (pe,), {"weight": b.r(16, lo=0.5), "bias": b.r(16)}, dim=16, eps=1e-12)

    def linear(name: str, x: int, n_in: int, n_out: int) -> int:
        return b.node(
            name,
            "linear",
            (x,),
            {"weight": b.w(n_out, n_in), "bias": b.r(n_out)},
            in_features=n_in,
            out_features=n_out,
            bias=True,
        )

    q, k, v = (linear(f"l0.{n}", h, 16, 8) for n in "qkv")
    a = b.node("l0.attn", "attention", (q, k, v, mask), heads=2, head_dim=4, packed=False)
    h = b.node("l0.res", "add", (linear("l0.out", a, 8, 16), h))
    a = b.node("l1.attn", "attention", (linear("l1.qkv", h, 16, 24), mask), heads=2, head_dim=4, packed=True)
    h = b.node("l1.res", "add", (linear("l1.out", a, 8, 16), h))
    a = b.node("l2.attn", "attention", (linear("l2.qkv", h, 16, 0), mask), heads=0, head_dim=4, packed=True)
    h = b.node("l2.res", "add", (h, linear("l2.out", a, 0, 16)))
    g = b.node("act", "gelu", (h,), tanh=False)
    pooled = b.node(
        "pool", "add", (b.node("mean", "mean_pool", (g, mask)), b.node("first", "select_token", (g,), index=0))
    )
    return [ids, mask], linear("classifier", pooled, 16, 3)


def _token_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(2, 30, (3, 10), generator=torch.Generator().manual_seed(5))
    mask = torch.ones(3, 10, dtype=torch.int64)
    for i, length in enumerate((10, 6, 3)):
        mask[i, length:] = 0
        ids[i, length:] = 1  # the padding id of the token positions
    return ids, mask


def decoder_graph(b: Builder) -> tuple[list[int], int]:
    """A LLaMA-style decoder: RMSNorm, causal attention (grouped heads with rotary embedding and the
    mask; plain heads without either; no heads left), a SwiGLU MLP, next-token logits."""
    ids = b.node("input_ids", "input", token_ids={"max_len": 12})
    mask = b.node("attention_mask", "input", attention_mask={"max_len": 12})
    h = b.node("embed", "embedding", (ids,), {"weight": b.r(30, 16)}, num=30, dim=16)

    def linear(name: str, x: int, n_in: int, n_out: int, bias: bool = False) -> int:
        params = {"weight": b.w(n_out, n_in)} | ({"bias": b.r(n_out)} if bias else {})
        return b.node(name, "linear", (x,), params, in_features=n_in, out_features=n_out, bias=bias)

    def norm(name: str, x: int) -> int:
        return b.node(name, "rms_norm", (x,), {"weight": b.r(16, lo=0.5)}, dim=16, eps=1e-6)

    def mlp(layer: str, h: int) -> int:
        x = norm(f"{layer}.post_norm", h)
        act = b.node(f"{layer}.act", "silu", (linear(f"{layer}.gate", x, 16, 24),))
        up = b.node(f"{layer}.up_gate", "mul", (linear(f"{layer}.up", x, 16, 24), act))
        return b.node(f"{layer}.mlp_res", "add", (h, linear(f"{layer}.down", up, 24, 16)))

    # Layer 0: 2 query heads on 1 key/value head, rotary embedding, padded keys masked (Qwen2's biases).
    x = norm("l0.in_norm", h)
    q, k, v = linear("l0.q", x, 16, 8, True), linear("l0.k", x, 16, 4, True), linear("l0.v", x, 16, 4, True)
    a = b.node("l0.attn", "causal_attention", (q, k, v, mask), heads=2, kv_heads=1, head_dim=4, rope_theta=10000.0)
    h = mlp("l0", b.node("l0.attn_res", "add", (h, linear("l0.o", a, 8, 16))))
    # Layer 1: plain multi-head attention, no rotation (the field left out), no mask.
    x = norm("l1.in_norm", h)
    q, k, v = (linear(f"l1.{n}", x, 16, 8) for n in "qkv")
    a = b.node("l1.attn", "causal_attention", (q, k, v), heads=2, kv_heads=2, head_dim=4)
    h = mlp("l1", b.node("l1.attn_res", "add", (h, linear("l1.o", a, 8, 16))))
    # Layer 1b: pruned groups, 2 query heads on the first key/value head and 1 on the second.
    x = norm("l1b.in_norm", h)
    q, k, v = linear("l1b.q", x, 16, 12), linear("l1b.k", x, 16, 8), linear("l1b.v", x, 16, 8)
    a = b.node(
        "l1b.attn",
        "causal_attention",
        (q, k, v, mask),
        heads=3,
        kv_heads=2,
        head_dim=4,
        rope_theta=100.0,
        groups=[2, 1],
    )
    h = b.node("l1b.attn_res", "add", (h, linear("l1b.o", a, 12, 16)))
    # Layer 2: every head pruned away.
    x = norm("l2.in_norm", h)
    q, k, v = (linear(f"l2.{n}", x, 16, 0) for n in "qkv")
    a = b.node("l2.attn", "causal_attention", (q, k, v, mask), heads=0, kv_heads=0, head_dim=4, rope_theta=500.0)
    h = b.node("l2.attn_res", "add", (h, linear("l2.o", a, 0, 16)))
    return [ids, mask], linear("lm_head", norm("norm", h), 16, 30)


def _decoder_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    # Left padding (as decoders batch): real queries see padded keys unless the mask removes them;
    # the all-padding first rows of the shorter sequences have no key left at all.
    ids = torch.randint(1, 30, (3, 10), generator=torch.Generator().manual_seed(6))
    mask = torch.ones(3, 10, dtype=torch.int64)
    for i, length in enumerate((10, 7, 4)):
        mask[i, : 10 - length] = 0
        ids[i, : 10 - length] = 0
    return ids, mask


HAND = {
    "image": (image_graph, lambda: (_images(3, 10, seed=4),)),
    "tokens": (token_graph, _token_inputs),
    "decoder": (decoder_graph, _decoder_inputs),
}


def test_the_hand_graphs_use_every_op_the_format_documents() -> None:
    doc = (ROOT / "docs" / "graph-format.md").read_text()
    table = doc.split("<!-- op reference")[1].split("<!-- end of op reference")[0]
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", table, re.M))
    assert len(documented) > 30 and OP_TYPES == documented
    used = set()
    for build, _ in HAND.values():
        b = Builder()
        build(b)
        used |= {n["op"]["type"] for n in b.nodes}
    assert used == documented


@pytest.mark.parametrize("name", list(HAND))
def test_every_op_runs_as_the_core_runs_it(name: str, tmp_path: Path) -> None:
    build, make_inputs = HAND[name]
    b = Builder()
    spec = build(b)
    folder = b.save(tmp_path / "g", *spec)
    inputs = make_inputs()
    expected = _core_run(folder, inputs, tmp_path)
    module = GraphModule.load(folder)
    assert sorted(module.state_dict()) == sorted(b.tensors)
    with torch.no_grad():
        _assert_close(module.eval()(*inputs), expected, HAND_TOLERANCE)
        # The same from the description in memory, in float64.
        wide = GraphModule(b.graph(*spec), b.tensors, dtype=torch.float64).eval()
        assert all(p.dtype == torch.float64 for p in wide.parameters())
        _assert_close(wide(*inputs), expected, HAND_TOLERANCE)


def test_state_dict_and_pickle_round_trip(tmp_path: Path) -> None:
    b = Builder()
    folder = b.save(tmp_path / "g", *image_graph(b))
    x = _images(3, 10, seed=4)
    module = GraphModule.load(folder, device="cpu")
    module.train()  # a key part named `training` (training.gamma) must not break the mode switch
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module(x).square().mean().backward()
    optimizer.step()
    module.eval()
    with torch.no_grad():
        want = module(x)
    assert int(module.state_dict()["features.bn.num_batches_tracked"]) == 8

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh = GraphModule.load(folder)
    fresh.load_state_dict(torch.load(buffer))
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    whole = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert not torch.equal(GraphModule.load(folder).eval()(x), want)  # the step changed it
        assert torch.equal(fresh.eval()(x), want)
        assert torch.equal(whole(x), want)
        assert torch.equal(copy.deepcopy(module)(x), want)


def _bn_graph(momentum: float) -> Builder:
    b = Builder()
    x = b.node("x", "input", image={"channels": 4, "height": 5, "width": 5})
    bn = b.node("norm", "batch_norm2d", (x,), b.bn(4), features=4, eps=1e-3, momentum=momentum)
    fl = b.node("flat", "flatten", (bn,), start_dim=1)
    b.node("fc", "linear", (fl,), {"weight": b.w(3, 100), "bias": b.r(3)}, in_features=100, out_features=3, bias=True)
    return b


def test_train_mode_batch_norm_updates_running_statistics_like_nn() -> None:
    b = _bn_graph(momentum=0.3)
    module = GraphModule(b.graph([0], 3), b.tensors)
    ref = nn.BatchNorm2d(4, eps=1e-3, momentum=0.3)
    ref.load_state_dict({k.removeprefix("norm."): v for k, v in b.tensors.items() if k.startswith("norm.")})
    x = torch.randn(6, 4, 5, 5) * 2 + 1
    fc = nn.Linear(100, 3)
    fc.load_state_dict({"weight": b.tensors["fc.weight"], "bias": b.tensors["fc.bias"]})

    with torch.no_grad():
        module.eval()
        module(x)  # eval mode: running statistics stay
        assert torch.equal(module.state_dict()["norm.running_mean"], b.tensors["norm.running_mean"])
        for _ in range(2):
            ref.train()
            module.train()
            y = module(x)
            torch.testing.assert_close(y, fc(ref(x).flatten(1)))
    state = module.state_dict()
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(state[f"norm.{k}"], getattr(ref, k))
    assert not torch.allclose(state["norm.running_var"], b.tensors["norm.running_var"])
    assert int(state["norm.num_batches_tracked"]) == 9


@pytest.mark.parametrize("op", ["dropout", "stochastic_depth"])
def test_dropout_and_stochastic_depth_act_in_train_mode_only(op: str) -> None:
    b = Builder()
    x = b.node("x", "input", image={"channels": 1, "height": 4, "width": 4})
    d = b.node("drop", op, (x,), p=0.5)
    b.node("flat", "flatten", (d,), start_dim=1)
    module = GraphModule(b.graph([0], 2), {})
    x = torch.rand(64, 1, 4, 4) + 0.1
    flat = x.flatten(1)
    torch.testing.assert_close(module.eval()(x), flat)
    torch.manual_seed(0)
    y = module.train()(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], 2 * flat[kept])  # survivors scaled by 1 / (1 − p)
    per_sample = kept.all(1) | (~kept).all(1)
    if op == "stochastic_depth":
        assert per_sample.all() and 0 < int(kept.all(1).sum()) < 64  # whole samples dropped
    else:
        assert not per_sample.all()


def _mutate(change: Callable[[dict, dict], None]) -> tuple[dict, dict]:
    b = _bn_graph(momentum=0.1)
    graph, tensors = b.graph([0], 3), dict(b.tensors)
    change(graph, tensors)
    return graph, tensors


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda g, t: g["nodes"][2]["op"].update(type="frobnicate"), "node `flat` has unknown op type `frobnicate`"),
        (
            lambda g, t: g["nodes"][1]["op"].update(momentun=0.1),
            "node `norm` \\(batch_norm2d\\): unknown field `momentun`",
        ),
        (lambda g, t: g["nodes"][1]["op"].update(features=0), "features = 0"),
        (lambda g, t: g.update(format=2), "graph format 2"),
        (lambda g, t: g["nodes"][2].update(inputs=[3]), "topological"),
        (lambda g, t: g["nodes"][3].update(inputs=[2, 1]), "2 input"),
        (lambda g, t: g.update(inputs=[]), "not listed among the graph inputs"),
        (lambda g, t: t.update({"fc.weight": torch.zeros(3, 99)}), "`fc.weight` .*\\[3, 99\\], expected \\[3, 100\\]"),
        (lambda g, t: t.pop("fc.bias"), "lacks `fc.bias`"),
        (lambda g, t: t.update(extra=torch.zeros(1)), "no node uses, e.g. \\['extra'\\]"),
    ],
)
def test_invalid_graphs_are_value_errors_that_say_what_is_wrong(change: Callable, words: str) -> None:
    graph, tensors = _mutate(change)
    with pytest.raises(ValueError, match=words):
        GraphModule(graph, tensors)


def test_inputs_that_do_not_fit_are_value_errors_naming_the_input_or_node() -> None:
    b = Builder()
    inputs, output = token_graph(b)
    module = GraphModule(b.graph(inputs, output), b.tensors)
    ids, mask = _token_inputs()
    with pytest.raises(ValueError, match="takes 2 input"):
        module(ids)
    with pytest.raises(ValueError, match="input `input_ids` expects integer token ids"):
        module(ids.float(), mask)
    with pytest.raises(ValueError, match="node `emb.word` \\(embedding\\): token id out of range"):
        module(ids + 30, mask)
    b = Builder()
    module = GraphModule(b.graph(*image_graph(b)), b.tensors)
    with pytest.raises(ValueError, match=re.escape("input `x` expects float images of shape (B, 3, 10, 10), got")):
        module(torch.zeros(2, 3, 10, 12))
    # Without the optional counter the module has no such key, as the file has none.
    b = _bn_graph(momentum=0.1)
    del b.tensors["norm.num_batches_tracked"]
    assert "norm.num_batches_tracked" not in GraphModule(b.graph([0], 3), b.tensors).state_dict()


def _attention_graph(**fields: Any) -> tuple[dict, dict]:
    b = Builder()
    ids = b.node("input_ids", "input", token_ids={"max_len": 8})
    mask = b.node("attention_mask", "input", attention_mask={"max_len": 8})
    e = b.node("emb", "embedding", (ids,), {"weight": b.r(10, 8)}, num=10, dim=8)
    heads, kv, dh = fields.get("heads", 2), fields.get("kv_heads", 1), fields.get("head_dim", 4)
    q, k, v = (
        b.node(n, "linear", (e,), {"weight": b.w(w, 8)}, in_features=8, out_features=w, bias=False)
        for n, w in (("q", heads * dh), ("k", kv * dh), ("v", kv * dh))
    )
    a = b.node("attn", "causal_attention", (q, k, v, mask), **fields)
    return b.graph([ids, mask], a), b.tensors


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(heads=3, kv_heads=2, head_dim=4), "2 key/value heads do not divide 3 query heads"),
        (dict(heads=2, kv_heads=0, head_dim=4), "0 key/value heads do not divide 2 query heads"),
        (dict(heads=0, kv_heads=1, head_dim=4), "1 key/value heads do not divide 0 query heads"),
        (dict(heads=2, kv_heads=1, head_dim=3, rope_theta=1e4), "needs an even head_dim, not 3"),
        (dict(heads=2, kv_heads=1, head_dim=4, rope_theta=-1.0), "rope_theta = -1.0 is outside"),
        (dict(heads=2, kv_heads=1, head_dim=4, rope_theta="10000"), "rope_theta must be a finite number"),
        (dict(heads=2, head_dim=4), "lacks the field `kv_heads`"),
    ],
)
def test_causal_attention_fields_are_checked_as_the_core_checks_them(fields: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        GraphModule(*_attention_graph(**fields))


def test_causal_attention_matches_an_independent_reference() -> None:
    # Float64: grouped heads by SDPA's enable_gqa, the rotation written from the half-split formula.
    ids = torch.randint(0, 10, (2, 7), generator=torch.Generator().manual_seed(7))
    mask = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
    for rope in (None, 100.0):
        extra = {} if rope is None else {"rope_theta": rope}
        graph, tensors = _attention_graph(heads=4, kv_heads=2, head_dim=6, **extra)
        with torch.no_grad():
            got = GraphModule(graph, tensors, dtype=torch.float64).eval()(ids, mask)
        emb = nn.functional.embedding(ids, tensors["emb.weight"].double())
        w = {n: tensors[f"{n}.weight"].double() for n in "qkv"}
        split = lambda z, n: z.reshape(2, 7, n, 6).transpose(1, 2)  # noqa: E731
        q, k, v = split(emb @ w["q"].T, 4), split(emb @ w["k"].T, 2), split(emb @ w["v"].T, 2)
        if rope is not None:
            angle = torch.arange(7.0, dtype=torch.float64)[:, None] * rope ** (
                -torch.arange(0, 6, 2, dtype=torch.float64) / 6
            )
            cos, sin = angle.cos().repeat(1, 2), angle.sin().repeat(1, 2)
            turn = lambda z: torch.cat([-z[..., 3:], z[..., :3]], -1)  # noqa: E731
            q, k = q * cos + turn(q) * sin, k * cos + turn(k) * sin
        allowed = torch.ones(7, 7, dtype=torch.bool).tril() & mask.bool()[:, None, None, :]
        want = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
        want = want.transpose(1, 2).reshape(2, 7, 24)
        # The fully masked first rows of sample 1: the core's softmax over equal scores is uniform, SDPA's NaN.
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1, 2:], want[1, 2:])
        assert bool(got.isfinite().all())


def test_rms_norm_matches_torch() -> None:
    b = Builder()
    ids = b.node("input_ids", "input", token_ids={"max_len": 8})
    e = b.node("emb", "embedding", (ids,), {"weight": b.r(10, 8) * 5}, num=10, dim=8)
    b.node("norm", "rms_norm", (e,), {"weight": b.r(8, lo=0.5)}, dim=8, eps=1e-5)
    ids = torch.randint(0, 10, (2, 7), generator=torch.Generator().manual_seed(8))
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        module = GraphModule(b.graph([0], 2), b.tensors, dtype=dtype).eval()
        with torch.no_grad():
            got = module(ids)
        assert got.dtype == dtype
        x = nn.functional.embedding(ids, b.tensors["emb.weight"].double())
        want = nn.functional.rms_norm(x, (8,), b.tensors["norm.weight"].double(), 1e-5)
        tolerance = dict(atol=0.05, rtol=0.02) if dtype == torch.bfloat16 else {}
        torch.testing.assert_close(got.double(), want, **tolerance)
