"""Oracle: Wanda-sp and FLAP scores of a decoder's MLP neurons and attention heads, from the
definitions (An et al. 2024), on a Hugging Face folder with PyTorch hooks.

usage: llm_criteria.py FOLDER IDS.safetensors --out DIR
For each layer i, with X the input of the reader (down_proj for neurons, o_proj for heads) over
every token: Wanda-sp per channel j = sum_rows |W[:, j]| * ||X_j||_2, FLAP per channel j =
Var(X_j) (unbiased, over tokens) * ||W[:, j]||_2^2; a head sums its head_dim channels.
Writes DIR/io.safetensors: wanda.N.<layer>, flap.N.<layer> (intermediate,), wanda.H.<layer>,
flap.H.<layer> (heads,), for <layer> = model.layers.i.mlp.gate_proj / up_proj and
model.layers.i.self_attn.
"""

import argparse
import pathlib

import torch
from safetensors.torch import load_file, save_file

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("ids")
p.add_argument("--out", required=True)
a = p.parse_args()
torch.set_num_threads(2)
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)

import transformers  # noqa: E402

model = transformers.AutoModelForCausalLM.from_pretrained(a.folder, dtype=torch.float64).eval()
ids = load_file(a.ids)["ids"]
inputs = {}


def keep(name):
    def hook(module, args):
        inputs[name] = args[0].detach().reshape(-1, args[0].shape[-1])

    return hook


for i, layer in enumerate(model.model.layers):
    layer.mlp.down_proj.register_forward_pre_hook(keep(f"{i}.down"))
    layer.self_attn.o_proj.register_forward_pre_hook(keep(f"{i}.o"))
with torch.no_grad():
    model(input_ids=ids)


def metrics(x, w):
    wanda = w.abs().sum(0) * x.norm(dim=0)
    flap = x.var(dim=0, unbiased=True) * w.square().sum(0)
    return wanda, flap


result = {}
dh = model.config.head_dim
for i, layer in enumerate(model.model.layers):
    wanda, flap = metrics(inputs[f"{i}.down"], layer.mlp.down_proj.weight)
    for proj in ("gate_proj", "up_proj"):
        result[f"wanda.N.model.layers.{i}.mlp.{proj}"] = wanda
        result[f"flap.N.model.layers.{i}.mlp.{proj}"] = flap
    wanda, flap = metrics(inputs[f"{i}.o"], layer.self_attn.o_proj.weight)
    result[f"wanda.H.model.layers.{i}.self_attn"] = wanda.reshape(-1, dh).sum(1)
    result[f"flap.H.model.layers.{i}.self_attn"] = flap.reshape(-1, dh).sum(1)
save_file({k: v.detach().clone().contiguous() for k, v in result.items()}, str(out / "io.safetensors"))
