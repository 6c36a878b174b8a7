"""Oracle: models exported by torch.onnx.export, with inputs, onnxruntime's and PyTorch's outputs.

usage: onnx_models.py --cases resnet18,vit_b_16@dynamo,resnet18@opset13,... --out DIR [--state-dict]
       onnx_models.py --list

A case is NAME[@MOD[@MOD...]], MOD one of
  dynamo      torch.onnx.export(..., dynamo=True, dynamic_shapes=...) (without it: dynamo=False,
              the legacy TorchScript exporter, with dynamic_axes)
  opsetN      opset_version=N, 13 <= N <= 21 (without it: each exporter's default, 20 for both
              in torch 2.13). The dynamo exporter translates at opset >= 18 and down-converts;
              when that fails (LayerNormalization below 17, ReduceMean's axes input below 18)
              it keeps opset 18 with a logged error, and so does this script: "opset" in the
              JSON is what the file declares, "requested_opset" what the case asked for.
              The legacy exporter has no aten::scaled_dot_product_attention below opset 14
              (tiny_vit@opset13 and vit_b_16@opset13 fail).
  external    re-save the exported file with onnx.save_model(save_as_external_data=True,
              location="<case>.onnx.data") so that every initializer lives in external data
Everything else is what a user would type: eval mode, a dynamic batch axis, default options.
The dynamo exporter's default (external_data=True) already writes "<case>.onnx.data" next to
the .onnx; it is kept.

For each case DIR gets
  <case>.onnx (+ <case>.onnx.data)  the exported model
  <case>.io.safetensors              input.0, input.1, ... (batch 2, seeded; float32 or int64),
                                     output (onnxruntime, CPUExecutionProvider, on that file),
                                     torch_output (the PyTorch module in eval mode)
  <case>.json                        {"inputs", "input_shapes", "outputs", "opset", "exporter",
                                      "op_types" (histogram over the graph and its subgraphs),
                                      "num_classes", "external_data", "export_seconds",
                                      "max_abs_diff" (output vs torch_output), "max_abs_output",
                                      "batch1_max_abs_diff" (onnxruntime on the first sample alone
                                      vs torch_output[:1]: the batch axis is really dynamic)}
  <case>.state_dict.safetensors      only with --state-dict: the module's state_dict after the
                                     perturbation below, i.e. exactly the weights that were
                                     exported (PyTorch names, e.g. layer1.0.bn1.running_mean,
                                     num_batches_tracked included; the Hugging Face models'
                                     keys start with "model.", the wrapper's attribute), so that
                                     a native relprune model can be built with the same weights.
                                     The exporters fold BatchNorm into the preceding conv; this
                                     file keeps it separate.
A case that fails writes <case>.error (the traceback) instead; the script goes on with the
other cases and exits with status 1 at the end.

Models: random init after torch.manual_seed(0); then parameters that torchvision / Hugging Face
initialise to constants (BatchNorm running statistics and affine parameters, LayerNorm affine
parameters, biases, ViT's class token and zero head, ConvNeXt's 1e-6 layer scale) are drawn at
random too, so that an importer that drops or misreads one of them is caught.
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback
from collections import Counter

import numpy as np
import torch
from torch import nn

CNN_SIZE = 64
TORCHVISION = {
    # name: input size (vgg16_bn needs 224: its AdaptiveAvgPool2d(7) does not export for a
    # 2x2 feature map; vit_b_16 has a fixed 224 input)
    "resnet18": CNN_SIZE,
    "resnet50": CNN_SIZE,
    "vgg16_bn": 224,
    "vit_b_16": 224,
    "mobilenet_v2": CNN_SIZE,
    "mobilenet_v3_small": CNN_SIZE,
    "mobilenet_v3_large": CNN_SIZE,
    "efficientnet_b0": CNN_SIZE,
    "densenet121": CNN_SIZE,
    "resnext50_32x4d": CNN_SIZE,
    "wide_resnet50_2": CNN_SIZE,
    "regnet_x_400mf": CNN_SIZE,
    "regnet_y_400mf": CNN_SIZE,
    "convnext_tiny": CNN_SIZE,
}
HF = ("bert", "distilbert", "roberta")
OTHER = ("sequential", "tiny_vit", "constructs_cnn", "constructs_vit")
CASES = tuple(TORCHVISION) + HF + OTHER
BATCH = 2
SEQ = 16
PADDED = 4  # padding positions at the end of the second sample


class Logits(nn.Module):
    """A Hugging Face sequence classifier that returns only the logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def perturb(model):
    g = torch.Generator().manual_seed(1)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                uniform(m.running_mean, -0.5, 0.5)
                uniform(m.running_var, 0.5, 2.0)
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.2, 0.2)
            elif isinstance(m, nn.LayerNorm):
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.2, 0.2)
        norm_params = {id(p) for m in model.modules()
                       if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm))
                       for p in m.parameters()}
        for name, p in model.named_parameters():
            if id(p) in norm_params:
                continue
            if name.endswith("layer_scale"):  # ConvNeXt: 1e-6 at init
                uniform(p, 0.2, 0.6)
            elif "class_token" in name:  # ViT: zeros at init
                normal(p, 0.2)
            elif name.startswith("heads.") and p.dim() == 2:  # ViT: zero head
                normal(p, 0.05)
            elif p.dim() == 1 and name.endswith("bias"):  # often zeros at init
                normal(p, 0.1)


class ConstructsCNN(nn.Module):
    """One of each map construct of timm's other architectures, in a small CNN: TensorFlow's
    asymmetric "same" padding, GroupNorm, LeakyReLU, PoolFormer's pool(x) − x, PoolFormerV2's
    StarReLU (s · relu(x)² + b), InstanceNorm2d, a learnable scalar affine map (HGNetV2), nearest
    upsampling of a branch (HRNet) and a bilinear resized gate (GhostNetV2)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2)
        self.gn = nn.GroupNorm(4, 16)
        self.act = nn.LeakyReLU(0.1)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.inorm = nn.InstanceNorm2d(16, affine=True)
        self.scale = nn.Parameter(torch.tensor([1.5]))
        self.shift = nn.Parameter(torch.tensor([0.1]))
        self.star_scale = nn.Parameter(torch.tensor(0.8))
        self.star_bias = nn.Parameter(torch.tensor(-0.05))
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fuse = nn.Conv2d(32, 16, 1)
        self.gate = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)
        with torch.no_grad():
            for norm in (self.gn, self.inorm):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        x = self.stem(nn.functional.pad(x, (0, 1, 0, 1)))
        x = self.act(self.gn(x))
        x = x + (self.pool(x) - x)
        x = self.star_scale * torch.relu(x) ** 2 + self.star_bias
        x = self.inorm(x) * self.scale + self.shift
        up = nn.functional.interpolate(self.fuse(self.down(x)), scale_factor=2, mode="nearest")
        x = x + up
        g = self.gate(nn.functional.avg_pool2d(x, 2))
        x = x * torch.sigmoid(nn.functional.interpolate(g, size=(16, 16), mode="bilinear", align_corners=False))
        return self.fc(x.mean((2, 3)))


class ConstructsViT(nn.Module):
    """A vision transformer with DeiT's distillation token and two heads averaged, register
    tokens after the positions (DINOv2 with registers) and layer scale (timm's blocks)."""

    def __init__(self, dim=32):
        super().__init__()
        from timm.models.vision_transformer import Block
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.2)
        self.dist = nn.Parameter(torch.randn(1, 1, dim) * 0.2)
        self.reg = nn.Parameter(torch.randn(1, 2, dim) * 0.2)
        self.pos = nn.Parameter(torch.randn(1, 18, dim) * 0.2)
        self.block = Block(dim, 4, mlp_ratio=2.0, qkv_bias=True, init_values=0.5)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        self.head_dist = nn.Linear(dim, 10)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        b = t.shape[0]
        t = torch.cat([self.cls.expand(b, -1, -1), self.dist.expand(b, -1, -1), t], 1) + self.pos
        t = torch.cat([self.reg.expand(b, -1, -1), t], 1)
        t = self.norm(self.block(t))
        return (self.head(t[:, 2]) + self.head_dist(t[:, 3])) / 2


def build(name):
    """(module, example inputs, input names, num_classes)"""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if name in TORCHVISION:
        import torchvision
        model = getattr(torchvision.models, name)(weights=None, num_classes=10)
        s = TORCHVISION[name]
        return model, (torch.randn(BATCH, 3, s, s, generator=g),), ["input"], 10
    if name == "tiny_vit":
        from torchvision.models.vision_transformer import VisionTransformer
        model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                  hidden_dim=64, mlp_dim=128, num_classes=10)
        return model, (torch.randn(BATCH, 3, 32, 32, generator=g),), ["input"], 10
    if name == "constructs_cnn":
        return ConstructsCNN(), (torch.randn(BATCH, 3, 32, 32, generator=g),), ["input"], 10
    if name == "constructs_vit":
        return ConstructsViT(), (torch.randn(BATCH, 3, 32, 32, generator=g),), ["input"], 10
    if name == "sequential":
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 10))
        return model, (torch.randn(BATCH, 1, 28, 28, generator=g),), ["input"], 10
    if name in HF:
        import transformers as tf
        small = dict(vocab_size=1000, num_labels=2, attn_implementation="eager")
        if name == "bert":
            cfg = tf.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=128, max_position_embeddings=64, **small)
            model, pad = tf.BertForSequenceClassification(cfg), cfg.pad_token_id
        elif name == "distilbert":
            cfg = tf.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                                      max_position_embeddings=64, **small)
            model, pad = tf.DistilBertForSequenceClassification(cfg), cfg.pad_token_id
        else:
            cfg = tf.RobertaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128, max_position_embeddings=64,
                                   type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                                   eos_token_id=2, **small)
            model, pad = tf.RobertaForSequenceClassification(cfg), cfg.pad_token_id
        ids = torch.randint(3, cfg.vocab_size, (BATCH, SEQ), generator=g)
        mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
        mask[1, SEQ - PADDED:] = 0
        ids[1, SEQ - PADDED:] = pad
        return Logits(model), (ids, mask), ["input_ids", "attention_mask"], cfg.num_labels
    raise SystemExit(f"unknown case {name!r}; known: {', '.join(CASES)}")


def parse(case):
    name, *mods = case.split("@")
    opts = {"dynamo": False, "opset": None, "external": False}
    for m in mods:
        if m == "dynamo":
            opts["dynamo"] = True
        elif m == "external":
            opts["external"] = True
        elif m.startswith("opset") and m[5:].isdigit() and 13 <= int(m[5:]) <= 21:
            opts["opset"] = int(m[5:])
        else:
            raise SystemExit(f"{case}: unknown suffix @{m} (dynamo, external, opset13..opset21)")
    if name not in CASES:
        raise SystemExit(f"unknown case {name!r}; known: {', '.join(CASES)}")
    return name, opts


def export(model, inputs, names, path, opts):
    if opts["dynamo"]:
        batch = torch.export.Dim("batch")
        torch.onnx.export(model, inputs, str(path), dynamo=True, opset_version=opts["opset"],
                          dynamic_shapes=tuple({0: batch} for _ in inputs))
    else:
        axes = {n: {0: "batch"} for n in names + ["output"]}
        torch.onnx.export(model, inputs, str(path), dynamo=False, opset_version=opts["opset"],
                          input_names=names, output_names=["output"], dynamic_axes=axes)


def histogram(graph, counter):
    for n in graph.node:
        counter[n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"] += 1
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                histogram(sub, counter)
    return counter


def run_case(case, out, state_dict=False):
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import save_file

    name, opts = parse(case)
    model, inputs, names, num_classes = build(name)
    model.eval()
    perturb(model)
    with torch.no_grad():
        expected = model(*inputs)
    path = out / f"{case}.onnx"
    data = out / f"{case}.onnx.data"
    for f in (path, data, out / f"{case}.error", out / f"{case}.state_dict.safetensors"):
        f.unlink(missing_ok=True)
    if state_dict:
        import safetensors.torch
        # cloned: safetensors refuses tensors that share storage
        sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(sd, str(out / f"{case}.state_dict.safetensors"))
    t0 = time.perf_counter()
    if opts["external"]:
        with tempfile.TemporaryDirectory() as tmp:
            export(model, inputs, names, pathlib.Path(tmp) / "model.onnx", opts)
            proto = onnx.load(os.path.join(tmp, "model.onnx"))  # loads external data too
        # default size_threshold (1024 bytes): small tensors (axes, shapes) stay inline, as
        # onnxruntime cannot shape-infer e.g. ReduceMean with its axes in external data
        onnx.save_model(proto, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data.name)
    else:
        export(model, inputs, names, path, opts)
    seconds = time.perf_counter() - t0

    onnx.checker.check_model(str(path))
    proto = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    input_names = [i.name for i in sess.get_inputs()]
    feed = {n: t.numpy() for n, t in zip(input_names, inputs)}
    outputs = sess.run(None, feed)
    got = outputs[0]
    want = expected.numpy()
    diff = float(np.abs(got - want).max())
    # the batch axis really is dynamic: the first sample alone gives the first row
    one = sess.run(None, {n: v[:1] for n, v in feed.items()})[0]
    diff1 = float(np.abs(one - want[:1]).max())

    tensors = {f"input.{i}": np.ascontiguousarray(t.numpy()) for i, t in enumerate(inputs)}
    tensors["output"] = np.ascontiguousarray(got)
    tensors["torch_output"] = np.ascontiguousarray(want)
    save_file(tensors, str(out / f"{case}.io.safetensors"))
    meta = {
        "inputs": input_names,
        "input_shapes": [list(t.shape) for t in inputs],
        "outputs": [o.name for o in sess.get_outputs()],
        "opset": opset,
        "requested_opset": opts["opset"],
        "exporter": "dynamo" if opts["dynamo"] else "legacy",
        "op_types": dict(sorted(histogram(proto.graph, Counter()).items())),
        "num_classes": num_classes,
        "external_data": data.name if data.exists() else None,
        "export_seconds": round(seconds, 2),
        "max_abs_diff": diff,
        "max_abs_output": float(np.abs(want).max()),
        "batch1_max_abs_diff": diff1,
        "torch": torch.__version__,
    }
    (out / f"{case}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", help="comma-separated, e.g. resnet18,vit_b_16@dynamo")
    p.add_argument("--out", help="output folder (created)")
    p.add_argument("--list", action="store_true", help="print the known case names")
    p.add_argument("--state-dict", action="store_true",
                   help="also write <case>.state_dict.safetensors (the exported weights)")
    a = p.parse_args()
    if a.list:
        print("\n".join(CASES))
        return 0
    if not a.cases or not a.out:
        p.error("--cases and --out are required")
    torch.set_num_threads(2)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = [c for c in a.cases.split(",") if c]
    for c in cases:
        parse(c)  # reject typos before the slow part
    failed = []
    for c in cases:
        try:
            m = run_case(c, out, a.state_dict)
            print(f"{c}: opset {m['opset']}, {sum(m['op_types'].values())} nodes, "
                  f"export {m['export_seconds']:.1f} s, max |ort - torch| {m['max_abs_diff']:.3g} "
                  f"(max |torch| {m['max_abs_output']:.3g}; "
                  f"batch 1: {m['batch1_max_abs_diff']:.3g})", flush=True)
            if m["requested_opset"] not in (None, m["opset"]):
                print(f"{c}: note: opset {m['requested_opset']} requested, the exporter kept "
                      f"{m['opset']}", flush=True)
        except Exception:
            failed.append(c)
            (out / f"{c}.error").write_text(traceback.format_exc())
            print(f"{c}: FAILED\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    if failed:
        print(f"failed: {','.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
