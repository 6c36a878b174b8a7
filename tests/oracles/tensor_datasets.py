"""Oracle: tensor datasets (`--data tensors:DIR`) written by numpy and safetensors.

Writes OUT/<case>/ folders. Sample n of a split has x[n, c, h, w] = value(n, c, h, w) / d
(d per file, see below) and label y[n] = n % 3, with value = ((7n + 5c + 3h + w) % 17 - 8) / 4
(exact in float16). Valid cases:
- npz: train.npz (np.savez; x float32, y int64, d = 1), val.npz (np.savez_compressed; x float64
  in Fortran order, d = 3; y uint8), test.npz (x big-endian float32, d = 1; y big-endian int64),
  classes.txt (cat, dog, bird);
- safetensors: train.safetensors (x float16, d = 1; y int32), val.safetensors (x float32, d = 1;
  y int64), no test, no classes.txt.
Every other case has one defect (see the names) in otherwise valid npz files.
"""
import argparse
import pathlib

import numpy as np
from safetensors.numpy import save_file

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
a = p.parse_args()
out = pathlib.Path(a.out)

C, H, W = 2, 3, 4


def x_of(n, d=1.0, dtype=np.float32, shape=(C, H, W)):
    idx = np.indices((n,) + shape, dtype=np.int64)
    v = ((7 * idx[0] + 5 * idx[1] + 3 * idx[2] + (idx[3] if len(shape) == 3 else 0)) % 17 - 8) / 4.0
    return (v / d).astype(dtype)


def y_of(n, dtype=np.int64):
    return (np.arange(n) % 3).astype(dtype)


def case(name):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def valid_pair(d, n_train=6, n_val=4):
    np.savez(d / "train.npz", x=x_of(n_train), y=y_of(n_train))
    np.savez(d / "val.npz", x=x_of(n_val), y=y_of(n_val))


d = case("npz")
np.savez(d / "train.npz", x=x_of(6), y=y_of(6))
np.savez_compressed(d / "val.npz", x=np.asfortranarray(x_of(4, 3.0, np.float64)), y=y_of(4, np.uint8))
np.savez(d / "test.npz", x=x_of(5).astype(">f4"), y=y_of(5).astype(">i8"))
(d / "classes.txt").write_text("cat\ndog\nbird\n")

d = case("safetensors")
save_file({"x": x_of(6, dtype=np.float16), "y": y_of(6, np.int32)}, str(d / "train.safetensors"))
save_file({"x": x_of(4), "y": y_of(4)}, str(d / "val.safetensors"))

d = case("no_y")
valid_pair(d)
np.savez(d / "train.npz", x=x_of(6))

d = case("n_mismatch")
valid_pair(d)
np.savez(d / "train.npz", x=x_of(6), y=y_of(5))

d = case("x_rank")
valid_pair(d)
np.savez(d / "train.npz", x=x_of(6).reshape(6, -1), y=y_of(6))

d = case("y_rank")
valid_pair(d)
np.savez(d / "val.npz", x=x_of(4), y=y_of(4).reshape(4, 1))

d = case("label_range")
valid_pair(d)
(d / "classes.txt").write_text("cat\ndog\n")

d = case("negative")
valid_pair(d)
y = y_of(6)
y[1] = -1
np.savez(d / "train.npz", x=x_of(6), y=y)

d = case("nan")
valid_pair(d)
x = x_of(4)
x[3, 1, 2, 0] = np.nan
np.savez(d / "val.npz", x=x, y=y_of(4))

d = case("inf64")
valid_pair(d)
x = x_of(4, dtype=np.float64)
x[2, 0, 0, 0] = 1e300
np.savez(d / "val.npz", x=x, y=y_of(4))

d = case("empty")
valid_pair(d)
np.savez(d / "val.npz", x=x_of(0), y=y_of(0))

d = case("uint8")
valid_pair(d)
np.savez(d / "train.npz", x=np.zeros((6, C, H, W), np.uint8), y=y_of(6))

d = case("float_y")
valid_pair(d)
np.savez(d / "train.npz", x=x_of(6), y=y_of(6, np.float32))

d = case("shape_mismatch")
valid_pair(d)
np.savez(d / "val.npz", x=x_of(4, shape=(C, H, W + 1)), y=y_of(4))

d = case("no_val")
np.savez(d / "train.npz", x=x_of(6), y=y_of(6))

d = case("both")
valid_pair(d)
save_file({"x": x_of(6), "y": y_of(6)}, str(d / "train.safetensors"))

d = case("st_no_x")
save_file({"input": x_of(6), "y": y_of(6)}, str(d / "train.safetensors"))
np.savez(d / "val.npz", x=x_of(4), y=y_of(4))

d = case("npy_only")
np.save(d / "train.npy", x_of(6))
np.savez(d / "val.npz", x=x_of(4), y=y_of(4))

d = case("classes_blank")
valid_pair(d)
(d / "classes.txt").write_text("cat\n\ndog\n")

d = case("one_class")
np.savez(d / "train.npz", x=x_of(6), y=np.zeros(6, np.int64))
np.savez(d / "val.npz", x=x_of(4), y=np.zeros(4, np.int64))

# Token ids for token models: x (N, T) integers, an optional right-padded mask.
d = case("tokens")
ids = (np.arange(6 * 5).reshape(6, 5) + 3).astype(np.int64)
mask = np.ones((6, 5), np.int64)
mask[1, 3:] = 0
mask[4, 1:] = 0
np.savez(d / "train.npz", x=ids * mask, mask=mask, y=y_of(6))
np.savez(d / "val.npz", x=(np.arange(4 * 5).reshape(4, 5) + 3).astype(np.int32), y=y_of(4))

d = case("mask_gap")
np.savez(d / "train.npz", x=ids, mask=np.array([[1, 0, 1, 1, 1]] * 6, np.int64), y=y_of(6))
np.savez(d / "val.npz", x=ids[:4], y=y_of(4))

d = case("mask_on_images")
valid_pair(d)
np.savez(d / "train.npz", x=x_of(6), mask=np.ones((6, 5), np.int64), y=y_of(6))

d = case("token_and_image_splits")
np.savez(d / "train.npz", x=ids, y=y_of(6))
np.savez(d / "val.npz", x=x_of(4), y=y_of(4))

# Sizes from the file are checked before work: a label of 2^31 without classes.txt, and a
# classes.txt of more lines than the class limit (2^20).
d = case("huge_label")
valid_pair(d)
np.savez(d / "train.npz", x=x_of(6), y=np.array([0, 1, 2, 0, 1, 2**31], np.int64))

d = case("classes_many")
valid_pair(d)
(d / "classes.txt").write_text("".join(f"c{i}\n" for i in range(2**20 + 2)))

# Decompression bombs: a member that inflates far past what its header declares (only the
# declared bytes are inflated), and a header that declares more than any array may hold.
import io  # noqa: E402
import zipfile  # noqa: E402


def npy_bytes(arr, extra=b""):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue() + extra


def bomb(d, x_member):
    with zipfile.ZipFile(d / "train.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", x_member)
        z.writestr("y.npy", npy_bytes(y_of(6)))
    np.savez(d / "val.npz", x=x_of(4), y=y_of(4))


bomb(case("npz_bomb"), npy_bytes(x_of(6), b"\0" * (256 << 20)))
huge = npy_bytes(x_of(6)).replace(b"(6, 2, 3, 4)", b"(1099511627776, 2, 3, 4)")
bomb(case("npz_huge_header"), huge)

d = case("max_label")
valid_pair(d)
np.savez(d / "train.npz", x=x_of(6), y=np.array([0, 1, 2, 0, 1, 2**63 - 1], np.int64))
