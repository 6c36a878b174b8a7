"""Torch-Pruning's side of benchmarks/llm/peers.sh: prune a Hugging Face LlamaForCausalLM folder
with Torch-Pruning's MetaPruner the way its LLM example (examples/LLMs/prune_llm.py) does, to a
fraction of the non-embedding parameters, and measure perplexity and next-token accuracy on the
same tokens as relprune (cut by hf_perplexity.py's rule).

The example's configuration: one uniform ratio per layer (`global_pruning=False`), `round_to=4`,
the LM head ignored, MLP channels pruned. Its GQA head pruning fails on this model (see `prune`),
so attention heads stay whole. `--scope` chooses the rest: `example` also prunes the hidden size
(the residual stream, as the example does), `inner` keeps it (MLP channels only, the components
relprune's `--component neurons` prunes).

The pruning ratio is bisected so that the model keeps at most `--keep` of its non-embedding
parameters (the count does not depend on the importance: the ratio is uniform per layer).

`--verify` (scope `inner`) also scores the dense model with the same MLP channels zeroed: equal
perplexity shows Torch-Pruning's surgery is exact, so its rows measure its criterion.

usage: tp_llm.py FOLDER TEST_TEXT CALIB_TEXT --keep 0.8 --importance magnitude|taylor [--verify]
       --scope example|inner [--ratio R] --seq-len 512 --sequences 8 --calib-sequences 4 --out RESULT.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import json
import time
from collections.abc import Iterator

import torch
import torch_pruning as tp
import transformers
import transformers.models.llama.modeling_llama as llama
from hf_perplexity import score, token_rows


def non_embedding(model: torch.nn.Module) -> int:
    """Parameters outside the token embedding and the LM head (tied in SmolLM2; pruning the
    hidden size unties them, and the copy is not counted either)."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


@contextlib.contextmanager
def rotary_off() -> Iterator[None]:
    """Skip the rotary embedding while Torch-Pruning traces the model.

    With transformers 4.57's LlamaAttention, Torch-Pruning 1.6.1's dependency graph never finishes:
    the slices and concatenation of `rotate_half` make `_fix_dependency_graph_non_recursive` loop
    (its issue #527 reports the same hang on Qwen3). Rotary acts within each head's dimensions,
    which are not pruned here (`prune_head_dims=False`), so the graph without it has the same
    groups; the pruned model keeps its rotary embedding (only the trace skips it).
    """
    real = llama.apply_rotary_pos_emb
    llama.apply_rotary_pos_emb = lambda q, k, *_a, **_k: (q, k)
    try:
        yield
    finally:
        llama.apply_rotary_pos_emb = real


def prune(model: torch.nn.Module, ratio: float, importance: tp.importance.Importance, scope: str) -> None:
    """Torch-Pruning's MetaPruner at one uniform ratio, then the example's config updates.

    Attention stays whole: the example's GQA head pruning (`num_heads`, `prune_num_heads`) fails
    on SmolLM2's 9 query heads over 3 key/value heads (`shape '[9, -1]' is invalid for input of
    size 192` in `BasePruner._prune`, Torch-Pruning's issue #516), so q/k/v's output channels are
    ignored; o_proj's outputs belong to the hidden size and follow the scope.
    """
    ignored: list[torch.nn.Module] = [model.lm_head]
    for name, m in model.named_modules():
        if name.endswith(("q_proj", "k_proj", "v_proj")):
            ignored.append(m)
        # `inner` keeps the residual stream: its group holds the embedding and every projection
        # writing into it, so ignoring them leaves its width whole.
        if scope == "inner" and name.endswith(("o_proj", "down_proj", "embed_tokens")):
            ignored.append(m)
    example = torch.zeros(1, 8, dtype=torch.long)
    with rotary_off():
        pruner = tp.pruner.MetaPruner(
            model,
            example_inputs=example,
            importance=importance,
            global_pruning=False,
            output_transform=lambda x: x.logits,
            pruning_ratio=ratio,
            ignored_layers=ignored,
            round_to=4,
        )
    for g in pruner.step(interactive=True):
        g.prune()
    # The example's updates of the config's sizes (attention's heads are unchanged).
    model.config.hidden_size = model.lm_head.in_features
    for name, m in model.named_modules():
        if name.endswith("mlp"):
            model.config.intermediate_size = m.gate_proj.out_features
    del pruner


def masked_like(base: torch.nn.Module, pruned: torch.nn.Module) -> torch.nn.Module:
    """A copy of the dense model with the MLP channels the pruned one lacks zeroed (`inner` scope):
    the same function if Torch-Pruning removed exactly the channels it dropped, and nothing else."""
    masked = copy.deepcopy(base)
    with torch.no_grad():
        for dense, small in zip(masked.model.layers, pruned.model.layers):
            rows = {r.numpy().tobytes(): i for i, r in enumerate(dense.mlp.gate_proj.weight)}
            kept = {rows[r.numpy().tobytes()] for r in small.mlp.gate_proj.weight}
            drop = [i for i in range(len(rows)) if i not in kept]
            dense.mlp.gate_proj.weight[drop] = 0
            dense.mlp.up_proj.weight[drop] = 0
            dense.mlp.down_proj.weight[:, drop] = 0
    return masked


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("test")
    p.add_argument("calib")
    p.add_argument("--keep", type=float, required=True, help="fraction of non-embedding parameters kept")
    p.add_argument("--importance", choices=["magnitude", "taylor"], default="magnitude")
    p.add_argument("--scope", choices=["example", "inner"], default="example")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--calib-sequences", type=int, default=4, help="calibration sequences (Taylor's gradients)")
    p.add_argument("--ratio", type=float, help="the uniform ratio (skips the bisection; it prints the ratio found)")
    p.add_argument("--save", help="write the pruned folder here")
    p.add_argument("--verify", action="store_true", help="`inner`: also score the dense model masked alike")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(a.folder)
    base = transformers.AutoModelForCausalLM.from_pretrained(a.folder, dtype=torch.float32)
    base.eval()
    dense = non_embedding(base)
    goal = a.keep * dense

    # Bisect the uniform ratio on the parameter count (magnitude: the count ignores importance).
    ratio, t = a.ratio, time.perf_counter()
    if ratio is None:
        lo, hi = 0.0, 0.95
        for _ in range(8):
            mid = (lo + hi) / 2
            m = copy.deepcopy(base)
            prune(m, mid, tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean"), a.scope)
            lo, hi = (lo, mid) if non_embedding(m) <= goal else (mid, hi)
            del m
        ratio = hi
        print(f"ratio {ratio} ({time.perf_counter() - t:.0f} s)", flush=True)

    model = copy.deepcopy(base)
    t = time.perf_counter()
    if a.importance == "taylor":
        imp = tp.importance.GroupTaylorImportance()
        model.zero_grad()
        for row in token_rows(tok, a.calib, a.seq_len, a.calib_sequences):
            model(input_ids=row[None], labels=row[None]).loss.backward()
    else:
        imp = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean")
    prune(model, ratio, imp, a.scope)
    model.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t
    model.eval()
    test = score(model, token_rows(tok, a.test, a.seq_len, a.sequences))
    result = {
        "method": f"torch-pruning {a.importance} ({a.scope})",
        "keep_goal": a.keep,
        "ratio": ratio,
        "torch_pruning_version": importlib.metadata.version("torch-pruning"),
        "non_embedding": non_embedding(model),
        "non_embedding_dense": dense,
        "keep": non_embedding(model) / dense,
        "parameters": sum(p.numel() for p in model.parameters()),
        "hidden_size": model.config.hidden_size,
        "intermediate_size": model.config.intermediate_size,
        "prune_seconds": seconds,
        **{k: test[k] for k in ("perplexity", "accuracy", "tokens")},
        "transformers": transformers.__version__,
    }
    if a.verify:
        if a.scope != "inner":
            raise SystemExit("--verify compares MLP channels only: use it with --scope inner")
        result["masked_perplexity"] = score(masked_like(base, model), token_rows(tok, a.test, a.seq_len, a.sequences))[
            "perplexity"
        ]
    if a.save:
        model.save_pretrained(a.save)
        tok.save_pretrained(a.save)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
