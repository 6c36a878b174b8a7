"""Writes the "import" section of docs/benchmarks.md from benchmarks/import/results/import.json."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from docsection import write_section  # noqa: E402

r = json.load(open(sys.argv[1]))
out = [
    "## ONNX import (`benchmarks/import/run.sh`)",
    "",
    f"Machine: {r['machine']}; {r['runs']} runs each, medians. Import = reading the file, one example run of the",
    "file by the reference interpreter, mapping, and the per-layer check of the built graph (a second run). \"output",
    "vs file\" is that check's largest relative difference (both run on libtorch's kernels, hence 0); agreement with",
    "onnxruntime (≤ 1e-4) is what tests/onnx_import.rs checks. Goal: ResNet-50 under 1 s.",
    "",
    "| model (torch.onnx.export, random weights) | MB | ONNX nodes | relprune nodes | import s (median) | output vs file |",
    "|---|---|---|---|---|---|",
]
for m in r["imports"]:
    out.append(f"| {m['model']} | {m['megabytes']} | {m['onnx_nodes']} | {m['relprune_nodes']} | {m['median']:.2f} | {m['max_difference']:.1e} |")
out += [
    "",
    "Curve time of the same zoo model built natively and imported from relprune's own ONNX export (LRP-ε, 3 classes,",
    "default grid), run alternately; A_PR must agree.",
    "",
    "| model | component | native s (median) | imported s (median) | imported / native | A_PR native | A_PR imported |",
    "|---|---|---|---|---|---|---|",
]
for c in r["curves"]:
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    out.append(
        f"| {c['model']} | {c['component']} | {med(c['native_seconds']):.1f} | {med(c['imported_seconds']):.1f} | "
        f"{c['ratio_median']:.2f} | {c['a_pr']['native']:.4f} | {c['a_pr']['imported']:.4f} |"
    )
doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
write_section(doc, "import", "\n".join(out))
