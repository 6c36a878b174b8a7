"""Oracle: runs a relprune graph folder (graph.json + model.safetensors) with PyTorch's own
functional ops, one op kind per branch below, each written from PyTorch's documented
semantics (torch.nn.functional, scaled_dot_product_attention), independently of relprune.

usage: graph_torch.py GRAPH_DIR INPUTS.safetensors OUTPUT.safetensors [GRAPH_DIR INPUTS OUTPUT ...]
INPUTS holds the graph inputs as "in0", "in1", ...; OUTPUT gets "y" (float64 compute).
"""
import json
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file



def run(folder, inputs_path, out_path):
    spec = json.load(open(f"{folder}/graph.json"))
    params = {k: (v.double() if v.is_floating_point() else v) for k, v in load_file(f"{folder}/model.safetensors").items()}
    inputs = load_file(inputs_path)
    vals = {}
    order = {n: i for i, n in enumerate(spec["inputs"])}
    for i, node in enumerate(spec["nodes"]):
        op = node["op"]
        t = op["type"]
        P = lambda r: params[node["params"][r]]  # noqa: E731
        xs = [vals[j] for j in node["inputs"]]
        x = xs[0] if xs else None
        if t == "input":
            v = inputs[f"in{order[i]}"]
            y = v.double() if v.is_floating_point() else v
        elif t == "conv2d":
            y = F.conv2d(x, P("weight"), P("bias") if op["bias"] else None, op["stride"], op["padding"],
                         op["dilation"], op["groups"])
        elif t == "batch_norm2d":
            y = F.batch_norm(x, P("running_mean"), P("running_var"), P("weight"), P("bias"), False, 0.0, op["eps"])
        elif t == "relu":
            y = F.relu(x)
        elif t == "leaky_relu":
            y = F.leaky_relu(x, op["negative_slope"])
        elif t == "pow":
            y = torch.pow(x, op["exponent"])
        elif t == "hardtanh":
            y = F.hardtanh(x, op["min_val"], op["max_val"])
        elif t == "silu":
            y = F.silu(x)
        elif t == "sigmoid":
            y = torch.sigmoid(x)
        elif t == "hardsigmoid":
            y = F.hardsigmoid(x)
        elif t == "hardswish":
            y = F.hardswish(x)
        elif t == "tanh":
            y = torch.tanh(x)
        elif t == "gelu":
            y = F.gelu(x, approximate="tanh" if op["tanh"] else "none")
        elif t == "max_pool2d":
            y = F.max_pool2d(x, op["kernel"], op["stride"], op["padding"], ceil_mode=op["ceil_mode"])
        elif t == "avg_pool2d":
            y = F.avg_pool2d(x, op["kernel"], op["stride"], op["padding"], ceil_mode=op.get("ceil_mode", False),
                             count_include_pad=op.get("count_include_pad", True))
        elif t == "adaptive_avg_pool2d":
            y = F.adaptive_avg_pool2d(x, op["output"])
        elif t == "linear":
            y = F.linear(x, P("weight"), P("bias") if op["bias"] else None)
        elif t == "channel_linear":
            y = F.linear(x.permute(0, 2, 3, 1), P("weight"), P("bias") if op["bias"] else None).permute(0, 3, 1, 2)
        elif t == "group_norm":
            y = F.group_norm(x, op["groups"], P("weight"), P("bias"), op["eps"])
        elif t == "map_position_embedding":
            y = x + P("weight")
        elif t == "token_slice":
            y = x[:, op["start"]:op["start"] + op["length"]]
        elif t == "token_linear":
            y = F.linear(x.transpose(1, 2), P("weight"), P("bias") if op["bias"] else None).transpose(1, 2)
        elif t == "resize2d":
            align = op.get("align_corners", False) if op["mode"] != "nearest" else None
            y = F.interpolate(x, size=op["output"], mode=op["mode"], align_corners=align)
        elif t == "pad2d":
            top, left, bottom, right = op["pads"]
            y = F.pad(x, (left, right, top, bottom), value=-math.inf if op.get("fill") == "neg_infinity" else 0.0)
        elif t == "layer_norm2d":
            y = F.layer_norm(x.permute(0, 2, 3, 1), (op["channels"],), P("weight"), P("bias"), op["eps"]).permute(0, 3, 1, 2)
        elif t == "channel_slice":
            y = x.narrow(1 if x.dim() == 4 else x.dim() - 1, op["start"], op["length"])
        elif t == "scale":
            y = x * P("weight") + (P("bias") if op.get("bias") else 0)
        elif t == "flatten":
            y = torch.flatten(x, op["start_dim"])
        elif t == "add":
            y = sum(xs[1:], xs[0])
        elif t == "sub":
            y = xs[0] - xs[1]
        elif t == "mul":
            y = xs[0] * xs[1]
        elif t == "concat":
            y = torch.cat(xs, op["dim"])
        elif t in ("dropout", "stochastic_depth"):
            y = x
        elif t == "layer_norm":
            y = F.layer_norm(x, (op["dim"],), P("weight"), P("bias"), op["eps"])
        elif t == "attention":
            h, dh = op["heads"], op["head_dim"]
            if op["packed"]:
                q, k, v = x.split(h * dh, dim=-1)
                mask = xs[1] if len(xs) > 1 else None
            else:
                q, k, v = xs[:3]
                mask = xs[3] if len(xs) > 3 else None
            split = lambda z: z.reshape(z.shape[0], z.shape[1], h, dh).transpose(1, 2)  # noqa: E731
            m = None if mask is None else mask.bool()[:, None, None, :]
            ctx = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=m)
            y = ctx.transpose(1, 2).reshape(x.shape[0], x.shape[1], h * dh)
        elif t == "rms_norm":
            # torch.nn.functional.rms_norm: x / sqrt(mean(x^2) + eps) * weight.
            y = F.rms_norm(x, (op["dim"],), P("weight"), op["eps"])
        elif t == "causal_attention":
            h, kv, dh = op["heads"], op["kv_heads"], op["head_dim"]
            split = lambda z, n: z.reshape(z.shape[0], z.shape[1], n, dh).transpose(1, 2)  # noqa: E731
            q, k, v = split(xs[0], h), split(xs[1], kv), split(xs[2], kv)
            T = q.shape[2]
            if op.get("rope_theta") is not None:
                # Rotary embedding, the half-split layout: pairs (i, i + dh/2) rotate by pos * theta^(-2i/dh).
                inv = op["rope_theta"] ** (-torch.arange(0, dh, 2, dtype=torch.float64) / dh)
                ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
                cos, sin = ang.cos().repeat(1, 2), ang.sin().repeat(1, 2)
                rot = lambda z: torch.cat([-z[..., dh // 2:], z[..., :dh // 2]], -1)  # noqa: E731
                q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            allowed = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
            if len(xs) > 3:
                allowed = allowed & xs[3].bool()[:, None, None, :]
            groups = op.get("groups") or [h // kv] * kv
            index = torch.repeat_interleave(torch.arange(kv), torch.tensor(groups, dtype=torch.long))
            ctx = F.scaled_dot_product_attention(q, k[:, index], v[:, index], attn_mask=allowed)
            y = ctx.transpose(1, 2).reshape(x.shape[0], x.shape[1], h * dh)
        elif t == "embedding":
            y = F.embedding(x, P("weight"))
        elif t == "position_embedding":
            w = P("weight")
            tokens = x.shape[1]
            y = x + (w[:, :tokens] if op["leading_one"] else w[:tokens].unsqueeze(0))
        elif t == "token_position_embedding":
            # RoBERTa: real tokens count up from padding_idx + 1, padding tokens sit at padding_idx.
            real = xs[1].ne(op["padding_idx"]).long()
            pos = torch.cumsum(real, dim=1) * real + op["padding_idx"]
            y = x + F.embedding(pos, P("weight"))
        elif t == "segment_embedding":
            y = x + P("weight")[0]
        elif t == "patches_to_tokens":
            y = x.flatten(2).transpose(1, 2)
        elif t == "class_token":
            y = torch.cat([P("weight").expand(x.shape[0], -1, -1), x], 1)  # one or more tokens
        elif t == "select_token":
            y = x[:, op["index"]]
        elif t == "mean_pool":
            if len(xs) > 1:
                m = xs[1].double().unsqueeze(-1)
                y = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
            else:
                y = x.mean(1)
        else:
            raise SystemExit(f"graph_torch.py has no branch for op `{t}`")
        vals[i] = y
    save_file({"y": vals[spec["output"]].contiguous()}, out_path)


args = sys.argv[1:]
for k in range(0, len(args), 3):
    run(*args[k:k + 3])
