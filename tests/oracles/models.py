"""PyTorch definitions of relprune's architectures, with torchvision parameter names, for oracles."""
import torch
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck


class CifarResNet(torchvision.models.resnet.ResNet):
    """torchvision's ResNet with a 3x3 stride-1 stem, no max-pool, and any base width / input channels."""

    def __init__(self, depth, width, in_channels, num_classes):
        block, layers = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                         50: (Bottleneck, [3, 4, 6, 3])}[depth]
        torch.nn.Module.__init__(self)
        self._norm_layer = torch.nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = torch.nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.Identity()
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.fc = torch.nn.Linear(width * 8 * block.expansion, num_classes)


def cifar_vgg(depth, bn, width, hidden, in_channels, size, num_classes, dropout=0.5):
    per_block = {11: [1, 1, 2, 2, 2], 13: [2, 2, 2, 2, 2], 16: [2, 2, 3, 3, 3], 19: [2, 2, 4, 4, 4]}[depth]
    cfg, spatial = [], size
    for b, n in enumerate(per_block):
        cfg += [width * [1, 2, 4, 8, 8][b]] * n
        if spatial >= 2:
            cfg.append("M")
            spatial //= 2
    layers, c = [], in_channels
    for v in cfg:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers.append(torch.nn.Conv2d(c, v, 3, padding=1))
            if bn:
                layers.append(torch.nn.BatchNorm2d(v))
            layers.append(torch.nn.ReLU(inplace=True))
            c = v
    m = torchvision.models.vgg.VGG(torch.nn.Sequential(*layers), num_classes=num_classes)
    m.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
    m.classifier = torch.nn.Sequential(
        torch.nn.Linear(c, hidden), torch.nn.ReLU(True), torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(True), torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, num_classes))
    return m


def build(spec):
    """Builds a model from relprune's architecture syntax NAME[:key=value,...]."""
    name, _, opts = spec.partition(":")
    kv = dict(o.split("=") for o in opts.split(",") if o)
    classes = int(kv.get("classes", 1000))
    if name.startswith("cifar_resnet"):
        return CifarResNet(int(name[len("cifar_resnet"):]), int(kv.get("width", 64)), int(kv.get("in", 3)), classes)
    if name.startswith("cifar_vgg"):
        d = name[len("cifar_vgg"):]
        bn = d.endswith("_bn")
        return cifar_vgg(int(d.removesuffix("_bn")), bn, int(kv.get("width", 64)), int(kv.get("hidden", 512)),
                         int(kv.get("in", 3)), int(kv.get("size", 32)), classes, float(kv.get("dropout", 0.5)))
    if name == "cifar_mobilenet_v2":
        # torchvision's MobileNetV2 with a stride-1 stem for small images (relprune's cifar_ variant).
        m = torchvision.models.mobilenet_v2(weights=None, num_classes=classes, width_mult=float(kv.get("width_mult", 1.0)))
        stem = m.features[0][0]
        m.features[0][0] = torch.nn.Conv2d(int(kv.get("in", 3)), stem.out_channels, 3, 1, 1, bias=False)
        return m
    if name == "vit":
        # relprune's vit:size=,patch=,layers=,heads=,dim=,mlp=,in=,classes= (torchvision's layout).
        m = torchvision.models.VisionTransformer(
            int(kv["size"]), int(kv["patch"]), int(kv["layers"]), int(kv["heads"]), int(kv["dim"]), int(kv["mlp"]),
            num_classes=classes)
        m.conv_proj = torch.nn.Conv2d(int(kv.get("in", 3)), int(kv["dim"]), int(kv["patch"]), int(kv["patch"]))
        return m
    return getattr(torchvision.models, name)(weights=None, num_classes=classes)


def randomize_batchnorm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def relprune_macs(model, example):
    """MACs per sample counted by relprune's rules (src/graph/ops: conv2d, linear, attention), so
    that a PyTorch model pruned by another tool is measured with the same counter: a conv counts
    output elements × fan-in, a linear output elements × in_features, self-attention its in / out
    projections plus 2·T²·E for the score and value products. Norms and activations count 0."""
    total = [0]

    def conv(mod, inp, out):
        total[0] += out[0].numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    def linear(mod, inp, out):
        total[0] += out[0].numel() * mod.in_features

    def mha(mod, inp, out):
        t, e = inp[0].shape[1] if mod.batch_first else inp[0].shape[0], mod.embed_dim
        total[0] += t * e * 3 * e + t * e * e + 2 * t * t * e

    hooks = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv))
        elif isinstance(mod, torch.nn.MultiheadAttention):
            hooks.append(mod.register_forward_hook(mha))
        elif isinstance(mod, torch.nn.Linear) and not isinstance(mod, torch.nn.modules.linear.NonDynamicallyQuantizableLinear):
            hooks.append(mod.register_forward_hook(linear))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(example[:1])
    model.train(was)
    for h in hooks:
        h.remove()
    return total[0]


def spec_from_manifest(arch):
    """relprune's architecture syntax for a zoo manifest's `recipe.architecture` object."""
    common = {"in": arch["in_channels"], "classes": arch["num_classes"]}
    if arch["arch"] == "resnet":
        opts = dict(width=arch["width"], size=arch["image_size"], **common)
        name = "cifar_resnet%d" % arch.get("depth", 18)
    elif arch["arch"] == "vgg":
        opts = dict(width=arch["width"], size=arch["image_size"], **common)
        opts.update({k: arch[k] for k in ("hidden", "dropout") if k in arch})
        name = "cifar_vgg%d%s" % (arch.get("depth", 16), "_bn" if arch.get("batch_norm") else "")
    elif arch["arch"] == "mobilenet" and arch.get("version") == "v2" and arch.get("cifar"):
        opts = dict(width_mult=arch["width_mult"], **common)
        name = "cifar_mobilenet_v2"
    elif arch["arch"] == "vit":
        opts = dict(size=arch["image_size"], patch=arch["patch_size"], layers=arch["num_layers"],
                    heads=arch["num_heads"], dim=arch["hidden_dim"], mlp=arch["mlp_dim"], **common)
        name = "vit"
    else:
        raise ValueError(f"no PyTorch builder for {arch}")
    return name + ":" + ",".join(f"{k}={v}" for k, v in opts.items())
