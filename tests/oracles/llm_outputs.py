"""Oracle: decoder language model logits from Hugging Face transformers.

--family llama|qwen2|mistral   a tiny random config of the family, saved with save_pretrained
                               (config.json, model.safetensors) plus a small word-level
                               tokenizer.json, into OUT/hf; then random token ids with a
                               right-padded attention mask, and transformers' logits.
--folder DIR                   instead, a real model folder (e.g. SmolLM2): ids of a few sentences
                               from its own tokenizer, and the logits.
Writes OUT/io.safetensors: ids, mask, logits (float32), loss (mean next-token NLL over real tokens).
"""

import argparse
import json
import pathlib

import torch
from safetensors.torch import save_file

p = argparse.ArgumentParser()
p.add_argument("--family")
p.add_argument("--folder")
p.add_argument("--tied", action="store_true")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", required=True)
a = p.parse_args()
torch.manual_seed(a.seed)
torch.set_num_threads(2)
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)

import transformers  # noqa: E402


def tiny(family: str, tied: bool) -> transformers.PreTrainedModel:
    """A small model whose every tensor is random (norm weights and biases too)."""
    common = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        attn_implementation="eager",
    )
    if family == "llama":
        cfg = transformers.LlamaConfig(
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, rope_theta=100000.0, **common
        )
        model = transformers.LlamaForCausalLM(cfg)
    elif family == "qwen2":
        cfg = transformers.Qwen2Config(num_attention_heads=4, num_key_value_heads=1, rope_theta=10000.0, **common)
        model = transformers.Qwen2ForCausalLM(cfg)
    elif family == "mistral":
        cfg = transformers.MistralConfig(
            num_attention_heads=4, num_key_value_heads=4, head_dim=8, sliding_window=None, **common
        )
        model = transformers.MistralForCausalLM(cfg)
    else:
        raise SystemExit(f"unknown family {family}")
    with torch.no_grad():
        for name, t in model.named_parameters():
            if t.dim() == 1 and name.endswith("norm.weight"):
                t.uniform_(0.5, 1.5)
            elif t.dim() == 1:
                t.normal_(0, 0.1)
            else:
                t.normal_(0, 0.2)
    return model.eval()


def word_tokenizer(folder: pathlib.Path, vocab: int) -> None:
    """A word-level tokenizer.json with `vocab` entries (w0 … w{vocab-1})."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))


if a.family:
    model = tiny(a.family, a.tied)
    hf = out / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    word_tokenizer(hf, model.config.vocab_size)
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
else:
    folder = pathlib.Path(a.folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "right"
    texts = [
        "The capital of France is Paris, a city on the Seine.",
        "Photosynthesis turns light into chemical energy.",
    ]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]

with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=mask).logits
labels = ids.masked_fill(mask == 0, -100)
loss = torch.nn.functional.cross_entropy(
    logits[:, :-1].reshape(-1, logits.shape[-1]).double(), labels[:, 1:].reshape(-1), ignore_index=-100
)
save_file(
    {"ids": ids.contiguous(), "mask": mask.contiguous(), "logits": logits.float().contiguous(), "loss": loss.reshape(1)},
    str(out / "io.safetensors"),
)
(out / "meta.json").write_text(json.dumps({"params": sum(p.numel() for p in model.parameters())}))
