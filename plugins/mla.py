"""Multi-head latent attention (DeepSeek-V2): cache a compressed latent, not keys and values.

Grouped-query attention shrinks the KV cache by sharing key and value heads.
Multi-head latent attention (MLA) shrinks it further without sharing: each token
is compressed into a latent vector $c$ of width ``kv_latent_dim``, much narrower
than ``d_out``, and only the latent is cached. Every head's keys and values are
reconstructed from it by two up-projections:

$$
c = X W_{\\text{down}}, \\qquad K = c\\, W_{\\text{up}}^{K}, \\qquad V = c\\, W_{\\text{up}}^{V}
$$

The cache then holds ``kv_latent_dim`` numbers per token and layer instead of
``2 x d_out``; the price is the two up-projections, recomputed for the cached
tokens at every step. (DeepSeek also absorbs $W_{\\text{up}}^{K}$ into the query
projection and adds a small decoupled RoPE key; neither is needed to see the idea.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

import attnkit
from attnkit.interface import check_dropout, check_flag, check_positive_int
from attnkit.masks import causal, padding
from attnkit_builtins.kernels import choose_kernel, weights_kernel
from attnkit_builtins.multihead import check_divides


class MultiHeadLatentAttention(attnkit.Attention):
    """Causal multi-head attention whose keys and values come from a cached latent.

    Args:
        d_in: Width of the input embeddings.
        d_out: Width of the output; split into ``num_heads`` heads.
        context_length: The most tokens a forward pass accepts.
        dropout: Probability of zeroing each attention weight while training.
        num_heads: Number of heads; must divide ``d_out``.
        kv_latent_dim: Width of the latent each token is compressed into: what
            the KV cache stores per token.
        qkv_bias: Give the projections a bias.
        kernel: The name of a registered kernel, or an `attnkit.Kernel`.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``.
        W_kv_down: ``nn.Linear(d_in, kv_latent_dim)``: the compression.
        W_key_up: ``nn.Linear(kv_latent_dim, d_out)``: keys from the latent.
        W_value_up: ``nn.Linear(kv_latent_dim, d_out)``: values from the latent.
        out_proj: ``nn.Linear(d_out, d_out)``; mixes the heads.

    Examples:
        >>> import attnkit, torch
        >>> attention = attnkit.create(
        ...     "mla", d_in=64, d_out=64, context_length=32, num_heads=8, kv_latent_dim=16
        ... )
        >>> cache = attnkit.KVCache()
        >>> attention(torch.rand(1, 5, 64), cache=cache).shape
        torch.Size([1, 5, 64])
        >>> cache.keys.shape, cache.values  # the latent only: 16 numbers per token
        (torch.Size([1, 1, 5, 16]), None)
    """

    name = "mla"
    causal = True
    capabilities = frozenset({"attention_mask", "kv_cache", "weights"})

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        *,
        num_heads: int,
        kv_latent_dim: int,
        qkv_bias: bool = False,
        kernel: str | attnkit.Kernel = "sdpa",
    ) -> None:
        super().__init__(d_in=d_in, d_out=d_out, context_length=context_length)
        owner = type(self).__name__
        check_dropout(dropout, owner)
        check_positive_int(num_heads, "num_heads", owner)
        check_positive_int(kv_latent_dim, "kv_latent_dim", owner)
        check_flag(qkv_bias, "qkv_bias", owner)
        check_divides(num_heads, d_out, owner)
        self.kernel = choose_kernel(kernel, owner)
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.kv_latent_dim = kv_latent_dim
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_kv_down = nn.Linear(d_in, kv_latent_dim, bias=qkv_bias)
        self.W_key_up = nn.Linear(kv_latent_dim, d_out, bias=qkv_bias)
        self.W_value_up = nn.Linear(kv_latent_dim, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def kv_cache_elements(cls, arguments: Mapping[str, Any], tokens: int) -> int:
        """The latent alone, ``kv_latent_dim`` per token."""
        return arguments["kv_latent_dim"] * tokens

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        attention_mask: torch.Tensor | None = None,
        cache: attnkit.KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d_in)`` -> context ``(batch, tokens, d_out)``, weights ``(batch, num_heads, tokens, past + tokens)``."""  # noqa: E501
        batch, tokens, _ = x.shape
        latent = self.W_kv_down(x)  # (batch, tokens, kv_latent_dim): all the cache keeps
        if cache is not None:
            latent, _ = cache.append(latent.unsqueeze(1), None, capacity=self.context_length)
            latent = latent.squeeze(1)
        seen = latent.shape[1]
        queries = self.W_query(x).view(batch, tokens, self.num_heads, self.head_dim)
        keys = self.W_key_up(latent).view(batch, seen, self.num_heads, self.head_dim)
        values = self.W_value_up(latent).view(batch, seen, self.num_heads, self.head_dim)
        queries, keys, values = (t.transpose(1, 2) for t in (queries, keys, values))
        mask = causal() if attention_mask is None else causal() & padding(attention_mask)
        kernel = weights_kernel(self.kernel) if need_weights else self.kernel
        context, weights = kernel(
            queries,
            keys,
            values,
            mask=mask,
            dropout_p=self.dropout.p,
            training=self.training,
            need_weights=need_weights,
        )
        context = self.out_proj(context.transpose(1, 2).reshape(batch, tokens, self.d_out))
        return (context, weights) if need_weights else context

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, "
            f"kv_latent_dim={self.kv_latent_dim}"
        )


@attnkit.hookimpl
def register_variants(register):
    register(MultiHeadLatentAttention)
