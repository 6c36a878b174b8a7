"""Oracle: checks an ONNX file with onnx.checker and runs it in onnxruntime.

usage: onnx_run.py MODEL.onnx INPUTS.safetensors OUTPUT.safetensors [MODEL INPUTS OUTPUT ...]
INPUTS holds the graph inputs by name ("in0", "in1", ... in the model's input order); OUTPUT gets "y".
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file, save_file



def run(model_path, inputs_path, out_path):
    onnx.checker.check_model(onnx.load(model_path), full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    data = load_file(inputs_path)
    feed = {i.name: data[f"in{k}"] for k, i in enumerate(sess.get_inputs())}
    (y,) = sess.run(None, feed)
    save_file({"y": np.ascontiguousarray(y)}, out_path)


args = sys.argv[1:]
for k in range(0, len(args), 3):
    run(*args[k:k + 3])
