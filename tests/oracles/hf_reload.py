"""Oracle: a pruned decoder folder loaded by transformers' from_pretrained (trust_remote_code for
per-layer widths), run on the given ids and mask; greedy generation must work too.

usage: hf_reload.py FOLDER INPUTS.safetensors --out DIR
INPUTS holds ids and mask; DIR/io.safetensors gets logits (float32) and generated (ids).
"""

import argparse
import json
import pathlib

import torch
from safetensors.torch import load_file, save_file

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("inputs")
p.add_argument("--out", required=True)
a = p.parse_args()
torch.set_num_threads(2)
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)

import transformers  # noqa: E402

model = transformers.AutoModelForCausalLM.from_pretrained(a.folder, trust_remote_code=True, dtype=torch.float32)
model.eval()
x = load_file(a.inputs)
with torch.no_grad():
    logits = model(input_ids=x["ids"], attention_mask=x["mask"]).logits
    generated = model.generate(x["ids"][:1, :4], max_new_tokens=5, do_sample=False, pad_token_id=0)
save_file({"logits": logits.float().contiguous(), "generated": generated.contiguous()}, str(out / "io.safetensors"))
(out / "meta.json").write_text(
    json.dumps({"class": type(model).__name__, "params": sum(t.numel() for t in model.parameters())})
)
