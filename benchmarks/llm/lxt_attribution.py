"""LXT 2.1's efficient AttnLRP on SmolLM2 (transformers, eager attention): wall time and peak memory
of the relevance of every MLP neuron and attention head over N sequences of T tokens, one sequence
per backward pass, as benchmarks/llm/attribution.sh times relprune on the same model and shape.

usage: lxt_attribution.py FOLDER TEXT --seq-len T --sequences N --out FILE.json

The relevance explained is the true next token's logit summed over positions (relprune's
initial=logit); per-neuron relevance is input × gradient at each down projection, per-head at
each o projection's input, summed over tokens (what relprune's scores aggregate).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("text")
p.add_argument("--seq-len", type=int, default=1024)
p.add_argument("--sequences", type=int, default=2)
p.add_argument("--out", required=True)
a = p.parse_args()
torch.set_num_threads(2)

import lxt  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from lxt.efficient import monkey_patch  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

monkey_patch(modeling_llama)
model = transformers.LlamaForCausalLM.from_pretrained(a.folder, dtype=torch.float32, attn_implementation="eager")
model.eval()
model.requires_grad_(False)
tok = tokenizers.Tokenizer.from_file(str(pathlib.Path(a.folder) / "tokenizer.json"))
ids = tok.encode(pathlib.Path(a.text).read_text(), add_special_tokens=False).ids
need = a.seq_len * a.sequences
if len(ids) < need:
    raise SystemExit(f"{a.text} has {len(ids)} tokens, fewer than {need}")
seqs = torch.tensor(ids[:need]).view(a.sequences, a.seq_len)

scores: dict[str, torch.Tensor] = {}


def keep(name: str, t: torch.Tensor, heads: int | None) -> None:
    def hook(g: torch.Tensor) -> None:
        r = (t * g).detach()[0]
        r = r.view(r.shape[0], heads, -1).sum(-1) if heads else r
        scores[name] = scores.get(name, 0) + r.sum(0).abs()

    t.register_hook(hook)


heads = model.config.num_attention_heads
for name, mod in model.named_modules():
    if name.endswith("mlp.down_proj"):
        mod.register_forward_pre_hook(lambda mod, i, name=name: keep(name, i[0], None))
    if name.endswith("self_attn.o_proj"):
        mod.register_forward_pre_hook(lambda mod, i, name=name: keep(name, i[0], heads))

start = time.perf_counter()
for s in seqs:
    x = s[None]
    emb = model.get_input_embeddings()(x).detach().requires_grad_(True)
    logits = model(inputs_embeds=emb, use_cache=False).logits
    target = logits[0, :-1].gather(-1, x[0, 1:, None]).sum()
    target.backward()
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = {
    "tool": f"lxt {lxt.__version__ if hasattr(lxt, '__version__') else '2.1'} (efficient), transformers "
    f"{transformers.__version__}, torch {torch.__version__}",
    "sequences": a.sequences,
    "seq_len": a.seq_len,
    "seconds": seconds,
    "tokens_per_second": need / seconds,
    "peak_memory_gb": peak_kb / 1e6,
    "layers_scored": len(scores),
}
pathlib.Path(a.out).write_text(json.dumps(result, indent=2))
print(json.dumps(result))
