"""A pruned {Family} decoder with its own width per layer, written by relprune.

transformers' {Family}Config has one MLP width and one head count for every layer; after
pruning, each layer keeps its own, and a key/value head may serve fewer query heads than its
neighbours. This file extends the stock classes with per-layer lists (`intermediate_sizes`,
`attention_heads`, `key_value_heads`, `query_groups`: query heads per key/value head) and keeps
every parameter name, so the folder loads with::

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers.models.{module}.configuration_{module} import {Family}Config
from transformers.models.{module}.modeling_{module} import (
    ALL_ATTENTION_FUNCTIONS,
    {Family}Attention,
    {Family}ForCausalLM,
    {Family}MLP,
    apply_rotary_pos_emb,
    eager_attention_forward,
)


class Relprune{Family}Config({Family}Config):
    """{Family}Config plus the widths of each layer (None: the stock, equal widths)."""

    model_type = "relprune_{module}"

    def __init__(
        self,
        intermediate_sizes: list[int] | None = None,
        attention_heads: list[int] | None = None,
        key_value_heads: list[int] | None = None,
        query_groups: list[list[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.intermediate_sizes = intermediate_sizes
        self.attention_heads = attention_heads
        self.key_value_heads = key_value_heads
        self.query_groups = query_groups


class _NoHeads(nn.Module):
    """An attention layer whose heads were all removed: its projections are empty, and it adds
    only the output projection's bias (if any) to the residual stream."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        # `attention` is a one-head layer of the family: its projections say which have biases.
        hidden = attention.q_proj.in_features
        for name in ("q_proj", "k_proj", "v_proj"):
            setattr(self, name, nn.Linear(hidden, 0, bias=getattr(attention, name).bias is not None))
        self.o_proj = nn.Linear(0, hidden, bias=attention.o_proj.bias is not None)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        """The output projection of an empty context."""
        return self.o_proj(hidden_states.new_zeros(*hidden_states.shape[:-1], 0)), None


class _GroupedAttention({Family}Attention):
    """Attention whose key/value heads serve unequal numbers of query heads (`groups`): each
    query head reads its key/value head by index, where the stock class repeats them evenly."""

    def __init__(self, config: Relprune{Family}Config, layer_idx: int, groups: list[int]) -> None:
        super().__init__(config, layer_idx)
        index = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor(groups, dtype=torch.long))
        self.register_buffer("kv_index", index, persistent=False)
        # The keys and values reach the attention function already one per query head.
        self.num_key_value_groups = 1

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        past_key_values: Any = None,
        cache_position: torch.LongTensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stock forward, with the key/value heads picked per query head after the cache."""
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if past_key_values is not None:
            cache_kwargs = {"sin": sin, "cos": cos, "cache_position": cache_position}
            key, value = past_key_values.update(key, value, self.layer_idx, cache_kwargs)
        key, value = key.index_select(1, self.kv_index), value.index_select(1, self.kv_index)
        attention = eager_attention_forward
        if self.config._attn_implementation != "eager":
            attention = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        out, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        return self.o_proj(out.reshape(*input_shape, -1).contiguous()), weights


class Relprune{Family}ForCausalLM({Family}ForCausalLM):
    """{Family}ForCausalLM whose layers take their widths from the config's per-layer lists."""

    config_class = Relprune{Family}Config

    def __init__(self, config: Relprune{Family}Config) -> None:
        super().__init__(config)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        for i, layer in enumerate(self.model.layers):
            c = copy.copy(config)
            c.head_dim = head_dim
            if config.intermediate_sizes is not None:
                c.intermediate_size = config.intermediate_sizes[i]
                layer.mlp = {Family}MLP(c)
            if config.attention_heads is not None:
                c.num_attention_heads = config.attention_heads[i]
                c.num_key_value_heads = config.key_value_heads[i]
                groups = (config.query_groups or [None] * len(self.model.layers))[i]
                if c.num_attention_heads == 0:
                    c.num_attention_heads, c.num_key_value_heads = 1, 1
                    layer.self_attn = _NoHeads({Family}Attention(c, i))
                elif groups is not None and len(set(groups)) > 1:
                    layer.self_attn = _GroupedAttention(c, i, groups)
                else:
                    layer.self_attn = {Family}Attention(c, i)
        self.post_init()
