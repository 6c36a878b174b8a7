"""Oracle: per-head and per-neuron relevances from LXT 2.1 (efficient mode, Gradient x Input)
on identical weights and inputs. Runs in its own process (LXT patches classes globally).

--kind vit   torchvision VisionTransformer (small, random weights). LXT's primitives are applied:
             LayerNorm with detached std (lxt.efficient.patches.layer_norm_forward), GELU by the
             identity rule (non_linear_forward), and multi-head attention computed explicitly with
             lxt.efficient.rules: CP-LRP (stop_gradient on q, k, as LXT's vit_torch.cp_LRP) or
             AttnLRP (divide_gradient on q·kᵀ and A·V, as LXT's BERT patch). Linear layers (the
             packed in-projection made an nn.Linear) get zennit rules from --rules through
             lxt.efficient.monkey_patch_zennit.
--kind bert  HF BertForSequenceClassification (small, random weights), patched by
             lxt.efficient.monkey_patch(modeling_bert) (AttnLRP); Linear layers keep the
             gradient (LRP-0). Saved as a HF folder OUT/hf.
--kind llama|qwen2
             a tiny random HF decoder built as tests/oracles/llm_outputs.py's tiny() (4 heads;
             --kv-heads, default 2 for llama, 1 for qwen2; eager attention), saved as OUT/hf, patched
             by lxt.efficient.monkey_patch(modeling_llama / modeling_qwen2) (AttnLRP). With --double,
             transformers' float32 RMSNorm, RoPE angles and softmax are replaced by float64 copies
             (--hf-fp32 keeps them). Random ids (2, 10), mask of ones; the initial relevance is the
             logit of the true next token (--target predicted: the predicted one) at every position
             but the last; labels (B, T) hold the true
             targets, -100 at the last position. Also writes X.model.layers.{i}.mlp.down_proj.input
             (B, T, units), X.embeddings (B, T, hidden) and X.logits_target (B,), the total initial
             relevance, unsummed, for diagnosis.

Initial relevance: LXT's convention, the true-class logit. Writes OUT/io.safetensors with the
inputs, labels, H.<attention node> (B, heads) summed over tokens and head dims, and
N.<linear node> (B, units) summed over tokens.
"""
import argparse
import json
import pathlib

import torch
from safetensors.torch import save_file

p = argparse.ArgumentParser()
p.add_argument("--kind", required=True)
p.add_argument("--softmax", default="attn_lrp")
p.add_argument("--rules", default="{}")
p.add_argument("--double", action="store_true")
p.add_argument("--stabilizer", type=float, default=1e-6, help="stabiliser of the z+, gamma and alpha-beta rules")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--target", choices=["true", "predicted"], default="true",
               help="llama/qwen2: explain the true next token's logit, or the predicted token's")
p.add_argument("--kv-heads", type=int, help="llama/qwen2: key-value heads (default 2 for llama, 1 for qwen2)")
p.add_argument("--hf-fp32", action="store_true", help="llama/qwen2 with --double: keep transformers' float32 RMSNorm, RoPE and softmax")
p.add_argument("--folder", help="llama: a real model folder instead of the tiny random one (float32)")
p.add_argument("--out", required=True)
a = p.parse_args()
torch.manual_seed(a.seed)
torch.set_num_threads(2)
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)
captured = {}


def capture(name, t, heads=None):
    def hook(g):
        r = (t * g).detach()
        if heads is None:
            captured[f"N.{name}"] = r.sum(1) if r.dim() == 3 else r
        else:
            b, n, d = r.shape
            captured[f"H.{name}"] = r.reshape(b, n, heads, d // heads).sum((1, 3))
    t.register_hook(hook)


def perturb(model):
    with torch.no_grad():
        for name, t in model.named_parameters():
            if t.dim() == 1 and ("LayerNorm.weight" in name or name.endswith("ln_1.weight") or name.endswith("ln_2.weight")
                                 or name.endswith("ln.weight")):
                t.uniform_(0.5, 1.5)
            elif t.dim() == 1:
                t.normal_(0, 0.1)
            elif "class_token" in name or "head" in name or "classifier" in name:
                t.normal_(0, 0.2)


if a.kind == "vit":
    import torch.nn.functional as F
    from torchvision.models import vision_transformer as tv
    from lxt.efficient import monkey_patch_zennit
    from lxt.efficient.patches import layer_norm_forward, non_linear_forward, patch_method
    from lxt.efficient.rules import divide_gradient, stop_gradient
    from zennit.composites import NameMapComposite
    from zennit.rules import AlphaBeta, Epsilon, Gamma, ZPlus

    monkey_patch_zennit()
    patch_method(layer_norm_forward, torch.nn.LayerNorm)
    patch_method(non_linear_forward, torch.nn.GELU, keep_original=True)
    cp = a.softmax == "cp"

    def mha_forward(self, query, key, value, need_weights=False, **kw):
        x = query
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = self.in_proj(x).chunk(3, -1)
        q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        if cp:
            q, k = stop_gradient(q), stop_gradient(k)
        scores = q @ k.transpose(-1, -2)
        if not cp:
            scores = divide_gradient(scores, 2)
        probs = torch.softmax(scores / (d // h) ** 0.5, -1)
        ctx = probs @ v
        if not cp:
            ctx = divide_gradient(ctx, 2)
        ctx = ctx.transpose(1, 2).reshape(b, t, d)
        capture(self.relprune_name, ctx, heads=h)
        return self.out_proj(ctx), None

    torch.nn.MultiheadAttention.forward = mha_forward
    m = tv.VisionTransformer(32, 8, 3, 4, 64, 128, num_classes=10).eval()
    perturb(m)
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.MultiheadAttention):
            mod.relprune_name = name
            mod.in_proj = torch.nn.Linear(64, 192)
            mod.in_proj.weight = mod.in_proj_weight
            mod.in_proj.bias = mod.in_proj_bias
    save_file({k: v.contiguous() for k, v in m.state_dict().items() if ".in_proj." not in k}, str(out / "model.safetensors"))
    if a.double:
        m = m.double()
    rules = json.loads(a.rules)

    def make(spec, name):
        r = spec["rule"]
        if r == "epsilon":
            return Epsilon(epsilon=spec.get("epsilon", 1e-6))
        if r == "gamma":
            return Gamma(gamma=spec.get("gamma", 0.25 if name == "conv_proj" else 0.05), stabilizer=a.stabilizer)
        if r == "zplus":
            return ZPlus(stabilizer=a.stabilizer)
        return AlphaBeta(alpha=spec["alpha"], beta=spec["beta"], stabilizer=a.stabilizer)

    composite = NameMapComposite([((n,), make(s, n)) for n, s in rules.items()])
    for name, mod in m.named_modules():
        if name.endswith("mlp.0"):
            mod.register_forward_hook(lambda mod, i, o, name=name: capture(name, o))
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64 if a.double else torch.float32)
    labels = torch.tensor([1, 4, 7])
    with composite.context(m) as mm:
        xi = x.clone().requires_grad_(True)
        y = mm(xi)
        y.backward(torch.nn.functional.one_hot(labels, 10).to(y.dtype))
    tensors = {"x": x.float() if not a.double else x, "labels": labels}
elif a.kind == "bert":
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.models.bert import modeling_bert
    from lxt.efficient import monkey_patch

    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=40, num_labels=3, attn_implementation="eager")
    m = BertForSequenceClassification(cfg).eval()
    perturb(m)
    m.save_pretrained(out / "hf", safe_serialization=True)
    monkey_patch(modeling_bert)
    m2 = modeling_bert.BertForSequenceClassification(cfg).eval()
    m2.load_state_dict(m.state_dict())
    if a.double:
        m2 = m2.double()
    for name, mod in m2.named_modules():
        if name.endswith("attention.self"):
            mod.register_forward_hook(lambda mod, i, o, name=name: capture(name.removeprefix("bert."), o[0], heads=4))
        if name.endswith("intermediate.dense") or name.endswith("pooler.dense"):
            mod.register_forward_hook(lambda mod, i, o, name=name: capture(name.removeprefix("bert."), o))
    ids = torch.randint(1, 100, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    ids[mask == 0] = 0
    labels = torch.tensor([0, 2, 1])
    emb = m2.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
    y = m2(inputs_embeds=emb, attention_mask=mask).logits
    y.backward(torch.nn.functional.one_hot(labels, 3).to(y.dtype))
    tensors = {"ids": ids, "mask": mask, "labels": labels}
elif a.kind in ("llama", "qwen2"):
    import transformers
    from lxt.efficient import monkey_patch
    from lxt.efficient.rules import stop_gradient

    if a.kind == "llama":
        from transformers.models.llama import modeling_llama as hf
        norm, rotary = hf.LlamaRMSNorm, hf.LlamaRotaryEmbedding
    else:
        from transformers.models.qwen2 import modeling_qwen2 as hf
        norm, rotary = hf.Qwen2RMSNorm, hf.Qwen2RotaryEmbedding
    if a.folder:
        # A real model (SmolLM2), in float32 as transformers loads it.
        m = transformers.AutoModelForCausalLM.from_pretrained(a.folder, dtype=torch.float32,
                                                              attn_implementation="eager")
        cfg = m.config
    else:
        # tests/oracles/llm_outputs.py's tiny(): every tensor random, norm weights and biases too.
        common = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      attn_implementation="eager")
        if a.kind == "llama":
            cfg = transformers.LlamaConfig(num_attention_heads=4, num_key_value_heads=a.kv_heads or 2, head_dim=8,
                                           rope_theta=100000.0, **common)
            m = transformers.LlamaForCausalLM(cfg)
        else:
            cfg = transformers.Qwen2Config(num_attention_heads=4, num_key_value_heads=a.kv_heads or 1, rope_theta=10000.0,
                                           **common)
            m = transformers.Qwen2ForCausalLM(cfg)
        with torch.no_grad():
            for name, t in m.named_parameters():
                if t.dim() == 1 and name.endswith("norm.weight"):
                    t.uniform_(0.5, 1.5)
                elif t.dim() == 1:
                    t.normal_(0, 0.1)
                else:
                    t.normal_(0, 0.2)
        m.eval().save_pretrained(out / "hf", safe_serialization=True)
    if a.double and not a.hf_fp32:
        # transformers computes RMSNorm (and LXT's rms_norm_forward), the RoPE angles and the
        # softmax in float32 even in a float64 model; these copies keep float64 and are otherwise
        # the same functions (the rules are untouched: LXT wraps eager_attention_forward below).
        def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kw):
            key = hf.repeat_kv(key, module.num_key_value_groups)
            value = hf.repeat_kv(value, module.num_key_value_groups)
            w = torch.matmul(query, key.transpose(2, 3)) * scaling
            if attention_mask is not None:
                w = w + attention_mask[:, :, :, : key.shape[-2]]
            w = torch.softmax(w, -1)
            return torch.matmul(w, value).transpose(1, 2).contiguous(), w

        def rms_norm_forward(self, x):
            return self.weight * (x * stop_gradient(torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)))

        @torch.no_grad()
        def rotary_forward(self, x, position_ids):
            d = 2 * self.inv_freq.numel()
            inv = 1.0 / self.config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
            freqs = position_ids[:, :, None].double() * inv
            emb = torch.cat((freqs, freqs), -1)
            return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)

        hf.eager_attention_forward = eager_attention_forward
        rotary.forward = rotary_forward
    # AttnLRP (lxt/efficient/models/{llama,qwen2}.py): gated MLP (identity rule on the activation,
    # uniform rule on gate·up), RMSNorm with detached rms, query/key/value gradients ÷ 4, 4, 2 in
    # every attention function; Linear layers, RoPE, residual adds and embeddings keep the gradient.
    monkey_patch(hf)
    if a.double and not a.hf_fp32:
        norm.forward = rms_norm_forward
    if a.double:
        m = m.double()
    m.requires_grad_(False)
    heads = cfg.num_attention_heads

    def keep(name, t):
        t.register_hook(lambda g: captured.__setitem__(name, (t * g).detach()))

    for name, mod in m.named_modules():
        if name.endswith("mlp.gate_proj") or name.endswith("mlp.up_proj"):
            mod.register_forward_hook(lambda mod, i, o, name=name: capture(name, o))
        if name.endswith("self_attn.o_proj"):
            mod.register_forward_pre_hook(lambda mod, i, name=name: capture(name.removesuffix(".o_proj"), i[0], heads=heads))
        if name.endswith("mlp.down_proj"):
            mod.register_forward_pre_hook(lambda mod, i, name=name: keep(f"X.{name}.input", i[0]))
    b, t = 2, 10
    ids = torch.randint(0, cfg.vocab_size, (b, t))
    mask = torch.ones(b, t, dtype=torch.long)
    labels = torch.cat([ids[:, 1:], torch.full((b, 1), -100)], 1)
    emb = m.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = m(inputs_embeds=emb, attention_mask=mask, use_cache=False).logits
    if a.target == "predicted":
        target = logits[:, :-1].max(-1).values.sum(1)
    else:
        target = logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1).sum(1)
    target.sum().backward()
    captured["X.embeddings"] = (emb * emb.grad).detach()
    captured["X.logits_target"] = target.detach()
    tensors = {"ids": ids, "mask": mask, "labels": labels}
    r_in, r_out = captured["X.embeddings"].sum((1, 2)), target.detach()
    print(f"relevance at the embeddings {r_in.tolist()}, initial {r_out.tolist()}, ratio {(r_in / r_out).tolist()}")
else:
    raise SystemExit(f"unknown kind {a.kind}")
tensors.update({k: v.contiguous() for k, v in captured.items()})
save_file(tensors, str(out / "io.safetensors"))
