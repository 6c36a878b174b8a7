"""transformers' side of benchmarks/llm: perplexity and next-token accuracy of a Hugging Face
folder on the first N sequences of a text file, cut exactly as relprune cuts them (documents
separated by blank lines, joined by a blank line, tokenised without special tokens, windows of
seq_len tokens), and forward tokens/s.

usage: hf_perplexity.py FOLDER TEXT --seq-len 1024 --sequences 8 --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import transformers


def documents(text: str) -> list[str]:
    """Blocks of non-blank lines, as relprune's corpus reader splits a file."""
    docs, cur = [], []
    for line in text.splitlines():
        if line.strip():
            cur.append(line)
        elif cur:
            docs.append("\n".join(cur))
            cur = []
    if cur:
        docs.append("\n".join(cur))
    return docs


def token_rows(tok: transformers.PreTrainedTokenizerBase, path: str, seq_len: int, rows: int) -> torch.Tensor:
    """The first `rows` windows of `seq_len` tokens of a text file, cut as relprune cuts them."""
    need, ids = seq_len * rows, []
    with open(path, encoding="utf-8") as f:
        for i, d in enumerate(documents(f.read())):
            ids += tok(d if i == 0 else "\n\n" + d, add_special_tokens=False)["input_ids"]
            if len(ids) >= need:
                break
    return torch.tensor(ids[:need]).reshape(rows, seq_len)


def score(model: torch.nn.Module, rows: torch.Tensor) -> dict[str, float]:
    """Token-weighted perplexity, next-token top-1 accuracy and forward seconds, one sequence at a time."""
    nll, hits, count, seconds = 0.0, 0, 0, 0.0
    with torch.no_grad():
        for row in rows:
            t = time.perf_counter()
            out = model(input_ids=row[None], labels=row[None])
            seconds += time.perf_counter() - t
            n = row.numel() - 1
            nll += out.loss.double().item() * n
            hits += (out.logits[0, :-1].argmax(-1) == row[1:]).sum().item()
            count += n
    return {"perplexity": math.exp(nll / count), "accuracy": hits / count, "tokens": count, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("text")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(2)
    tok = transformers.AutoTokenizer.from_pretrained(a.folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(a.folder, trust_remote_code=True, dtype=torch.float32)
    model.eval()
    s = score(model, token_rows(tok, a.text, a.seq_len, a.sequences))
    result = {
        "folder": a.folder,
        "class": type(model).__name__,
        "parameters": sum(t.numel() for t in model.parameters()),
        "perplexity": s["perplexity"],
        "accuracy": s["accuracy"],
        "tokens": s["tokens"],
        "tokens_per_second": a.seq_len * a.sequences / s["seconds"],
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
