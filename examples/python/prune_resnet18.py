"""The README's Python quick start: prune a torchvision ResNet-18 to half its MACs with LRP.

Run it in any environment with torch 2.13, torchvision and relprune (`pip install ./python`):

    python examples/python/prune_resnet18.py

Random weights and random samples keep it self-contained; use your trained model and a few
hundred labelled samples of your data instead (accuracy is then meaningful).
"""

import relprune
import torch
import torchvision

torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10)
x, y = torch.randn(200, 3, 64, 64), torch.arange(200) % 10  # your samples and labels

result = relprune.prune(model, x[:2], data=(x, y), criterion="lrp-epsilon", target="macs=0.5")
small = result.model  # a torchvision ResNet again, with sliced layers
before, after = result.report.before, result.report.after
print(f"parameters {before.parameters:,} -> {after.parameters:,}, MACs {before.macs:,} -> {after.macs:,}")
print("layer1.0.conv1:", small.layer1[0].conv1)

# Back in the training loop: the returned module trains like any other.
optimizer = torch.optim.SGD(small.parameters(), lr=0.01, momentum=0.9)
small.train()
loss = torch.nn.functional.cross_entropy(small(x[:32]), y[:32])
loss.backward()
optimizer.step()
print(f"one SGD step: loss {loss.item():.3f}")
torch.save(small.state_dict(), "resnet18-pruned.pt")
