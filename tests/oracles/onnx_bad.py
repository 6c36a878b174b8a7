"""Oracle: ONNX files an importer must refuse with a clear error.

usage: onnx_bad.py --out DIR
writes DIR/unsupported.onnx (an nn.ConvTranspose2d between two convs),
DIR/two_outputs.onnx (a model returning two tensors), DIR/no_weights.onnx (only a ReLU and a
flatten: no initializers) and DIR/dynamic_size.onnx (height and width exported as dynamic).
"""
import argparse
import pathlib

import torch
from torch import nn


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        return self.fc(y), y


def export(model, x, path, **kw):
    model.eval()
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=None, **kw)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    out = pathlib.Path(p.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    up = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ConvTranspose2d(4, 4, 2, stride=2), nn.Conv2d(4, 4, 3),
                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    export(up, x, out / "unsupported.onnx")
    export(TwoOutputs(), x, out / "two_outputs.onnx")
    export(nn.Sequential(nn.ReLU(), nn.Flatten()), x, out / "no_weights.onnx")
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    export(net, x, out / "dynamic_size.onnx", dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})


if __name__ == "__main__":
    main()
