"""Import coverage: which timm and Hugging Face architectures relprune imports, reproduces and prunes.

For every model in MODELS (random initialisation; weights do not change what imports), in this order:
  1. export  — torch.onnx.export as docs/import-onnx.md documents it (TorchScript exporter, BatchNorm kept,
               opset 17, dynamic batch), at the model's default input size;
  2. import  — `relprune run` on a fixed random input (batch 2): the import itself checks every mapped layer
               against the file's values, then its output is compared with onnxruntime's on the same input;
  3. prune   — `relprune prune --target macs=0.5 --criterion weight --data none`; the pruned folder's
               `model.onnx` must give, in onnxruntime, the output `relprune run` gives on the pruned folder.
A model counts as covered when all three pass. A refusal records the first line of relprune's message, which
names the construct; the table groups models by it.

Usage: benchmarks/import/coverage.sh  (runs this with the project's Python; env WORK, ONLY=name,name, THREADS)
Writes benchmarks/import/results/coverage.json and the table in docs/import-onnx.md (section "coverage").
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import subprocess
import sys
import time
import traceback

import numpy as np

# At least 60 timm architectures, one per family where possible, the smallest member (the construct, not the
# size, decides import). Models whose forward cannot be traced are kept: their row says so.
TIMM = """resnet18 resnet26d resnet50d resnext26ts seresnet18 ecaresnet26t skresnet18 res2net50_26w_4s resnest14d
regnetx_002 regnety_002 efficientnet_b0 efficientnet_lite0 tf_efficientnet_b0 mobilenetv2_050 mobilenetv3_small_050
mobilenetv4_conv_small mnasnet_050 fbnetc_100 ghostnet_050 ghostnetv2_100 lcnet_050 rexnet_100 hardcorenas_a tinynet_e
dla34 dpn48b densenet121 vgg11_bn repvgg_a0 mobileone_s0 hrnet_w18_small cspresnet50 cspdarknet53 darknet17
ese_vovnet19b_dw selecsls42b resnetv2_50 nf_resnet26 gernet_s hgnetv2_b0 repghostnet_050 inception_v3 xception41
convnext_atto convnextv2_atto poolformer_s12 poolformerv2_s12 mixer_s16_224 resmlp_12_224 gmlp_ti16_224
vit_tiny_patch16_224 deit_tiny_patch16_224 deit_tiny_distilled_patch16_224 vit_tiny_r_s16_p8_224
vit_small_patch14_reg4_dinov2 eva02_tiny_patch14_224 cait_xxs24_224 xcit_nano_12_p16_224 crossvit_tiny_240
swin_tiny_patch4_window7_224 swinv2_cr_tiny_ns_224 pvt_v2_b0 coat_lite_tiny levit_128s efficientformer_l1
efficientformerv2_s0 mobilevit_xxs mobilevitv2_050 edgenext_xx_small maxvit_rmlp_nano_rw_256 coatnet_nano_rw_224
fastvit_t8 tiny_vit_5m_224 inception_next_tiny halonet26t botnet26t_256 lambda_resnet26t visformer_tiny""".split()

# The common Hugging Face classifiers, at small sizes (the classes, not the sizes, decide import).
HF_VISION = [
    "ViT",
    "DeiT",
    "ConvNext",
    "ConvNextV2",
    "ResNet",
    "RegNet",
    "Swin",
    "MobileViT",
    "EfficientNet",
    "Beit",
    "Dinov2",
    "Segformer",
    "PoolFormer",
    "Levit",
]
HF_TEXT = ["Bert", "DistilBert", "Roberta", "Albert", "Electra", "MobileBert", "DebertaV2", "GPT2"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
BATCH = 2
TOKENS = 16


def Logits(model, *names: str):  # noqa: N802 — it builds a module, as a class would
    """A Hugging Face model as a module that takes its inputs by position and returns only the logits."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *xs):
            return self.m(**dict(zip(names, xs, strict=True))).logits

    return Logits(model)


def hf_model(name: str):
    """A small randomly initialised Hugging Face classifier and its example inputs."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    small = dict(num_labels=10, attn_implementation="eager")
    if name in HF_TEXT:
        cfg_cls = getattr(tf, f"{name}Config")
        sizes = dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            vocab_size=1000,
            max_position_embeddings=64,
        )
        if name == "DistilBert":
            sizes = dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128, vocab_size=1000, max_position_embeddings=64)
        if name == "GPT2":
            sizes = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=64, pad_token_id=0)
        if name == "MobileBert":
            sizes.update(embedding_size=32, intra_bottleneck_size=32, true_hidden_size=32, num_feedforward_networks=2)
        if name == "Albert":
            sizes.update(embedding_size=32)
        cfg = cfg_cls(**sizes, **small)
        model = getattr(tf, f"{name}ForSequenceClassification")(cfg)

        ids = torch.randint(1, 1000, (BATCH, TOKENS))
        mask = torch.ones(BATCH, TOKENS, dtype=torch.long)
        return Logits(model, "input_ids", "attention_mask").eval(), (ids, mask), ["input_ids", "attention_mask"]
    cfg_cls = getattr(tf, f"{name}Config")
    vit = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, image_size=32)
    cfgs = {
        "ViT": dict(vit, patch_size=8),
        "DeiT": dict(vit, patch_size=8),
        "Beit": dict(vit, patch_size=8),
        "Dinov2": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
        "ConvNext": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
        "ConvNextV2": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
        "ResNet": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], embedding_size=16),
        "RegNet": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], embedding_size=16, groups_width=8),
        "Swin": dict(embed_dim=32, depths=[1, 1], num_heads=[2, 4], image_size=64, window_size=4),
        "MobileViT": dict(image_size=64),
        "EfficientNet": dict(image_size=64, width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280),
        "Segformer": dict(
            hidden_sizes=[16, 32, 64, 128],
            depths=[1, 1, 1, 1],
            num_attention_heads=[1, 2, 4, 8],
            decoder_hidden_size=64,
        ),
        "PoolFormer": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
        "Levit": dict(
            image_size=64,
            hidden_sizes=[64, 96, 128],
            depths=[1, 1, 1],
            num_attention_heads=[2, 3, 4],
            key_dim=[16, 16, 16],
        ),
    }
    cfg = cfg_cls(**cfgs[name], **small)
    size = cfgs[name].get("image_size", 64)
    cls = {"DeiT": "DeiTForImageClassificationWithTeacher", "Levit": "LevitForImageClassificationWithTeacher"}.get(
        name, f"{name}ForImageClassification"
    )
    model = getattr(tf, cls)(cfg)

    return Logits(model, "pixel_values").eval(), (torch.randn(BATCH, 3, size, size),), ["pixel_values"]


def timm_model(name: str):
    """A randomly initialised timm model (10 classes) and an example image batch at its default size."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    c, h, w = model.pretrained_cfg["input_size"]
    return model, (torch.randn(BATCH, c, h, w),), ["x"]


def export(model, inputs, names, path: pathlib.Path) -> None:
    """The export docs/import-onnx.md documents, written once (the folder is a cache)."""
    import torch

    if path.exists():
        return
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        model,
        inputs,
        str(tmp),
        dynamo=False,
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
        keep_initializers_as_inputs=True,
        opset_version=17,
        input_names=names,
        output_names=["output"],
        dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}},
    )
    tmp.replace(path)


def ort(path: pathlib.Path, arrays: list[np.ndarray]) -> np.ndarray:
    """Onnxruntime's first output for the arrays, on the CPU."""
    import onnxruntime as rt

    opts = rt.SessionOptions()
    opts.log_severity_level = 3  # the documented export keeps initializers as inputs; ORT warns per tensor
    sess = rt.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), arrays, strict=True)}
    return sess.run(None, feeds)[0]


def first_line(text: str) -> str:
    """The error line of relprune's stderr, without its prefixes and the file's path."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error") or ln.startswith("relprune: error")]
    line = (errs or lines or ["(no message)"])[0]
    return re.sub(r"^\S*\.onnx: ", "", line.removeprefix("relprune: ").removeprefix("error: "))


def construct(reason: str) -> str:
    """What a refusal names: the message after the node it is about, up to the pointer to the docs."""
    reason = re.sub(r"^\S*\.onnx: ", "", reason)
    found = re.search(r"\(node \d+ of the file\): (.*)", reason)
    why = found.group(1) if found else reason
    return re.split(r"\. What relprune reads| \(it reads | \(\w+ is not an operator|: target MACs", why)[0]


def relprune(bin_: str, threads: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Runs the binary with the given threads; output captured."""
    return subprocess.run([bin_, "--threads", threads, *args], capture_output=True, text=True, timeout=timeout)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference relative to b's scale (at least 1)."""
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def check(bin_: str, threads: str, source: str, name: str, work: pathlib.Path) -> dict:
    """One model's row: export, import against onnxruntime, prune, pruned ONNX against onnxruntime."""
    row: dict = {"source": source, "model": name}
    folder = work / source / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    t0 = time.time()
    try:
        model, inputs, names = (timm_model if source == "timm" else hf_model)(name)
        export(model, inputs, names, path)
    except Exception as e:  # noqa: BLE001 — a model the exporter cannot trace is a row, not a crash
        row.update(
            stage="export",
            status="not exportable",
            reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200],
        )
        return row
    row["parameters_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    arrays = [i.numpy() if i.dtype != np.int64 else i.numpy() for i in inputs]
    npys = []
    for k, a in enumerate(arrays):
        p = folder / f"in{k}.npy"
        np.save(p, a)
        npys.append(str(p))
    out = folder / "relprune.npy"
    r = relprune(bin_, threads, "run", "--model", str(path), "--input", *npys, "--output", str(out))
    row["import_seconds"] = round(time.time() - t0, 1)
    if r.returncode != 0:
        row.update(stage="import", status="refused", reason=first_line(r.stderr))
        return row
    diff = difference(np.load(out), ort(path, arrays))
    row["max_difference"] = diff
    if not diff < 1e-3:
        row.update(stage="import", status="differs", reason=f"output differs from onnxruntime by {diff:.2e}")
        return row
    pruned = folder / "pruned"
    t0 = time.time()

    def prune(target: float) -> subprocess.CompletedProcess:
        """Prune at MACs `target` with the weight criterion and no data."""
        return relprune(
            bin_,
            threads,
            "prune",
            "--model",
            str(path),
            "--target",
            f"macs={target}",
            "--criterion",
            "weight",
            "--data",
            "none",
            "--latency-runs",
            "0",
            "--out",
            str(pruned),
            *(["--seq-len", str(TOKENS)] if source == "hf" and name in HF_TEXT else []),
        )

    row["target"] = 0.5
    r = prune(0.5)
    # Half the MACs may lie below what the default components can remove (a model whose MACs sit
    # mostly in layers without units of that kind): then the least it can keep, rounded up.
    floor = re.search(r"leaves ([0-9.]+) of the model's MACs", r.stderr)
    if r.returncode != 0 and floor and float(floor.group(1)) >= 0.99:
        row.update(
            stage="prune",
            status="nothing to prune",
            reason="imports and reproduces onnxruntime, but no unit can be removed: " + first_line(r.stderr),
        )
        return row
    if r.returncode != 0 and floor:
        row["target"] = math.ceil(float(floor.group(1)) * 100 + 1) / 100
        r = prune(row["target"])
    row["prune_seconds"] = round(time.time() - t0, 1)
    if r.returncode != 0:
        row.update(stage="prune", status="prune failed", reason=first_line(r.stderr))
        return row
    pout = folder / "pruned.npy"
    r = relprune(bin_, threads, "run", "--model", str(pruned / "model"), "--input", *npys, "--output", str(pout))
    if r.returncode != 0:
        row.update(stage="prune", status="pruned model fails", reason=first_line(r.stderr))
        return row
    pdiff = difference(np.load(pout), ort(pruned / "model.onnx", arrays))
    report = json.loads((pruned / "prune.json").read_text())
    row["macs_ratio"] = report.get("macs_ratio") or report.get("budget", {}).get("macs_ratio")
    row["pruned_difference"] = pdiff
    if not pdiff < 1e-3:
        row.update(stage="prune", status="pruned ONNX differs", reason=f"pruned ONNX differs by {pdiff:.2e}")
        return row
    row.update(stage="done", status="covered", reason="")
    return row


def table(rows: list[dict]) -> str:
    """The markdown section: the summary line, the table, and the refusals by message."""
    import collections

    covered = [r for r in rows if r["status"] == "covered"]
    timm_rows = [r for r in rows if r["source"] == "timm"]
    timm_cov = [r for r in timm_rows if r["status"] == "covered"]
    lines = [
        f"{len(covered)} of {len(rows)} architectures import, reproduce onnxruntime (1e-3) and prune to half their "
        f"MACs (or the least their prunable layers allow, where that is more) with a pruned ONNX that onnxruntime "
        f"reproduces: {len(timm_cov)} of {len(timm_rows)} timm models "
        f"({100 * len(timm_cov) / max(1, len(timm_rows)):.0f} %) and {len(covered) - len(timm_cov)} of "
        f"{len(rows) - len(timm_rows)} Hugging Face classifiers. Random weights, the export docs/import-onnx.md "
        f"documents, batch {BATCH}. "
        "Generated by `benchmarks/import/coverage.sh`.",
        "",
        "| source | model | result | MACs kept | why (relprune's message) |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["status"] != "covered", r["source"], r["model"])):
        kept = f"{r['macs_ratio']:.3f}" if r.get("macs_ratio") else ""
        if kept and r.get("target", 0.5) != 0.5:
            kept += f" (least possible {r['target']:.2f})"
        reason = re.sub(r"^\S*\.onnx: ", "", r["reason"]).replace("|", "/")
        lines.append(f"| {r['source']} | {r['model']} | {r['status']} | {kept} | {reason} |")
    reasons = collections.Counter(construct(r["reason"]) for r in rows if r["status"] != "covered")
    if reasons:
        lines += ["", "What the others stop at, most frequent first:", ""]
        lines += [f"- {n} × {why}" for why, n in reasons.most_common()]
    return "\n".join(lines)


def main() -> None:
    """Checks every model (or those in ONLY), stores the rows and writes the docs' table."""
    bin_ = sys.argv[1]
    work = pathlib.Path(os.environ.get("WORK", ROOT / "out/bench/coverage"))
    threads = os.environ.get("THREADS", "2")
    only = set(filter(None, os.environ.get("ONLY", "").split(",")))
    res = ROOT / "benchmarks/import/results/coverage.json"
    old = {(r["source"], r["model"]): r for r in json.loads(res.read_text())["rows"]} if res.exists() else {}
    models = [("timm", n) for n in TIMM] + [("hf", n) for n in HF_VISION + HF_TEXT]
    rows = []
    for source, name in models:
        if only and name not in only:
            rows.append(
                old.get((source, name))
                or {"source": source, "model": name, "status": "not run", "reason": "not run yet"}
            )
            continue
        try:
            row = check(bin_, threads, source, name, work)
        except Exception as e:  # noqa: BLE001 — one model's harness failure must not lose the others
            row = {
                "source": source,
                "model": name,
                "status": "harness error",
                "reason": f"{type(e).__name__}: {e}".splitlines()[0][:200],
            }
            traceback.print_exc()
        print(json.dumps(row), flush=True)
        rows.append(row)
    res.parent.mkdir(parents=True, exist_ok=True)
    tmp = res.with_suffix(".tmp")
    tmp.write_text(json.dumps({"threads": threads, "rows": rows}, indent=1))
    tmp.replace(res)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from docsection import write_section

    write_section(ROOT / "docs/import-onnx.md", "coverage", table(rows))
    summary = table(rows).split("\n\n")
    body = "\n\n".join(
        [
            "## Import coverage: timm and Hugging Face (`benchmarks/import/coverage.sh`)",
            summary[0],
            "Machine: x86_64, 2 cores, `--threads " + threads + "`. Every model's row and relprune's message: "
            "[import-onnx.md](import-onnx.md#coverage-timm-and-hugging-face).",
            *summary[2:],
        ]
    )
    write_section(ROOT / "docs/benchmarks.md", "import-coverage", body, after="import")


if __name__ == "__main__":
    main()
