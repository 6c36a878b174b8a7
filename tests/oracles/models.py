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
    return getattr(torchvision.models, name)(weights=None, num_classes=classes)


def randomize_batchnorm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
