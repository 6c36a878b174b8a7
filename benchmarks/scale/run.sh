#!/usr/bin/env bash
# benchmarks/scale: relprune against a plain PyTorch script (torchvision ImageFolder, DataLoader with
# 2 workers, the same resize 256 / crop 224 / ImageNet normalisation) on the same synthetic
# ImageNet-layout folder, in one run, on the CPU:
#   decode     images/s of decode + preprocess, no model;
#   eval       one evaluation pass (decode included: both start cold);
#   curve      a 20-rate accuracy curve (rates 0, 0.05, …, 0.95) ranked by weight L1 on both sides
#              (relprune: masked, and --physical; PyTorch: zeroing forward hooks, one DataLoader pass
#              per rate as the paper's code does);
#   attribute  LRP-ε relevances of every component for the reference images (relprune's LRP; zennit
#              on the PyTorch side);
#   peak memory of every process (ru_maxrss, as /usr/bin/time -v reports it).
# Models: resnet50 (conv filters) and vit_b_16 (MLP neurons), random init with one output per class (the
# folder's), so the figures time the pipeline, not accuracy.
# Scaled down to fit this 2-core machine (the paper's protocol is 1,000 classes × 10 references and
# a 50,000-image validation split): CLASSES × (TRAIN + VAL) images, the curve on the first N_EVAL val
# images, REFS references per class. Settings (environment, defaults in brackets):
#   CLASSES [100] TRAIN [10] VAL [10] MODELS [resnet50 vit_b_16] THREADS [2]
#   N_EVAL_resnet50 [200] REFS_resnet50 [10]  N_EVAL_vit_b_16 [50] REFS_vit_b_16 [2]
#   DEVICE [cpu]: both sides run there (benchmarks/scale/gpu.sh sets cuda)
# Usage: benchmarks/scale/run.sh     (results: out/bench/scale/*.json; table: docs/benchmarks.md "scale")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh" --runtime
. "$root/scripts/env.sh"
here="$root/benchmarks/scale"
work="${WORK:-$root/out/bench/scale}"
CLASSES="${CLASSES:-100}"; TRAIN="${TRAIN:-10}"; VAL="${VAL:-10}"
MODELS="${MODELS:-resnet50 vit_b_16}"; THREADS="${THREADS:-2}"
export DEVICE="${DEVICE:-cpu}"   # both sides: relprune --device, torch.device (benchmarks/scale/gpu.sh: cuda)
BIN="${RELPRUNE_BIN:-$CARGO_TARGET_DIR/release/relprune}"
data="$work/data-$CLASSES-$TRAIN-$VAL"
mkdir -p "$work"
"$RELPRUNE_PYTHON" "$here/torch_scale.py" generate "$data" "$CLASSES" "$TRAIN" "$VAL"
# Peak resident memory of a command and its children, in MiB, written to $1.
peak() { local f="$1"; shift; "$RELPRUNE_PYTHON" "$here/peak.py" "$f" "$@"; }
(cd "$root" && cargo build --release --quiet --example decode_once)
for model in $MODELS; do
  n_var="N_EVAL_$model"; r_var="REFS_$model"
  n="${!n_var:-$([ "$model" = resnet50 ] && echo 200 || echo 50)}"
  refs="${!r_var:-$([ "$model" = resnet50 ] && echo 10 || echo 2)}"
  comp=filters; [ "$model" = vit_b_16 ] && comp=neurons
  out="$work/$model"
  mkdir -p "$out"
  echo "scale: $model, $n eval images, $refs refs/class" >&2
  "$RELPRUNE_PYTHON" - "$BIN" "$model" "$data" "$n" "$refs" "$comp" "$THREADS" "$out" "$here" <<'EOF'
import json, pathlib, shutil, subprocess, sys, time, os
bin_, model, data, n, refs, comp, threads, out, here = sys.argv[1:]
out = pathlib.Path(out)
spec = f"{model}:classes={len(list(pathlib.Path(data, 'val').iterdir()))}"
def relprune(stem, *args):
    cache = out / f"cache-{stem}"                       # a cold decode-once cache for every run
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, RELPRUNE_CACHE=str(cache))
    cmd = [bin_, "--threads", threads, "--json", "curve", "--model", spec, "--device", os.environ["DEVICE"], "--component", comp,
           "--data", f"imagefolder:{data}", "--split", "val", "--out", str(out / stem), *args]
    t = time.perf_counter()
    r = subprocess.run([sys.executable, f"{here}/peak.py", str(out / f"{stem}.peak"), *cmd],
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"relprune {stem} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout)["results"][0]
    shutil.rmtree(cache, ignore_errors=True)
    return dict(wall=wall, **res["timings"], peak_mib=float((out / f"{stem}.peak").read_text()))
res = {"model": model, "device": os.environ["DEVICE"], "n_eval": int(n), "refs_per_class": int(refs), "threads": int(threads)}
res["relprune_eval"] = relprune("eval", "--criterion", "random", "--rates", "0", "--refs-per-class", "1",
                               "--eval-samples", n)
res["relprune_curve"] = relprune("curve", "--criterion", "weight", "--rates", "0:0.95:0.05", "--refs-per-class", "1",
                                "--eval-samples", n)
res["relprune_curve_physical"] = relprune("curve-physical", "--criterion", "weight", "--rates", "0:0.95:0.05",
                                          "--refs-per-class", "1", "--eval-samples", n, "--physical")
res["relprune_attribute"] = relprune("attribute", "--criterion", "lrp-epsilon", "--rates", "0",
                                     "--refs-per-class", refs, "--eval-samples", "1")
t = time.perf_counter()
r = subprocess.run([sys.executable, f"{here}/peak.py", str(out / "torch.peak"), sys.executable,
                    f"{here}/torch_scale.py", "run", model, data, n, refs, "20", str(out / "torch.json")],
                   capture_output=True, text=True)
if r.returncode:
    sys.exit(f"torch side failed:\n{r.stderr[-3000:]}")
res["torch"] = json.loads((out / "torch.json").read_text())
res["torch"]["peak_mib"] = float((out / "torch.peak").read_text())
(out / "result.json").write_text(json.dumps(res, indent=1))
EOF
done
# Decode + preprocess alone, relprune: the decode-once example on the same val folder (no model).
mkdir -p "$work/decode/data" && ln -sfn "$data/val" "$work/decode/data/val"
"$CARGO_TARGET_DIR/release/examples/decode_once" "$work/decode" "$CLASSES" "$VAL" 1 64 > "$work/decode.txt"
# The figures the doc's table came from are kept in git (the images and caches are not).
mkdir -p "$here/results"
suffix=""; [ "$DEVICE" != cpu ] && suffix="-$DEVICE"
for model in $MODELS; do cp "$work/$model/result.json" "$here/results/$model$suffix.json"; done
cp "$work/decode.txt" "$here/results/decode$suffix.txt"
"$RELPRUNE_PYTHON" "$here/summarize.py" "$work" "${DOC:-$root/docs/benchmarks.md}" "$CLASSES" "$TRAIN" "$VAL" "$DEVICE"
