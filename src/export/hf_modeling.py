"""A pruned {Family} decoder with its own width per layer, written by relprune.

transformers' {Family}Config has one MLP width and one head count for every layer; after
pruning, each layer keeps its own. This file extends the stock classes with per-layer lists
(`intermediate_sizes`, `attention_heads`, `key_value_heads`) and keeps every parameter name,
so the folder loads with::

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers.models.{module}.configuration_{module} import {Family}Config
from transformers.models.{module}.modeling_{module} import (
    {Family}Attention,
    {Family}ForCausalLM,
    {Family}MLP,
)


class Relprune{Family}Config({Family}Config):
    """{Family}Config plus the widths of each layer (None: the stock, equal widths)."""

    model_type = "relprune_{module}"

    def __init__(
        self,
        intermediate_sizes: list[int] | None = None,
        attention_heads: list[int] | None = None,
        key_value_heads: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.intermediate_sizes = intermediate_sizes
        self.attention_heads = attention_heads
        self.key_value_heads = key_value_heads


class _NoHeads(nn.Module):
    """An attention layer whose heads were all removed: it adds nothing to the residual stream."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        """Zeros shaped like the input (the output projection had no bias)."""
        return torch.zeros_like(hidden_states), None


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
                layer.self_attn = _NoHeads() if c.num_attention_heads == 0 else {Family}Attention(c, i)
        self.post_init()
