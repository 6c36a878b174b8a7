"""The plain PyTorch side of benchmarks/scale: what a user's script does with torchvision's
ImageFolder and a DataLoader (2 workers), on the same folder, model architecture and transforms as
relprune.

usage:
  torch_scale.py generate DIR CLASSES TRAIN_PER_CLASS VAL_PER_CLASS
      DIR/{train,val}/nCCCCCCCC/*.JPEG: 500x375 random-noise JPEGs (an ImageNet layout; the benchmark
      times the pipeline, not the accuracy).
  [DEVICE=cuda] torch_scale.py run MODEL DIR N_EVAL REFS_PER_CLASS RATES OUT.json
      MODEL: resnet50 (conv filters) or vit_b_16 (MLP neurons), random init (seed 0), one output per class folder.
      Times, each with a fresh DataLoader as a script does per step:
        decode    one pass over the first N_EVAL val images, no model (decode + resize 256 + crop 224);
        eval      one evaluation pass over them;
        curve     a RATES-rate masked curve (rates 0, 1/RATES, ..): the lowest-L1 fraction of the
                  components zeroed by forward hooks, one pass per rate, as the paper's code does;
        attribute LRP-epsilon relevances of every component for REFS_PER_CLASS train images per class,
                  batch 64: zennit 0.5.1's epsilon rule on conv / linear layers with its ResNet
                  canonizer (resnet50), or on the linear layers (vit_b_16, attention by the gradient);
                  relevance at a component = output x modified gradient, summed per unit.
"""
import json
import os
import pathlib
import sys
import time

import torch


def generate(root, classes, train, val):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, per in (("train", train), ("val", val)):
        for c in range(classes):
            d = pathlib.Path(root) / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per):
                f = d / f"{split}_{c * per + i:08d}.JPEG"
                if not f.exists():
                    Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(f, quality=90)


def loader(root, split, indices, batch):
    from torchvision import datasets, transforms
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = datasets.ImageFolder(str(pathlib.Path(root) / split), transform=tf)
    if indices is not None:
        ds = torch.utils.data.Subset(ds, indices)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, num_workers=2)


def components(model, name):
    """(module, dim) pairs whose output units are the prunable components."""
    if name == "resnet50":
        return [(m, 1) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # vit_b_16: the hidden neurons of every MLP block (the first Linear of each).
    return [(blk.mlp[0], -1) for blk in model.encoder.layers]


def evaluate(model, dl):
    dev = next(model.parameters()).device
    correct = n = 0
    with torch.no_grad():
        for x, y in dl:
            correct += (model(x.to(dev)).argmax(-1).cpu() == y).sum().item()
            n += len(y)
    return correct / max(n, 1)


def main():
    if sys.argv[1] == "generate":
        generate(sys.argv[2], *map(int, sys.argv[3:6]))
        return
    name, root, n_eval, refs_per_class, rates, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), \
        int(sys.argv[6]), sys.argv[7]
    torch.set_num_threads(2)
    torch.manual_seed(0)
    dev = torch.device(os.environ.get("DEVICE", "cpu"))
    import torchvision
    classes = len(list((pathlib.Path(root) / "val").iterdir()))
    model = getattr(torchvision.models, name)(weights=None, num_classes=classes).eval().to(dev)
    res = dict(model=name, device=str(dev), n_eval=n_eval, rates=rates, threads=torch.get_num_threads(), torch=torch.__version__,
               dataloader_workers=2)
    idx = list(range(n_eval))

    t = time.perf_counter()
    for _ in loader(root, "val", idx, 64):
        pass
    res["decode_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    evaluate(model, loader(root, "val", idx, 64))
    res["eval_seconds"] = time.perf_counter() - t

    comps = components(model, name)
    scores = torch.cat([m.weight.detach().abs().flatten(1).sum(1) for m, _ in comps])
    order = scores.argsort()
    sizes = [m.weight.shape[0] for m, _ in comps]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    t = time.perf_counter()
    accs = []
    for r in range(rates):
        k = int(round(r / rates * len(order)))
        drop = set(order[:k].tolist())
        hooks = []
        for (m, dim), off, size in zip(comps, offsets, sizes):
            mask = torch.tensor([0.0 if off + u in drop else 1.0 for u in range(size)], device=dev)
            shape = [1, size, 1, 1] if dim == 1 else [size]
            hooks.append(m.register_forward_hook(lambda _m, _i, o, mask=mask.reshape(shape): o * mask))
        accs.append(evaluate(model, loader(root, "val", idx, 64)))
        for h in hooks:
            h.remove()
    res["curve_seconds"] = time.perf_counter() - t

    from torchvision import datasets
    train = datasets.ImageFolder(str(pathlib.Path(root) / "train"))
    per = {}
    refs = []
    for i, (_, c) in enumerate(train.samples):
        if per.get(c, 0) < refs_per_class:
            per[c] = per.get(c, 0) + 1
            refs.append(i)
    res["references"] = len(refs)
    from zennit.composites import NameMapComposite
    from zennit.rules import Epsilon
    targets = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    canon = []
    if name == "resnet50":
        from zennit.torchvision import ResNetCanonizer
        canon = [ResNetCanonizer()]
    composite = NameMapComposite([(targets, Epsilon(1e-6))], canonizers=canon)
    t = time.perf_counter()
    total = [torch.zeros(s, dtype=torch.float64) for s in sizes]
    with composite.context(model) as m:
        for x, y in loader(root, "train", refs, 64):
            x, y = x.to(dev).requires_grad_(True), y.to(dev)
            outs = []
            hooks = [mod.register_forward_hook(lambda _m, _i, o: outs.append(o)) for mod, _ in comps]
            logits = m(x)
            for h in hooks:
                h.remove()
            grads = torch.autograd.grad(logits, outs, torch.nn.functional.one_hot(y, logits.shape[1]).float())
            for i, (o, g) in enumerate(zip(outs, grads)):
                rel = (o * g).detach()
                rel = rel.sum((2, 3)) if rel.dim() == 4 else (rel.sum(1) if rel.dim() == 3 else rel)
                total[i] += rel.sum(0).double().cpu()
    res["attribute_seconds"] = time.perf_counter() - t
    res["curve_accuracy"] = accs
    pathlib.Path(out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
