"""The export lines of docs/import-onnx.md, run as written: they keep BatchNorm and the names."""

import re
import subprocess
from pathlib import Path

import onnx
import torch
import torchvision

DOC = Path(__file__).resolve().parents[2] / "docs" / "import-onnx.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_documented_export_keeps_batchnorm_and_names(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    block = next(b for b in _blocks() if "example = torch.randn(1, 3, 224, 224)" in b)
    model = torchvision.models.resnet18(num_classes=10)
    exec(block.replace("224, 224", "64, 64"), {"model": model, "torch": torch})
    graph = onnx.load("model.onnx").graph
    ops = {n.op_type for n in graph.node}
    assert "BatchNormalization" in ops
    names = {t.name for t in graph.initializer}
    assert {"conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.bn1.running_var", "fc.weight"} <= names


def test_the_worked_example_exports_as_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    block = next(b for b in _blocks() if "my_cnn.onnx" in b)
    exec(block, {})
    from relprune import _core

    out = subprocess.run(
        [str(_core.binary()), "--json", "components", "--model", "my_cnn.onnx"],
        env=_core._environment(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert '"0"' in out and '"4"' in out  # filters under the module names
    assert "BatchNormalization" in {n.op_type for n in onnx.load("my_cnn.onnx").graph.node}
