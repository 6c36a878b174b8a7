"""Tests for relprune._slice: applying a pruning plan to the user's own module.

Every structural test checks the sliced model against an independent reference: the ORIGINAL model with the removed
units' effect zeroed (hooks that mask channels after the activation, or zeroed head columns of the output
projection), or Hugging Face's own ``prune_heads``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from relprune._slice import (
    ParamPlan,
    PrunedMultiheadAttention,
    SliceError,
    SliceReport,
    apply_plan,
    parse_plan,
)

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def keep(n: int, drop: Iterable[int]) -> tuple[int, ...]:
    dropped = set(drop)
    return tuple(i for i in range(n) if i not in dropped)


def entry(model: nn.Module, key: str, **dims: Sequence[int]) -> ParamPlan:
    """ParamPlan for ``key`` keeping ``dims['d0']`` along dim 0 etc."""
    shape = tuple(model.state_dict()[key].shape)
    return ParamPlan(shape, tuple((int(d[1:]), tuple(idx)) for d, idx in dims.items()))


def zero_channels(module: nn.Module, channels: Sequence[int], dim: int = 1) -> torch.utils.hooks.RemovableHandle:
    """Forward hook zeroing ``channels`` (along ``dim``) of ``module``'s output."""

    def hook(_m: nn.Module, _args: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        index = [slice(None)] * out.dim()
        index[dim] = list(channels)
        out[tuple(index)] = 0
        return out

    return module.register_forward_hook(hook)


def randomize_bn(model: nn.Module) -> None:
    # Non-trivial BN statistics, so a wrongly sliced running stat changes the output.
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)


def head_rows(heads: Iterable[int], head_dim: int, offset: int = 0) -> list[int]:
    return [offset + h * head_dim + j for h in heads for j in range(head_dim)]


def params_by_id(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters()}


def is_new(p: torch.Tensor, old: Iterable[torch.Tensor]) -> bool:
    # Compare by identity against live old objects (ids of freed objects can be reused).
    return all(p is not o for o in old)


# ------------------------------------------------------------------------------------------------------------------
# parse_plan


def test_parse_plan_valid() -> None:
    plan = parse_plan(
        {
            "a.weight": {"shape": [4, 3], "kept": [[1, [0, 2]], [0, [1, 3]]], "extra": "ignored"},
            "a.bias": {"shape": [4], "kept": [[0, []]]},
        }
    )
    assert plan["a.weight"] == ParamPlan((4, 3), ((0, (1, 3)), (1, (0, 2))))
    assert plan["a.weight"].new_shape == (2, 2)
    assert plan["a.bias"].new_shape == (0,)
    assert plan["a.weight"].kept_along(1) == (0, 2)
    assert plan["a.weight"].kept_along(2) is None


@pytest.mark.parametrize(
    ("entry_obj", "fragment"),
    [
        ({"shape": [4], "kept": [[1, [0]]]}, "dim 1 is out of range"),
        ({"shape": [4], "kept": [[0, [4]]]}, "out of range"),
        ({"shape": [4], "kept": [[0, [2, 1]]]}, "strictly ascending"),
        ({"shape": [4], "kept": [[0, [1, 1]]]}, "strictly ascending"),
        ({"shape": [4], "kept": [[0, [True]]]}, "out of range"),
        ({"shape": [4], "kept": [[0, [1]], [0, [2]]]}, "listed twice"),
        ({"shape": [4], "kept": [[0]]}, "pair"),
        ({"shape": [-1], "kept": []}, "non-negative"),
        ({"shape": 4, "kept": []}, "'shape' must be a list"),
        ({"shape": [4]}, "missing 'kept'"),
        ([4], "expected an object"),
    ],
)
def test_parse_plan_rejects_malformed(entry_obj: object, fragment: str) -> None:
    with pytest.raises(ValueError, match="conv.weight") as info:
        parse_plan({"conv.weight": entry_obj})
    assert fragment in str(info.value)


# ------------------------------------------------------------------------------------------------------------------
# Convolutions, norms, linear layers


def small_cnn() -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, bias=False),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    )
    randomize_bn(model)
    return model.eval()


def cnn_plan(model: nn.Module, d1: Sequence[int], d2: Sequence[int]) -> dict[str, ParamPlan]:
    k1, k2 = keep(8, d1), keep(12, d2)
    plan = {key: entry(model, key, d0=k1) for key in ("0.weight", "0.bias")}
    plan |= {f"1.{t}": entry(model, f"1.{t}", d0=k1) for t in ("weight", "bias", "running_mean", "running_var")}
    plan["3.weight"] = entry(model, "3.weight", d0=k2, d1=k1)
    plan |= {f"4.{t}": entry(model, f"4.{t}", d0=k2) for t in ("weight", "bias", "running_mean", "running_var")}
    plan["8.weight"] = entry(model, "8.weight", d1=k2)
    return plan


def test_cnn_matches_masked_original() -> None:
    model = small_cnn()
    original = copy.deepcopy(model)
    d1, d2 = [1, 4, 6], [0, 5, 7, 11]
    report = apply_plan(model, cnn_plan(model, d1, d2))

    # Masking after the ReLU makes the next layer ignore the removed channels, like the sliced model.
    zero_channels(original[2], d1)
    zero_channels(original[5], d2)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)

    assert (model[0].out_channels, model[3].in_channels, model[3].out_channels) == (5, 5, 8)
    assert (model[1].num_features, model[4].num_features, model[8].in_features) == (5, 8, 8)
    assert report.modules["0"] == "Conv2d: out_channels 8→5"
    assert report.modules["3"] == "Conv2d: out_channels 12→8, in_channels 8→5"
    assert report.modules["1"] == "BatchNorm2d: num_features 8→5"
    assert report.sliced["3.weight"] == ((12, 8, 3, 3), (8, 5, 3, 3))
    assert report.replaced == {} and report.notes == []


def test_depthwise_block_stays_depthwise() -> None:
    model = nn.Sequential(
        nn.Conv2d(4, 8, 1),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 6, 1),
    )
    randomize_bn(model)
    model.eval()
    original = copy.deepcopy(model)
    drop = [2, 3, 7]
    k = keep(8, drop)
    plan = {key: entry(model, key, d0=k) for key in ("0.weight", "0.bias", "3.weight", "3.bias")}
    for i in (1, 4):
        plan |= {f"{i}.{t}": entry(model, f"{i}.{t}", d0=k) for t in ("weight", "bias", "running_mean", "running_var")}
    plan["6.weight"] = entry(model, "6.weight", d1=k)
    apply_plan(model, plan)

    dw = model[3]
    assert dw.groups == dw.in_channels == dw.out_channels == 5
    zero_channels(original[2], drop)
    zero_channels(original[5], drop)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)


def test_grouped_conv_even_groups() -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()
    original = copy.deepcopy(model)
    drop = [0, 5]  # one channel from each group of 4
    k = keep(8, drop)
    plan = {"0.weight": entry(model, "0.weight", d0=k), "0.bias": entry(model, "0.bias", d0=k)}
    plan["2.weight"] = entry(model, "2.weight", d1=k)
    apply_plan(model, plan)
    assert (model[0].groups, model[0].out_channels, model[0].in_channels) == (2, 6, 8)
    zero_channels(original[1], drop)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)


def test_conv_transpose_and_conv1d() -> None:
    model = nn.Sequential(
        nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2),
        nn.ReLU(),
        nn.Conv2d(6, 3, 1),
    ).eval()
    seq = nn.Sequential(nn.Conv1d(3, 7, 3), nn.ReLU(), nn.Conv1d(7, 2, 3)).eval()
    original, seq_original = copy.deepcopy(model), copy.deepcopy(seq)
    # ConvTranspose weight is (in, out/groups, k, k): drop output 1 of each group (channels 1 and 4).
    plan = {
        "0.weight": entry(model, "0.weight", d1=[0, 2]),
        "0.bias": entry(model, "0.bias", d0=[0, 2, 3, 5]),
        "2.weight": entry(model, "2.weight", d1=[0, 2, 3, 5]),
    }
    apply_plan(model, plan)
    assert (model[0].in_channels, model[0].out_channels, model[0].groups) == (4, 4, 2)
    zero_channels(original[1], [1, 4])
    x = torch.randn(2, 4, 4, 4)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)

    k = keep(7, [0, 6])
    seq_plan = {"0.weight": entry(seq, "0.weight", d0=k), "0.bias": entry(seq, "0.bias", d0=k)}
    seq_plan["2.weight"] = entry(seq, "2.weight", d1=k)
    apply_plan(seq, seq_plan)
    zero_channels(seq_original[1], [0, 6])
    x1 = torch.randn(2, 3, 9)
    torch.testing.assert_close(seq(x1), seq_original(x1), atol=ATOL, rtol=0)
    assert seq[0].out_channels == 5 and seq[2].in_channels == 5


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 3))


def test_mlp_neurons() -> None:
    model = mlp()
    original = copy.deepcopy(model)
    d1, d2 = [0, 3, 4, 9, 15], [2, 8]
    k1, k2 = keep(16, d1), keep(10, d2)
    plan = {
        "0.weight": entry(model, "0.weight", d0=k1),
        "0.bias": entry(model, "0.bias", d0=k1),
        "2.weight": entry(model, "2.weight", d0=k2, d1=k1),
        "2.bias": entry(model, "2.bias", d0=k2),
        "4.weight": entry(model, "4.weight", d1=k2),
    }
    report = apply_plan(model, plan)
    assert report.modules["2"] == "Linear: out_features 10→8, in_features 16→11"
    zero_channels(original[1], d1)
    zero_channels(original[3], d2)
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)


def test_emptied_hidden_layer_still_runs() -> None:
    model = mlp()
    original = copy.deepcopy(model)
    plan = {
        "0.weight": entry(model, "0.weight", d0=[]),
        "0.bias": entry(model, "0.bias", d0=[]),
        "2.weight": entry(model, "2.weight", d1=[]),
    }
    apply_plan(model, plan)
    assert model[0].out_features == 0 and model[2].in_features == 0
    assert model[0].weight.shape == (0, 6)
    zero_channels(original[1], range(16))
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)


def test_groupnorm_whole_groups_and_misc_layers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.GroupNorm(4, 16), nn.ReLU(), nn.Conv2d(16, 2, 1)).eval()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    original = copy.deepcopy(model)
    drop = list(range(8, 12))  # group 2 entirely
    k = keep(16, drop)
    plan = {key: entry(model, key, d0=k) for key in ("0.weight", "0.bias", "1.weight", "1.bias")}
    plan["3.weight"] = entry(model, "3.weight", d1=k)
    apply_plan(model, plan)
    assert (model[1].num_groups, model[1].num_channels) == (3, 12)
    zero_channels(original[2], drop)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)

    # Layers without a masking oracle: attributes follow the tensors and forward runs.
    net = nn.ModuleDict(
        {
            "emb": nn.Embedding(10, 8, padding_idx=7),
            "ln": nn.LayerNorm(8),
            "prelu": nn.PReLU(8),
            "inorm": nn.InstanceNorm1d(8, affine=True),
            "gn": nn.GroupNorm(2, 8),
        }
    )
    k8 = keep(8, [1, 6])
    plan = {"emb.weight": entry(net, "emb.weight", d0=[0, 2, 7, 9], d1=k8)}
    plan |= {key: entry(net, key, d0=k8) for key in net.state_dict() if key.split(".")[0] in ("ln", "prelu", "inorm")}
    plan |= {key: entry(net, key, d0=keep(8, [0, 4])) for key in ("gn.weight", "gn.bias")}
    report = apply_plan(net, plan)
    assert (net["emb"].num_embeddings, net["emb"].embedding_dim, net["emb"].padding_idx) == (4, 6, 2)
    assert net["ln"].normalized_shape == (6,)
    assert net["prelu"].num_parameters == 6 and net["inorm"].num_features == 6
    assert (net["gn"].num_groups, net["gn"].num_channels) == (2, 6)  # one channel per group: groups stay
    assert "padding_idx 7→2" in report.modules["emb"]
    h = net["prelu"](net["ln"](net["emb"](torch.tensor([[0, 1, 2, 3]]))).transpose(1, 2))
    assert net["gn"](net["inorm"](h)).shape == (1, 6, 4)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 12)
        self.mid = nn.Linear(12, 12)
        self.act = nn.ReLU()
        self.head = nn.Linear(12, 20, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.mid(self.emb(tokens))))


def test_tied_weights_sliced_once() -> None:
    model = TiedLM()
    original = copy.deepcopy(model)
    drop = [0, 5, 11]
    k = keep(12, drop)
    plan = {
        "emb.weight": entry(model, "emb.weight", d1=k),  # the tied head.weight is not listed
        "mid.weight": entry(model, "mid.weight", d0=k, d1=k),
        "mid.bias": entry(model, "mid.bias", d0=k),
    }
    report = apply_plan(model, plan)
    assert model.head.weight is model.emb.weight
    assert model.emb.embedding_dim == 9 and model.head.in_features == 9
    assert report.sliced["head.weight"] == ((20, 12), (20, 9))
    assert len(list(model.parameters())) == 3  # still one shared tensor

    zero_channels(original.emb, drop, dim=-1)
    zero_channels(original.act, drop, dim=-1)
    tokens = torch.randint(0, 20, (2, 5))
    torch.testing.assert_close(model(tokens), original(tokens), atol=ATOL, rtol=0)


def test_tied_weights_conflicting_plans() -> None:
    model = TiedLM()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = {
        "emb.weight": entry(model, "emb.weight", d1=keep(12, [0])),
        "head.weight": entry(model, "head.weight", d1=keep(12, [1])),
    }
    with pytest.raises(SliceError, match=r"'emb\.weight' and 'head\.weight' are the same \(tied\) tensor"):
        apply_plan(model, plan)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    # Listing both aliases alike is fine.
    plan["head.weight"] = plan["emb.weight"]
    apply_plan(model, plan)
    assert model.head.weight is model.emb.weight and model.head.in_features == 11


# ------------------------------------------------------------------------------------------------------------------
# Attention


def mask_head_inputs(proj: nn.Module, removed: Iterable[int], head_dim: int) -> None:
    cols = head_rows(removed, head_dim)

    def pre(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = args[0].clone()
        x[..., cols] = 0
        return (x, *args[1:])

    proj.register_forward_pre_hook(pre)


def timm_attention_plan(model: nn.Module, prefix: str, heads: int, head_dim: int, kept: Sequence[int]) -> dict:
    width = heads * head_dim
    rows = [r for part in range(3) for r in head_rows(kept, head_dim, part * width)]
    return {
        f"{prefix}.qkv.weight": entry(model, f"{prefix}.qkv.weight", d0=rows),
        f"{prefix}.qkv.bias": entry(model, f"{prefix}.qkv.bias", d0=rows),
        f"{prefix}.proj.weight": entry(model, f"{prefix}.proj.weight", d1=head_rows(kept, head_dim)),
    }


@pytest.mark.parametrize("fused", [True, False])
def test_timm_vit_heads(fused: bool) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=10)
    model.eval()
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused
    original = copy.deepcopy(model)
    heads, head_dim = 3, 64
    removed = {0: [1], 2: [0, 2]}
    plan: dict[str, ParamPlan] = {}
    for block, drop in removed.items():
        plan |= timm_attention_plan(model, f"blocks.{block}.attn", heads, head_dim, keep(heads, drop))
        mask_head_inputs(original.blocks[block].attn.proj, drop, head_dim)
    report = apply_plan(model, plan)

    attn0, attn2 = model.blocks[0].attn, model.blocks[2].attn
    assert (attn0.num_heads, attn0.attn_dim, attn2.num_heads, attn2.attn_dim) == (2, 128, 1, 64)
    assert attn0.head_dim == 64 and model.blocks[1].attn.num_heads == 3
    assert report.modules["blocks.0.attn"] == "Attention: num_heads 3→2, attn_dim 192→128"
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)


def test_timm_attention_partial_head_is_refused() -> None:
    timm = pytest.importorskip("timm")
    attn = timm.layers.Attention(16, num_heads=2, qkv_bias=True)
    model = nn.Sequential(attn)
    rows = keep(48, [3])  # one row of head 0's query
    with pytest.raises(SliceError, match=r"'0' \(Attention\).*part of head\(s\) \[0\]"):
        apply_plan(model, {"0.qkv.weight": entry(model, "0.qkv.weight", d0=rows)})


class QKVAttention(nn.Module):
    """Not a timm class: matched by its structure (qkv, proj, num_heads, head_dim)."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


def test_structural_qkv_attention() -> None:
    model = nn.Sequential(QKVAttention())
    original = copy.deepcopy(model)
    report = apply_plan(model, timm_attention_plan(model, "0", 4, 4, [0, 3]))
    assert model[0].num_heads == 2 and report.modules["0"] == "QKVAttention: num_heads 4→2"
    mask_head_inputs(original[0].proj, [1, 2], 4)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("q_kept", "kv_kept", "groups"),
    [([0, 2], [0, 1], 1), ([0, 1], [0], 2)],
)
def test_timm_grouped_query_attention(q_kept: list[int], kv_kept: list[int], groups: int) -> None:
    timm = pytest.importorskip("timm")
    attn = timm.layers.AttentionRope(16, num_heads=4, qkv_fused=False, num_kv_heads=2, attn_head_dim=4)
    model = nn.Sequential(attn).eval()
    original = copy.deepcopy(model)
    q_rows, kv_rows = head_rows(q_kept, 4), head_rows(kv_kept, 4)
    plan = {f"0.q_proj.{t}": entry(model, f"0.q_proj.{t}", d0=q_rows) for t in ("weight", "bias")}
    plan |= {
        f"0.{p}.{t}": entry(model, f"0.{p}.{t}", d0=kv_rows) for p in ("k_proj", "v_proj") for t in ("weight", "bias")
    }
    plan["0.proj.weight"] = entry(model, "0.proj.weight", d1=q_rows)
    apply_plan(model, plan)
    assert (attn.num_heads, attn.num_kv_heads, attn.num_kv_groups) == (2, len(kv_kept), groups)
    assert (attn.attn_dim, attn.kv_dim) == (8, 4 * len(kv_kept))
    mask_head_inputs(original[0].proj, keep(4, q_kept), 4)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)

    uneven = nn.Sequential(timm.layers.AttentionRope(16, num_heads=4, qkv_fused=False, num_kv_heads=2))
    rows = head_rows([0, 1, 2], 4)
    plan = {f"0.q_proj.{t}": entry(uneven, f"0.q_proj.{t}", d0=rows) for t in ("weight", "bias")}
    plan["0.proj.weight"] = entry(uneven, "0.proj.weight", d1=rows)
    with pytest.raises(SliceError, match=r"'0' \(AttentionRope\).*do not map evenly"):
        apply_plan(uneven, plan)


def hf_models(family: str, impl: str) -> tuple[nn.Module, dict]:
    transformers = pytest.importorskip("transformers")
    common = {"attn_implementation": impl}
    if family == "bert":
        config = transformers.BertConfig(
            vocab_size=50,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=16,
            **common,
        )
        model = transformers.BertModel(config)
        ids = torch.randint(1, 50, (2, 7))
        mask = torch.ones(2, 7, dtype=torch.long)
        mask[1, 5:] = 0
        return model, {"input_ids": ids, "attention_mask": mask}
    if family == "distilbert":
        config = transformers.DistilBertConfig(
            vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=16, **common
        )
        model = transformers.DistilBertModel(config)
        ids = torch.randint(1, 50, (2, 7))
        mask = torch.ones(2, 7, dtype=torch.long)
        mask[1, 5:] = 0
        return model, {"input_ids": ids, "attention_mask": mask}
    config = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    config._attn_implementation = impl
    return transformers.ViTModel(config, add_pooling_layer=False), {"pixel_values": torch.randn(2, 3, 16, 16)}


HF_LAYOUT = {
    # family: (attention prefix in layer 0, q/k/v names, output projection)
    "bert": ("encoder.layer.0.attention", ("self.query", "self.key", "self.value"), "output.dense"),
    "distilbert": ("transformer.layer.0.attention", ("q_lin", "k_lin", "v_lin"), "out_lin"),
    "vit": ("encoder.layer.0.attention", ("attention.query", "attention.key", "attention.value"), "output.dense"),
}


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["bert", "distilbert", "vit"])
def test_hf_heads_match_prune_heads(family: str, impl: str) -> None:
    model, inputs = hf_models(family, impl)
    model.eval()
    oracle = copy.deepcopy(model)
    oracle.prune_heads({0: [1, 3]})  # Hugging Face's own head pruning: an independent reference

    prefix, qkv, out = HF_LAYOUT[family]
    rows = head_rows([0, 2], 8)
    plan: dict[str, ParamPlan] = {}
    for name in qkv:
        for t in ("weight", "bias"):
            plan[f"{prefix}.{name}.{t}"] = entry(model, f"{prefix}.{name}.{t}", d0=rows)
    plan[f"{prefix}.{out}.weight"] = entry(model, f"{prefix}.{out}.weight", d1=rows)
    report = apply_plan(model, plan)
    assert report.notes == [] and report.replaced == {}

    with torch.no_grad():
        got, want = model(**inputs).last_hidden_state, oracle(**inputs).last_hidden_state
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    attention = model.get_submodule(prefix)
    oracle_attention = oracle.get_submodule(prefix)
    assert attention.pruned_heads == oracle_attention.pruned_heads == {1, 3}
    assert set(model.state_dict()) == set(oracle.state_dict())
    for key, value in model.state_dict().items():
        assert value.shape == oracle.state_dict()[key].shape, key
    # HF bookkeeping stays right: pruning a further head by its original number gives the same model again.
    attention.prune_heads([2])
    oracle_attention.prune_heads([2])
    with torch.no_grad():
        got, want = model(**inputs).last_hidden_state, oracle(**inputs).last_hidden_state
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def mha_plan(model: nn.Module, prefix: str, mha: nn.MultiheadAttention, kept: Sequence[int]) -> dict:
    width, head_dim = mha.num_heads * mha.head_dim, mha.head_dim
    cols = head_rows(kept, head_dim)
    p = f"{prefix}." if prefix else ""
    plan = {f"{p}out_proj.weight": entry(model, f"{p}out_proj.weight", d1=cols)}
    if mha._qkv_same_embed_dim:
        rows3 = [r for part in range(3) for r in head_rows(kept, head_dim, part * width)]
        plan[f"{p}in_proj_weight"] = entry(model, f"{p}in_proj_weight", d0=rows3)
    else:
        for part in "qkv":
            plan[f"{p}{part}_proj_weight"] = entry(model, f"{p}{part}_proj_weight", d0=cols)
    if mha.in_proj_bias is not None:
        rows3 = [r for part in range(3) for r in head_rows(kept, head_dim, part * width)]
        plan[f"{p}in_proj_bias"] = entry(model, f"{p}in_proj_bias", d0=rows3)
    if mha.bias_k is not None:
        plan[f"{p}bias_k"] = entry(model, f"{p}bias_k", d2=cols)
        plan[f"{p}bias_v"] = entry(model, f"{p}bias_v", d2=cols)
    return plan


MHA_CONFIGS = [
    {"batch_first": True},
    {"batch_first": False},
    {"batch_first": True, "kdim": 6, "vdim": 5},
    {"batch_first": False, "add_bias_kv": True, "add_zero_attn": True},
    {"batch_first": True, "bias": False},
]


def mha_calls(mha: nn.MultiheadAttention, batched: bool = True) -> list[tuple[tuple, dict]]:
    bsz, tgt, src, e = 2, 5, 4, mha.embed_dim
    lead = (bsz,) if batched else ()

    def seq(n: int, d: int) -> torch.Tensor:
        if not batched:
            return torch.randn(n, d)
        return torch.randn(bsz, n, d) if mha.batch_first else torch.randn(n, bsz, d)

    q, k, v = seq(tgt, e), seq(src, mha.kdim), seq(src, mha.vdim)
    padding = torch.zeros(*lead, src, dtype=torch.bool)
    padding[..., -1] = True
    float_mask = torch.randn(tgt, src)
    heads_mask = torch.rand(bsz * mha.num_heads if batched else mha.num_heads, tgt, src) > 0.7
    heads_mask[..., 0] = False
    causal = torch.triu(torch.ones(tgt, src, dtype=torch.bool), 1)
    return [
        ((q, k, v), {}),
        ((q, k, v), {"need_weights": False, "key_padding_mask": padding}),
        ((q, k, v), {"attn_mask": float_mask, "average_attn_weights": False}),
        ((q, k, v), {"attn_mask": heads_mask, "key_padding_mask": padding, "average_attn_weights": False}),
        ((q, k, v), {"attn_mask": heads_mask, "need_weights": False}),
        ((q, k, v), {"attn_mask": causal, "is_causal": True, "need_weights": False}),
        ((q, k, v), {"attn_mask": causal, "is_causal": True}),
    ]


@pytest.mark.parametrize("config", MHA_CONFIGS)
def test_pruned_mha_equals_mha_when_no_head_removed(config: dict) -> None:
    mha = nn.MultiheadAttention(8, 4, **config)
    pruned = copy.deepcopy(mha)
    holder = nn.Sequential(pruned)
    plan = mha_plan(holder, "0", pruned, range(4))  # every index listed: the module is still converted
    report = apply_plan(holder, plan)
    assert type(holder[0]) is PrunedMultiheadAttention and holder[0] is pruned
    assert "0" in report.replaced
    for batched in (True, False):
        for args, kwargs in mha_calls(mha, batched):
            want = mha(*args, **kwargs)
            got = pruned(*args, **kwargs)
            torch.testing.assert_close(got[0], want[0], atol=ATOL, rtol=0)
            if want[1] is None:
                assert got[1] is None
            else:
                torch.testing.assert_close(got[1], want[1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("config", MHA_CONFIGS)
def test_pruned_mha_equals_zeroed_heads_reference(config: dict) -> None:
    mha = nn.MultiheadAttention(8, 4, **config)
    removed, kept = [1, 2], [0, 3]
    reference = copy.deepcopy(mha)
    with torch.no_grad():  # zeroing the removed heads' output-projection columns removes their contribution
        reference.out_proj.weight[:, head_rows(removed, 2)] = 0
    holder = nn.Sequential(copy.deepcopy(mha))
    report = apply_plan(holder, mha_plan(holder, "0", holder[0], kept))
    pruned = holder[0]
    assert isinstance(pruned, PrunedMultiheadAttention)
    assert (pruned.num_heads, pruned.head_dim, pruned.embed_dim, pruned.kept_heads) == (2, 2, 8, (0, 3))
    assert report.modules["0"] == "MultiheadAttention: num_heads 4→2"
    assert set(holder.state_dict()) == {f"0.{k}" for k in mha.state_dict()}

    # A freshly constructed instance loads the pruned state_dict and computes the same.
    fresh = PrunedMultiheadAttention(8, 2, head_dim=2, **config)
    fresh.load_state_dict(pruned.state_dict())
    fresh.kept_heads, fresh.original_num_heads = pruned.kept_heads, pruned.original_num_heads
    for batched in (True, False):
        for args, kwargs in mha_calls(mha, batched):
            got_out, got_avg = pruned(*args, **kwargs)
            torch.testing.assert_close(fresh(*args, **kwargs)[0], got_out, atol=0, rtol=0)
            want_out, _ = reference(*args, **kwargs)
            torch.testing.assert_close(got_out, want_out, atol=ATOL, rtol=0)
            if kwargs.get("need_weights", True):
                # Per-head weights of the kept heads match the original's (3-D masks were written for all 4 heads).
                per_head = {**kwargs, "average_attn_weights": False}
                got_w, want_w = pruned(*args, **per_head)[1], reference(*args, **per_head)[1]
                head_dim = 1 if batched else 0
                want_kept = want_w.index_select(head_dim, torch.tensor(kept))
                torch.testing.assert_close(got_w, want_kept, atol=ATOL, rtol=0)
                if kwargs.get("average_attn_weights", True):
                    torch.testing.assert_close(got_avg, want_kept.mean(head_dim), atol=ATOL, rtol=0)


def test_pruned_mha_pruned_again() -> None:
    mha = nn.MultiheadAttention(8, 4, batch_first=True)
    reference = copy.deepcopy(mha)
    with torch.no_grad():
        reference.out_proj.weight[:, head_rows([1, 2], 2)] = 0
    holder = nn.Sequential(mha)
    apply_plan(holder, mha_plan(holder, "0", mha, [0, 2, 3]))  # removes original head 1
    report = apply_plan(holder, mha_plan(holder, "0", holder[0], [0, 2]))  # now heads 0, 2 of (0, 2, 3)
    assert report.replaced == {} and report.modules["0"] == "PrunedMultiheadAttention: num_heads 3→2"
    assert (mha.kept_heads, mha.original_num_heads) == ((0, 3), 4)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    heads_mask = torch.rand(2 * 4, 5, 4) > 0.7  # written for the 4 original heads
    heads_mask[..., 0] = False
    got = mha(q, k, k, attn_mask=heads_mask, average_attn_weights=False)
    want = reference(q, k, k, attn_mask=heads_mask, average_attn_weights=False)
    torch.testing.assert_close(got[0], want[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(got[1], want[1][:, [0, 3]], atol=ATOL, rtol=0)


def test_pruned_mha_with_every_head_removed_outputs_the_projection_bias() -> None:
    # A layer that loses all its heads (the core reports it as emptied) still runs: no attention,
    # so the output is the output projection's bias at every position.
    mha = nn.MultiheadAttention(8, 4, batch_first=True)
    holder = nn.Sequential(mha)
    apply_plan(holder, mha_plan(holder, "0", mha, []))
    q = torch.randn(2, 5, 8)
    out, weights = holder[0](q, q, q)
    torch.testing.assert_close(out, mha.out_proj.bias.expand(2, 5, 8), atol=0, rtol=0)
    assert weights is not None and torch.equal(weights, torch.zeros(2, 5, 5))


def tiny_torchvision_vit() -> nn.Module:
    tv = pytest.importorskip("torchvision")
    model = tv.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=4, hidden_dim=16, mlp_dim=24, num_classes=5
    )
    # torchvision zero-initializes the classifier, which would make the output ignore the encoder.
    nn.init.normal_(model.heads.head.weight)
    return model


def test_torchvision_vit_heads_sgd_and_state_dict() -> None:
    model = tiny_torchvision_vit()
    reference = copy.deepcopy(model)
    name = "encoder.layers.encoder_layer_0.self_attention"
    mha = model.get_submodule(name)
    old_params = list(model.parameters())
    report = apply_plan(model, mha_plan(model, name, mha, [0, 2]))
    with torch.no_grad():
        reference.get_submodule(name).out_proj.weight[:, head_rows([1, 3], 4)] = 0
    assert isinstance(model.get_submodule(name), PrunedMultiheadAttention)
    assert name in report.replaced
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=ATOL, rtol=0)

    # Training: every parameter gets a gradient, and an optimizer built now holds only the new tensors.
    model.train()
    sliced = [p for k, p in model.named_parameters() if k in report.sliced]
    assert len(sliced) == 3 and all(is_new(p, old_params) for p in sliced)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model(x).square().mean().backward()
    for k, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, k
    opt.step()
    for k, p in model.named_parameters():
        assert not torch.equal(p, before[k]), k

    # state_dict round trip into a fresh copy of the pruned structure.
    model.eval()
    fresh = copy.deepcopy(model)
    for p in fresh.parameters():
        nn.init.normal_(p)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)

    # Whole-model pickling (torch.save of the module) works too.
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded.get_submodule(name)) is PrunedMultiheadAttention
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_transformer_encoder_fast_path_is_avoided() -> None:
    layer = nn.TransformerEncoderLayer(8, 4, dim_feedforward=12, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=True)
    model.eval()
    reference = copy.deepcopy(model)
    name = "layers.0.self_attn"
    apply_plan(model, mha_plan(model, name, model.get_submodule(name), [1, 2]))
    with torch.no_grad():
        reference.get_submodule(name).out_proj.weight[:, head_rows([0, 3], 2)] = 0
    assert model.use_nested_tensor is False
    x = torch.randn(2, 5, 8)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, 3:] = True
    with torch.no_grad():  # eval + no_grad: torch would take its fused kernel for an unpruned layer
        got = model(x, src_key_padding_mask=padding)
        want = reference(x, src_key_padding_mask=padding)
        torch.testing.assert_close(got[~padding], want[~padding], atol=ATOL, rtol=0)
        torch.testing.assert_close(model(x), reference(x), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------------------------
# Tensors, dtype, device, state_dict


def test_new_tensors_keep_dtype_device_requires_grad() -> None:
    model = small_cnn().double()
    model[0].weight.requires_grad_(False)
    model[0].weight.no_decay = True  # a user flag stored on the parameter object
    old = dict(model.named_parameters())
    old_buffers = dict(model.named_buffers())
    report = apply_plan(model, cnn_plan(model, [0], [1]))
    for key, p in model.named_parameters():
        assert p.dtype == torch.float64 and p.device == old[key].device
        assert p.requires_grad == old[key].requires_grad
        assert type(p) is nn.Parameter
        if key in report.sliced:
            assert p is not old[key]
    assert model[0].weight.no_decay is True
    assert model[1].running_mean is not old_buffers["1.running_mean"]
    assert model[1].running_mean.dtype == torch.float64 and not model[1].running_mean.requires_grad
    assert "1.running_mean" in model.state_dict() and "1.num_batches_tracked" in model.state_dict()

    fresh = copy.deepcopy(model)
    for p in fresh.parameters():
        nn.init.normal_(p)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_stays_on_cuda() -> None:
    model = small_cnn().cuda()
    original = copy.deepcopy(model)
    d1, d2 = [1, 4], [0, 5]
    apply_plan(model, cnn_plan(model, d1, d2))
    for t in [*model.parameters(), *model.buffers()]:
        assert t.is_cuda
    zero_channels(original[2], d1)
    zero_channels(original[5], d2)
    x = torch.randn(2, 3, 6, 6, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), atol=1e-4, rtol=0)
    mha = nn.Sequential(nn.MultiheadAttention(8, 4, batch_first=True)).cuda()
    reference = copy.deepcopy(mha)
    with torch.no_grad():
        reference[0].out_proj.weight[:, head_rows([1], 2)] = 0
    apply_plan(mha, mha_plan(mha, "0", mha[0], [0, 2, 3]))
    q = torch.randn(2, 5, 8, device="cuda")
    torch.testing.assert_close(mha[0](q, q, q)[0], reference[0](q, q, q)[0], atol=1e-4, rtol=0)


def test_sgd_step_on_sliced_cnn() -> None:
    model = small_cnn().train()
    old_params = list(model.parameters())
    report = apply_plan(model, cnn_plan(model, [2, 3], [4]))
    sliced = [p for k, p in model.named_parameters() if k in report.sliced]
    assert len(sliced) == 8 and all(is_new(p, old_params) for p in sliced)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert {id(p) for group in opt.param_groups for p in group["params"]} == params_by_id(model)
    model(torch.randn(4, 3, 6, 6)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.step()


class Scaled(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.rand(channels) + 0.5)
        self.register_buffer("shift", torch.randn(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_unknown_module_is_sliced_with_a_note() -> None:
    model = nn.Sequential(nn.Linear(4, 6), Scaled(6), nn.ReLU(), nn.Linear(6, 2))
    original = copy.deepcopy(model)
    k = keep(6, [2])
    plan = {
        "0.weight": entry(model, "0.weight", d0=k),
        "0.bias": entry(model, "0.bias", d0=k),
        "1.scale": entry(model, "1.scale", d0=k),
        "3.weight": entry(model, "3.weight", d1=k),
    }
    report = apply_plan(model, plan)
    assert len(report.notes) == 1 and "'1' (Scaled)" in report.notes[0] and "scale" in report.notes[0]
    zero_channels(original[2], [2], dim=-1)
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), original(x), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------------------------
# Errors: the module is named and nothing changes


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(before)
    for key, value in state.items():
        assert value.shape == before[key].shape and torch.equal(value, before[key]), key


def test_unknown_key_names_it_and_close_names() -> None:
    model = small_cnn()
    before = copy.deepcopy(model.state_dict())
    plan = cnn_plan(model, [1], [2])
    plan["4.runing_mean"] = plan.pop("4.running_mean")
    with pytest.raises(SliceError, match=r"'4\.runing_mean'.*Close names: 4\.running_mean") as info:
        apply_plan(model, plan)
    assert info.value.module == "4"
    assert_unchanged(model, before)


def test_wrong_shape_names_module() -> None:
    model = small_cnn()
    before = copy.deepcopy(model.state_dict())
    plan = cnn_plan(model, [1], [2])
    plan["3.weight"] = ParamPlan((12, 9, 3, 3), ((0, (0, 1)),))
    with pytest.raises(SliceError, match=r"'3' \(Conv2d\): weight has shape \(12, 8, 3, 3\)"):
        apply_plan(model, plan)
    assert_unchanged(model, before)


def test_uneven_grouped_conv_is_refused() -> None:
    # The valid Linear plan comes first: nothing may be applied before the conv's problem is found.
    model = nn.Sequential(nn.Linear(3, 3), nn.Conv2d(8, 8, 3, groups=2))
    before = copy.deepcopy(model.state_dict())
    k = keep(8, [0, 1])  # both from group 0
    plan = {"0.weight": entry(model, "0.weight", d0=[0, 1]), "0.bias": entry(model, "0.bias", d0=[0, 1])}
    plan |= {"1.weight": entry(model, "1.weight", d0=k), "1.bias": entry(model, "1.bias", d0=k)}
    with pytest.raises(SliceError, match=r"'1' \(Conv2d\): the plan keeps 2, 4 channels in its 2 groups") as info:
        apply_plan(model, plan)
    assert info.value.module == "1"
    assert_unchanged(model, before)
    assert model[0].out_features == 3


def test_inconsistent_plans_are_refused() -> None:
    model = small_cnn()
    plan = cnn_plan(model, [1], [2])
    plan["1.running_var"] = entry(model, "1.running_var", d0=keep(8, [2]))  # not the same channel as its weight
    with pytest.raises(SliceError, match=r"'1' \(BatchNorm2d\): the plan slices its tensors inconsistently"):
        apply_plan(model, plan)

    gn = nn.Sequential(nn.GroupNorm(4, 8))
    with pytest.raises(SliceError, match=r"'0' \(GroupNorm\).*unevenly"):
        apply_plan(
            gn, {"0.weight": entry(gn, "0.weight", d0=keep(8, [0])), "0.bias": entry(gn, "0.bias", d0=keep(8, [0]))}
        )

    conv = nn.Sequential(nn.Conv2d(3, 4, 1))
    with pytest.raises(SliceError, match=r"'0' \(Conv2d\): the plan removes every output channel"):
        apply_plan(conv, {"0.weight": entry(conv, "0.weight", d0=[]), "0.bias": entry(conv, "0.bias", d0=[])})

    mha = nn.Sequential(nn.MultiheadAttention(8, 4))
    plan = mha_plan(mha, "0", mha[0], [0, 1])
    plan["0.out_proj.weight"] = entry(mha, "0.out_proj.weight", d1=head_rows([0, 2], 2))
    with pytest.raises(SliceError, match=r"'0' \(MultiheadAttention\): the plan keeps different heads"):
        apply_plan(mha, plan)
    assert type(mha[0]) is nn.MultiheadAttention


def test_report_type() -> None:
    model = mlp()
    report = apply_plan(model, {})
    assert report == SliceReport()
