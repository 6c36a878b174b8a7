#!/usr/bin/env bash
# Replays the hostile test's fault cases against a relprune binary and prints one line per case
# (class, case, verdict) and the count of well-handled cases per class (crash, wrong, lost, unclear,
# and the hostile-file classes outside, bomb, trace, ssa). Run it against two
# binaries to compare releases:
#   benchmarks/faults/run.sh [BINARY]      (default: the release build of this checkout)
# A case is "ok" when the binary exits non-zero with a clear message (no panic, no libtorch
# backtrace) and leaves files as they should be; otherwise the verdict says what went wrong.
# The full-disk case mounts a tmpfs and needs root (it is skipped otherwise).
# tests/faults.rs asserts the same behaviour (and the cases that need a database server or a
# killed worker) inside the test suite; this script is for before/after counts.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$here/scripts/env.sh"
BIN="${1:-$CARGO_TARGET_DIR/release/relprune}"
PY="$RELPRUNE_PYTHON"
W="$(mktemp -d)"
trap 'umount "$W/fs" 2>/dev/null; rm -rf "$W"' EXIT
TINY="cifar_resnet18:width=4,in=1,size=8,classes=10"
declare -A ok total

crashed() { grep -qE "panicked|RUST_BACKTRACE|Exception raised from|frame #|Internal torch error|one_hot" "$1"; }
verdict() { # class case verdict
  printf '%-16s %-58s %s\n' "$1" "$2" "$3"
  total[$1]=$(( ${total[$1]:-0} + 1 ))
  [ "$3" = ok ] && ok[$1]=$(( ${ok[$1]:-0} + 1 ))
}
# expect_error CLASS CASE WORD CMD...: non-zero exit, no crash, stderr mentions WORD.
expect_error() {
  local class="$1" name="$2" word="$3"; shift 3
  "$@" >"$W/out" 2>"$W/err"; local rc=$?
  if [ $rc -eq 0 ]; then verdict "$class" "$name" "exit 0 (silent)"
  elif [ $rc -gt 128 ] || crashed "$W/err"; then verdict "$class" "$name" "crash (exit $rc)"
  elif ! grep -q -- "$word" "$W/err"; then verdict "$class" "$name" "unclear: $(head -c 90 "$W/err" | tr '\n' ' ')"
  else verdict "$class" "$name" ok; fi
}

# --- data ---------------------------------------------------------------------------------------
"$PY" - "$W" <<'EOF'
import sys, os, struct, numpy as np
from PIL import Image
w = sys.argv[1]
def idx(path, arr):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.astype(np.uint8).tobytes())
rng = np.random.default_rng(0)
fm = os.path.join(w, "fmnist"); os.makedirs(fm)
for prefix, n in [("train", 600), ("t10k", 120)]:
    idx(f"{fm}/{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 8, 8)))
    idx(f"{fm}/{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
big = os.path.join(w, "bigidx"); os.makedirs(big)
for f in os.listdir(fm):
    os.link(f"{fm}/{f}", f"{big}/{f}") if "images" not in f or "t10k" in f else None
with open(f"{big}/train-images-idx3-ubyte", "wb") as f:
    # 4 · 2^31 · 2^31 = 2^64 wraps to 0 in unchecked 64-bit arithmetic: a header with no data.
    f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 4, 2**31, 2**31))
os.remove(f"{big}/train-labels-idx1-ubyte")
idx(f"{big}/train-labels-idx1-ubyte", np.arange(4) % 10)
def folder(root, layout):
    for split, cls, n in layout:
        d = os.path.join(root, split, cls); os.makedirs(d, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (40 * i, 90, 200)).save(f"{d}/{i}.png")
folder(f"{w}/img-missing", [("train", "ant", 2), ("train", "bee", 2), ("train", "cat", 2), ("val", "ant", 2), ("val", "cat", 2)])
folder(f"{w}/img-empty", [("train", "ant", 2), ("train", "cat", 2), ("val", "ant", 2), ("val", "bee", 1), ("val", "cat", 2)])
os.makedirs(f"{w}/img-empty/train/bee")
EOF
# Weights with one NaN, written from the random-init model.
"$PY" - "$W" "$BIN" <<'EOF'
import sys, subprocess, torch
from safetensors.torch import save_file
w, binary = sys.argv[1], sys.argv[2]
# Build the architecture's weights by pruning nothing (rate 0) with relprune itself.
subprocess.run([binary, "--threads", "1", "prune", "--model", "cifar_resnet18:width=4,in=1,size=8,classes=10",
                "--data", "none", "--criterion", "weight", "--rate", "0", "--latency-runs", "1", "--out", f"{w}/rate0"],
               capture_output=True)
from safetensors.torch import load_file
t = load_file(f"{w}/rate0/model/model.safetensors")
t["layer1.0.conv2.weight"][0, 0, 0, 0] = float("nan")
save_file(t, f"{w}/nan.safetensors")
EOF

F="--fmnist-dir $W/fmnist"
# --- crashes --------------------------------------------------------------------------------------
expect_error crash "IDX header 4 x 2^31 x 2^31"            "IDX"         "$BIN" --threads 1 curve --model "$TINY" --fmnist-dir "$W/bigidx" --refs-per-class 1 --out "$W/o1"
# (--latency-runs 0 once crashed; it now means "skip latency", so the range is probed above it.)
expect_error crash "prune --latency-runs 100001"           "range"       "$BIN" --threads 1 prune --model "$TINY" $F --rate 0.3 --latency-runs 100001 --out "$W/o2"
expect_error crash "--threads 100000000"                   "range"       "$BIN" --threads 100000000 info --model "$TINY"
expect_error crash "RELPRUNE_THREADS=999999"               "range"       env RELPRUNE_THREADS=999999 "$BIN" info --model "$TINY"
expect_error crash "--rates 0:0.9:1e-12 (a trillion rates)" "at most"    "$BIN" --threads 1 curve --model "$TINY" $F --rates 0:0.9:1e-12 --out "$W/o3"
expect_error crash "architecture width=1000000"            "width"       "$BIN" --threads 1 info --model "cifar_resnet18:width=1000000,in=1,size=8"
expect_error crash "architecture size=1000000"             "size"        "$BIN" --threads 1 info --model "cifar_resnet18:width=4,in=1,size=1000000"
expect_error crash "--seq-len 4096 on a 16-position BERT"  "seq-len"     "$BIN" --threads 1 info --model "bert:vocab=100,dim=32,layers=1,heads=4,mlp=64,positions=16,max_len=16,classes=3" --seq-len 4096
# --- silently wrong ---------------------------------------------------------------------------------
expect_error wrong "image folder: val lacks a class"       "bee"         "$BIN" --threads 1 curve --model "cifar_resnet18:width=4,in=3,size=224,classes=3" --data "imagefolder:$W/img-missing" --eval-samples 4 --refs-per-class 1 --rates 0 --out "$W/o4"
expect_error wrong "image folder: empty class in train"    "bee"         "$BIN" --threads 1 curve --model "cifar_resnet18:width=4,in=3,size=224,classes=3" --data "imagefolder:$W/img-empty" --eval-samples 4 --refs-per-class 1 --rates 0 --out "$W/o5"
expect_error wrong "NaN weights, random criterion"         "finite"      "$BIN" --threads 1 curve --model "$TINY" --weights "$W/nan.safetensors" $F --criterion random --refs-per-class 2 --eval-samples 40 --rates 0,0.5 --out "$W/o6"
expect_error wrong "NaN weights, weight criterion"         "finite"      "$BIN" --threads 1 curve --model "$TINY" --weights "$W/nan.safetensors" $F --criterion weight --refs-per-class 2 --eval-samples 40 --rates 0,0.5 --out "$W/o7"
expect_error wrong "4-output model on 10-class data"       "classes"     "$BIN" --threads 1 curve --model "cifar_resnet18:width=4,in=1,size=8,classes=4" $F --refs-per-class 2 --eval-samples 40 --rates 0,0.5 --out "$W/o8"
expect_error wrong "--storage sqlite: (empty path)"        "saved"       "$BIN" --threads 1 optimize --model "$TINY" $F --storage "sqlite:" --trials 1 --val-samples 20 --refs-per-class 2 --rates 0,0.5 --report none --out "$W/o9"
expect_error wrong "--storage sqlite::memory:"             "saved"       "$BIN" --threads 1 optimize --model "$TINY" $F --storage "sqlite::memory:" --trials 1 --val-samples 20 --refs-per-class 2 --rates 0,0.5 --report none --out "$W/o10"
# --- lost or damaged output ---------------------------------------------------------------------------
: > "$W/a-file"
expect_error lost "--out is a file (optimize)"             "a-file"      "$BIN" --threads 1 optimize --model "$TINY" $F --storage "sqlite:$W/late.sqlite" --trials 2 --val-samples 20 --refs-per-class 2 --rates 0,0.5 --report none --out "$W/a-file"
if [ -f "$W/late.sqlite" ] && "$PY" -c "import sqlite3,sys; sys.exit(0 if sqlite3.connect(sys.argv[1]).execute('select count(*) from relprune_trials').fetchone()[0] else 1)" "$W/late.sqlite" 2>/dev/null; then
  verdict lost "... checked before any trial ran" "trials ran first"; else verdict lost "... checked before any trial ran" ok; fi
expect_error lost "--report with an unknown criterion"     "no-such"     "$BIN" --threads 1 optimize --model "$TINY" $F --storage "sqlite:$W/late2.sqlite" --trials 2 --val-samples 20 --refs-per-class 2 --rates 0,0.5 --report lrp-epsilon,no-such --out "$W/o11"
if [ -f "$W/late2.sqlite" ]; then verdict lost "... checked before any trial ran" "trials ran first"; else verdict lost "... checked before any trial ran" ok; fi
expect_error lost "study show on a missing path"           "study"       "$BIN" study show --storage "sqlite:$W/missing/s.sqlite" --study x
if [ -e "$W/missing" ]; then verdict lost "... creates nothing" "created $W/missing"; else verdict lost "... creates nothing" ok; fi
# A damaged study file: nothing may be written to it.
"$BIN" --threads 1 optimize --model "$TINY" $F --storage "sqlite:$W/dmg.sqlite" --study s --trials 2 --val-samples 20 --refs-per-class 2 --rates 0,0.5 --report none --out "$W/o12" >/dev/null 2>&1
"$PY" - "$W/dmg.sqlite" <<'EOF'
import sqlite3, sys
p = sys.argv[1]
c = sqlite3.connect(p)
root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_relprune_studies_1'").fetchone()[0]
c.execute("PRAGMA journal_mode=DELETE"); c.close()
b = bytearray(open(p, "rb").read()); page = int.from_bytes(b[16:18], "big")
# Empty the unique index on study names: the table still holds the study, the index no longer does.
off = (root - 1) * page
b[off + 3:off + 5] = bytes(2)
open(p, "wb").write(b)
EOF
rm -f "$W/dmg.sqlite-wal" "$W/dmg.sqlite-shm"; sum_before="$(sha256sum < "$W/dmg.sqlite")"
expect_error lost "damaged study file (empty name index)"  "damaged"      "$BIN" --threads 1 optimize --model "$TINY" $F --storage "sqlite:$W/dmg.sqlite" --study s --trials 3 --val-samples 20 --refs-per-class 2 --rates 0,0.5 --report none --out "$W/o13"
if [ "$(sha256sum < "$W/dmg.sqlite")" = "$sum_before" ]; then verdict lost "... left byte-identical" ok; else verdict lost "... left byte-identical" "written to"; fi
# A full disk: the run fails and the previous outputs stay as they were.
mkdir -p "$W/fs"
if mount -t tmpfs -o size=3m relprune-faults "$W/fs" 2>/dev/null; then
  prune() { "$BIN" --threads 1 prune --model "$TINY" $F --criterion "$1" --rate 0.2 --refs-per-class 2 --eval-samples 40 --latency-runs 1 --out "$W/fs/out"; }
  prune weight >/dev/null 2>&1
  before="$(cd "$W/fs/out" && find . -type f | sort | xargs sha256sum)"
  # Room for the new model's weights but not for its ONNX file as well.
  room=$(( $(stat -c %s "$W/fs/out/model/model.safetensors") + 40000 ))
  avail=$(df --output=avail -B1 "$W/fs" | tail -1); head -c $(( avail - room )) /dev/zero > "$W/fs/filler" 2>/dev/null
  expect_error lost "prune onto a full disk"               "No space left" prune random
  after="$(cd "$W/fs/out" && find . -type f | sort | xargs sha256sum)"
  if [ "$before" = "$after" ]; then verdict lost "... previous outputs untouched" ok; else verdict lost "... previous outputs untouched" "outputs changed or mixed"; fi
else
  echo "SKIPPED full-disk cases (need root to mount a tmpfs)"
fi
# --- hostile files (outside the folder, bombs, libtorch traces, non-SSA graphs) ----------------
"$PY" - "$W" <<'EOF'
import io, os, sys, zipfile
import numpy as np, onnx, torch
w = sys.argv[1]
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 4))
torch.onnx.export(net.eval(), (torch.randn(1, 3, 8, 8),), f"{w}/base.onnx", dynamo=False, input_names=["x"])
def ext(name):  # the model with its weights in w.bin beside it
    d = f"{w}/{name}"; os.makedirs(d)
    m = onnx.load(f"{w}/base.onnx")
    onnx.save_model(m, f"{d}/m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    return d
open(f"{w}/outside.bin", "wb").write(open(f"{ext('ext-ok')}/w.bin", "rb").read())
d = ext("ext-link"); os.remove(f"{d}/w.bin"); os.symlink(f"{w}/outside.bin", f"{d}/w.bin")
d = ext("ext-zero"); os.remove(f"{d}/w.bin"); os.symlink("/dev/zero", f"{d}/w.bin")
d = ext("ext-fifo"); os.remove(f"{d}/w.bin"); os.mkfifo(f"{d}/w.bin")
d = ext("ext-dir"); os.makedirs(f"{w}/outdir"); os.rename(f"{d}/w.bin", f"{w}/outdir/w.bin")
os.symlink(f"{w}/outdir", f"{d}/sub"); m = onnx.load(f"{d}/m.onnx", load_external_data=False)
for t in m.graph.initializer:
    for e in t.external_data:
        if e.key == "location": e.value = "sub/w.bin"
onnx.save(m, f"{d}/m.onnx")
m = onnx.load(f"{w}/base.onnx"); dims = m.graph.input[0].type.tensor_type.shape.dim
dims[2].dim_value = 60000; dims[3].dim_value = 60000; onnx.save(m, f"{w}/huge-input.onnx")
m = onnx.load(f"{w}/base.onnx")
conv = next(n for n in m.graph.node if n.op_type == "Conv")
for a in list(conv.attribute):
    if a.name == "group": conv.attribute.remove(a)
conv.attribute.append(onnx.helper.make_attribute("group", 2)); onnx.save(m, f"{w}/bad-group.onnx")
m = onnx.load(f"{w}/base.onnx"); m.graph.node[1].output[0] = m.graph.node[0].output[0]; onnx.save(m, f"{w}/non-ssa.onnx")
# Tensor datasets: a deflate bomb, a label of 2^31, a classes.txt of a million lines.
def npy(a, extra=b""):
    b = io.BytesIO(); np.save(b, a); return b.getvalue() + extra
x, y = np.zeros((20, 1, 8, 8), np.float32), np.arange(20) % 10
for name in ["bomb", "label", "classes"]:
    os.makedirs(f"{w}/t-{name}")
    np.savez(f"{w}/t-{name}/val.npz", x=x, y=y)
with zipfile.ZipFile(f"{w}/t-bomb/train.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr("x.npy", npy(x, b"\0" * (512 << 20))); z.writestr("y.npy", npy(y))
np.savez(f"{w}/t-label/train.npz", x=x, y=np.where(y == 9, 2**31, y))
np.savez(f"{w}/t-classes/train.npz", x=x, y=y)
open(f"{w}/t-classes/classes.txt", "w").write("".join(f"c{i}\n" for i in range(10**6)))
EOF
if "$BIN" --threads 1 info --model "$W/ext-ok/m.onnx" >/dev/null 2>&1; then verdict outside "external data: a regular file inside imports" ok
else verdict outside "external data: a regular file inside imports" "refused"; fi
expect_error outside "external data: symlink to a file outside"  "outside"      "$BIN" --threads 1 info --model "$W/ext-link/m.onnx"
expect_error outside "external data: symlink to /dev/zero"       "outside"      timeout 20 "$BIN" --threads 1 info --model "$W/ext-zero/m.onnx"
expect_error outside "external data: a FIFO"                     "regular file" timeout 20 "$BIN" --threads 1 info --model "$W/ext-fifo/m.onnx"
expect_error outside "external data: a symlinked subfolder"      "outside"      "$BIN" --threads 1 info --model "$W/ext-dir/m.onnx"
expect_error bomb "ONNX input declared 3x60000x60000"            "limit"        timeout 60 "$BIN" --threads 1 info --model "$W/huge-input.onnx"
expect_error bomb ".npz member inflating to 512 MiB"             "bytes"        timeout 60 "$BIN" --threads 1 curve --model "$TINY" --data "tensors:$W/t-bomb" --refs-per-class 1 --out "$W/o20"
expect_error bomb "a label of 2^31 without classes.txt"          "limit"        timeout 60 "$BIN" --threads 1 curve --model "$TINY" --data "tensors:$W/t-label" --refs-per-class 1 --out "$W/o21"
expect_error bomb "classes.txt of 10^6 lines (linear, then named)" "1000000 classes"      timeout 60 "$BIN" --threads 1 curve --model "$TINY" --data "tensors:$W/t-classes" --refs-per-class 1 --out "$W/o22"
# Size fields: sparse files, a gzip bomb, an external tensor of 24 GiB, configs declaring billions of values.
"$PY" - "$W" <<'EOF'
import gzip, json, os, shutil, struct, sys
import onnx, torch, transformers
w = sys.argv[1]
def sparse(path, size=64 << 30):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f: f.truncate(size)
sparse(f"{w}/sparse-onnx/m.onnx"); sparse(f"{w}/sparse-graph/graph.json"); sparse(f"{w}/sparse.safetensors")
sparse(f"{w}/sparse-rules.yaml")
m = onnx.load(f"{w}/base.onnx"); t = next(t for t in m.graph.initializer if len(t.dims) == 4)
os.makedirs(f"{w}/ext-big"); t.ClearField("raw_data"); del t.dims[:]; t.dims.extend([8, 3, 1 << 28, 1])
t.data_location = onnx.TensorProto.EXTERNAL; del t.external_data[:]
for k, v in [("location", "w.bin"), ("offset", "0"), ("length", str(8 * 3 * (1 << 28) * 4))]:
    e = t.external_data.add(); e.key, e.value = k, v
open(f"{w}/ext-big/m.onnx", "wb").write(m.SerializeToString()); sparse(f"{w}/ext-big/w.bin", 8 * 3 * (1 << 28) * 4)
shutil.copytree(f"{w}/fmnist", f"{w}/idx-bomb"); os.remove(f"{w}/idx-bomb/train-images-idx3-ubyte")
with gzip.open(f"{w}/idx-bomb/train-images-idx3-ubyte.gz", "wb", compresslevel=9) as f:
    f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 600, 8, 8) + bytes(600 * 64))
    for _ in range(256): f.write(bytes(1 << 24))  # 4 GiB past the declared data
torch.manual_seed(0)
cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)
transformers.LlamaForCausalLM(cfg).save_pretrained(f"{w}/llama")
bert = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=48, max_position_embeddings=32)
transformers.BertModel(bert).save_pretrained(f"{w}/bert")
sparse(f"{w}/sparse-hf/config.json"); shutil.copy(f"{w}/llama/model.safetensors", f"{w}/sparse-hf/")
for name, base, field, value in [("hf-inter", "llama", "intermediate_size", 1 << 24),
                                 ("hf-layers", "llama", "num_hidden_layers", 1 << 24),
                                 ("bert-heads", "bert", "num_attention_heads", 0)]:
    shutil.copytree(f"{w}/{base}", f"{w}/{name}")
    c = json.load(open(f"{w}/{name}/config.json")); c[field] = value
    json.dump(c, open(f"{w}/{name}/config.json", "w"))
EOF
# A process capped at 8 GiB of address space: an allocation of what a file declares fails there.
capped() { bash -c 'ulimit -v 8388608; exec "$@"' _ "$@"; }
expect_error bomb "sparse 64 GiB .onnx file"                   "GiB"         capped timeout 60 "$BIN" --threads 1 info --model "$W/sparse-onnx/m.onnx"
expect_error bomb "sparse 64 GiB graph.json"                   "GiB"         capped timeout 60 "$BIN" --threads 1 info --model "$W/sparse-graph"
expect_error bomb "sparse 64 GiB config.json"                  "GiB"         capped timeout 60 "$BIN" --threads 1 info --model "hf:$W/sparse-hf"
expect_error bomb "sparse 64 GiB --weights"                    "GiB"         capped timeout 60 "$BIN" --threads 1 info --model "$TINY" --weights "$W/sparse.safetensors"
expect_error bomb "sparse 64 GiB rules file"                   "GiB"         capped timeout 60 "$BIN" --threads 1 prune --model "$TINY" --data none --criterion "file:$W/sparse-rules.yaml" --rate 0.1 --out "$W/o30"
expect_error bomb "ONNX external tensor of 24 GiB (sparse)"    "GiB"         capped timeout 60 "$BIN" --threads 1 info --model "$W/ext-big/m.onnx"
expect_error bomb "gzip IDX inflating 4 GiB past its header"   "inflates"    capped timeout 120 "$BIN" --threads 1 curve --model "$TINY" --fmnist-dir "$W/idx-bomb" --refs-per-class 1 --out "$W/o31"
expect_error bomb "config.json intermediate_size 2^24"         "declares"    capped timeout 60 "$BIN" --threads 1 info --model "hf:$W/hf-inter"
expect_error bomb "config.json num_hidden_layers 2^24"         "4096"        capped timeout 60 "$BIN" --threads 1 info --model "hf:$W/hf-layers"
expect_error crash "BERT config.json num_attention_heads 0"    "num_attention_heads" timeout 60 "$BIN" --threads 1 info --model "hf:$W/bert-heads"
expect_error trace "Conv group not dividing the channels"        "groups"       "$BIN" --threads 1 info --model "$W/bad-group.onnx"
expect_error ssa "two nodes writing one value"                   "defines"      "$BIN" --threads 1 info --model "$W/non-ssa.onnx"
# --- unclear errors ------------------------------------------------------------------------------------
expect_error unclear "--seq-len 0"                         "range"       "$BIN" --threads 1 prune --model "$TINY" --data none --criterion weight --rate 0.1 --seq-len 0 --out "$W/o14"

echo
echo "class            well handled"
for c in crash wrong lost unclear outside bomb trace ssa; do printf '%-16s %s of %s\n' "$c" "${ok[$c]:-0}" "${total[$c]:-0}"; done
