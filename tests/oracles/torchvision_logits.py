"""Oracle: a torchvision model with random weights, an input batch and PyTorch's logits.

Writes OUT/model.safetensors (the state_dict), OUT/io.safetensors (x, y). BatchNorm running
statistics and affine parameters are randomised so that eval-mode BatchNorm is really tested.
"""
import argparse
import pathlib

import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import models  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--arch", required=True)
p.add_argument("--out", required=True)
p.add_argument("--batch", type=int, default=2)
p.add_argument("--size", type=int, default=224)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

torch.manual_seed(a.seed)
torch.set_num_threads(2)
model = models.build(a.arch).eval()
channels = int(dict(o.split("=") for o in a.arch.partition(":")[2].split(",") if o).get("in", 3))
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
x = torch.randn(a.batch, channels, a.size, a.size)
with torch.no_grad():
    y = model(x)
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
save_file({"x": x, "y": y}, str(out / "io.safetensors"))
