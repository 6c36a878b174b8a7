"""Oracle: per-filter LRP relevances from zennit 0.5.1 on identical weights and inputs.

--rules is a JSON map from module name (Conv2d / Linear) to a rule spec as relprune writes it
({"rule": "epsilon", "epsilon": 1e-6} | {"rule": "gamma", "gamma": g} | {"rule": "zplus"} |
{"rule": "alphabeta", "alpha": a, "beta": b}). Activations and BatchNorm use Pass, sums and
average pools Norm (zennit's composite defaults); BatchNorm is merged into the preceding conv
and residual sums made explicit by zennit's canonizers (ResNetCanonizer / VGGCanonizer); with
--no-merge-bn only the residual sums are made explicit.

Writes OUT/model.safetensors (unless --weights), OUT/io.safetensors with x, labels and, for
every conv, R.<name>: the relevance at the conv's output summed over H, W, shape (B, C).
"""
import argparse
import json
import pathlib
import sys

import torch
from safetensors.torch import load_file, save_file
from zennit.composites import NameMapComposite
from zennit.core import Composite
from zennit.rules import AlphaBeta, Epsilon, Gamma, Norm, Pass, ZPlus
from zennit.torchvision import (ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer, ResNetCanonizer,
                                VGGCanonizer)
from zennit.types import Activation, AvgPool, BatchNorm
from zennit.layer import Sum
from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.efficientnet import MBConv
from torchvision.ops.misc import SqueezeExcitation

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import models  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--weights")
p.add_argument("--rules", required=True)
p.add_argument("--size", type=int, required=True)
p.add_argument("--in-channels", type=int, default=3)
p.add_argument("--batch", type=int, default=2)
p.add_argument("--logit", action="store_true", help="initial relevance = one-hot x logit")
p.add_argument("--no-merge-bn", action="store_true", help="keep BatchNorm as a Pass layer")
p.add_argument("--double", action="store_true", help="compute in float64")
p.add_argument("--exact-merge", action="store_true",
               help="make a merged BatchNorm exactly the identity (stock zennit leaves x/sqrt(1+eps))")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", required=True)
a = p.parse_args()

torch.manual_seed(a.seed)
torch.set_num_threads(2)
model = models.build(a.model).eval()
if a.weights:
    model.load_state_dict(load_file(a.weights))
else:
    models.randomize_batchnorm(model)


def make_rule(spec, gamma_default):
    r = spec["rule"]
    if r == "epsilon":
        return Epsilon(epsilon=spec.get("epsilon", 1e-6))
    if r == "gamma":
        return Gamma(gamma=spec.get("gamma", gamma_default))
    if r == "zplus":
        return ZPlus()
    if r == "alphabeta":
        return AlphaBeta(alpha=spec["alpha"], beta=spec["beta"])
    raise ValueError(r)


modules = dict(model.named_modules())
rules = json.load(open(a.rules)) if a.rules.endswith(".json") else json.loads(a.rules)
name_map = []
for name, spec in rules.items():
    gamma_default = 0.25 if isinstance(modules[name], torch.nn.Conv2d) else 0.05
    name_map.append(((name,), make_rule(spec, gamma_default)))


class Mixed(Composite):
    """Per-name rules for linear layers; zennit's layer_map_base for everything else."""

    def __init__(self, canonizers):
        self.names = NameMapComposite(name_map)
        base = [(Activation, Pass()), (Gate, Pass()), (Sum, Norm()), (AvgPool, Norm()), (BatchNorm, Pass())]

        def mapping(ctx, name, module):
            hook = self.names.mapping(ctx, name, module)
            if hook is not None:
                return hook
            return next((h.copy() for t, h in base if isinstance(module, t)), None)

        super().__init__(module_map=mapping, canonizers=canonizers)


if a.exact_merge:
    from zennit.canonizers import MergeBatchNorm

    original_merge = MergeBatchNorm.merge_batch_norm

    def exact_merge(modules, batch_norm):
        original_merge(modules, batch_norm)
        # stock zennit sets running_var = 1, leaving a factor 1/sqrt(1 + eps) in the forward pass
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)

    MergeBatchNorm.merge_batch_norm = staticmethod(exact_merge)

class MobileNetV2Canonizer(AttributeCanonizer):
    """Makes the residual sum of torchvision's InvertedResidual an explicit Sum module (as zennit's
    ResNet canonizers do for ResNet blocks), so that it takes the Norm rule."""

    def __init__(self):
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        if isinstance(module, InvertedResidual) and module.use_res_connect:
            return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward(self, x):
        return self.canonizer_sum(torch.stack([x, self.conv(x)], dim=-1))


class Gate(torch.nn.Module):
    """x · s with the gate s held constant (set by the canonised SqueezeExcitation's forward)."""

    def forward(self, x):
        return x * self.s


class EfficientNetCanonizer(AttributeCanonizer):
    """Explicit residual sums in MBConv blocks, and squeeze-and-excitation gates as constants
    (a Gate module that takes the Pass rule: all relevance goes to the gated signal)."""

    def __init__(self):
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        if isinstance(module, MBConv) and module.use_res_connect:
            return {"forward": cls.mbconv_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, SqueezeExcitation):
            return {"forward": cls.se_forward.__get__(module), "canonizer_gate": Gate()}
        return None

    @staticmethod
    def mbconv_forward(self, x):
        return self.canonizer_sum(torch.stack([self.stochastic_depth(self.block(x)), x], dim=-1))

    @staticmethod
    def se_forward(self, x):
        self.canonizer_gate.s = self._scale(x).detach()
        return self.canonizer_gate(x)


if "efficientnet" in a.model:
    canon = [EfficientNetCanonizer()] + ([] if a.no_merge_bn else [SequentialMergeBatchNorm()])
elif "mobilenet_v2" in a.model:
    # torchvision pools with a functional call, which zennit would treat as a plain gradient;
    # a pooling module takes the Norm rule (as relprune's AdaptiveAvgPool2d node does).
    model.avgpool = torch.nn.AdaptiveAvgPool2d(1)
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    canon = [MobileNetV2Canonizer()] + ([] if a.no_merge_bn else [SequentialMergeBatchNorm()])
elif "resnet" in a.model:
    # Residual sums become explicit Sum modules either way; BatchNorm merging is optional.
    canon = [ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()] if a.no_merge_bn else [ResNetCanonizer()]
else:
    canon = [] if a.no_merge_bn else [VGGCanonizer()]
x = torch.randn(a.batch, a.in_channels, a.size, a.size)
if a.double:
    model = model.double()
    x = x.double()
with torch.no_grad():
    logits = model(x)
labels = torch.randint(0, logits.shape[1], (a.batch,))
captured = {}


def capture(name):
    def hook(module, inp, out):
        out.register_hook(lambda g: captured.__setitem__(name, g.sum((2, 3)).detach().clone()))
    return hook


composite = Mixed(canon)
with composite.context(model) as m:
    handles = [mod.register_forward_hook(capture(n)) for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d)]
    xi = x.clone().requires_grad_(True)
    out = m(xi)
    init = torch.nn.functional.one_hot(labels, out.shape[1]).float()
    if a.logit:
        init = init * out.detach()
    out.backward(init)
    for h in handles:
        h.remove()

o = pathlib.Path(a.out)
o.mkdir(parents=True, exist_ok=True)
if not a.weights:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(o / "model.safetensors"))
tensors = {"x": x, "labels": labels}
tensors.update({f"R.{k}": v.contiguous() for k, v in captured.items()})
save_file(tensors, str(o / "io.safetensors"))
