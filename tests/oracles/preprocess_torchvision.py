"""Oracle: torchvision's transforms on an image folder, for relprune's `--preprocess`.

For each SPEC (relprune's canonical `key=value` form, as `Preprocess`'s Display writes it), the
images of ROOT/<class>/<file> (classes and files sorted by name, as relprune's image folders)
go through torchvision's usual pipeline: PIL `convert("RGB")`, `Grayscale(1)` for channels=grey,
`Resize(resize)` (PIL bilinear with antialias) unless resize=none, `CenterCrop((H, W))`,
`ToTensor()`, `Normalize(mean, std)`. Writes OUT/<k>.safetensors with `x` (N, C, H, W) float32
for the k-th spec.
"""
import argparse
import pathlib

import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--spec", action="append", required=True)
p.add_argument("--out", required=True)
a = p.parse_args()

root = pathlib.Path(a.root)
files = [f for d in sorted(x for x in root.iterdir() if x.is_dir()) for f in sorted(d.iterdir())]
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)
for k, spec in enumerate(a.spec):
    kv = dict(item.split("=", 1) for item in spec.split(","))
    steps = []
    if kv["channels"] == "grey":
        steps.append(transforms.Grayscale(1))
    if kv["resize"] != "none":
        steps.append(transforms.Resize(int(kv["resize"])))
    crop = [int(v) for v in kv["crop"].split(":")]
    steps.append(transforms.CenterCrop(crop if len(crop) == 2 else crop * 2))
    steps.append(transforms.ToTensor())
    steps.append(transforms.Normalize([float(v) for v in kv["mean"].split(":")], [float(v) for v in kv["std"].split(":")]))
    t = transforms.Compose(steps)
    x = torch.stack([t(Image.open(f).convert("RGB")) for f in files])
    save_file({"x": x.contiguous()}, str(out / f"{k}.safetensors"))
