"""Per-filter LRP scores of your own module, and pruning that leaves chosen layers whole.

    python examples/python/scores_and_ignored.py
"""

import relprune
import torch
import torchvision

torch.manual_seed(0)
model = torchvision.models.mobilenet_v2(num_classes=10)
x, y = torch.randn(100, 3, 64, 64), torch.arange(100) % 10

scores = relprune.scores(model, x[:2], (x, y), criterion="lrp-epsilon")
for name in list(scores)[:5]:
    print(f"{name:<24} {len(scores[name]):>4} filters, least relevant: {scores[name].argmin().item()}")

result = relprune.prune(model, x[:2], data=(x, y), target="params=0.7", ignored=[model.features[0]])
print("features.0 kept its width:", result.model.features[0][0].out_channels)
print("removed per layer:", {k: len(v) for k, v in list(result.removed.items())[:5]})
