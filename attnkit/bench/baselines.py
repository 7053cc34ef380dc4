"""The modules every variant is measured against, written here so the comparison stands alone.

All of them compute causal multi-head self-attention of width ``d_model`` with
``num_heads`` heads and an output projection, as `attnkit`'s ``multihead`` does, with
its parameters (no query/key/value bias, an output projection with bias):

- `FusedSDPA` (``sdpa``): one fused query/key/value projection, a single
  ``nn.Linear(d_model, 3 * d_model)``, whose output splits into heads by views
  (each head a contiguous ``head_dim``-wide block), into
  `torch.nn.functional.scaled_dot_product_attention` with ``is_causal=True``.
- `SeparateSDPA` (``sdpa_separate``): three projections, one each for the queries,
  keys and values, into the same call.

The two are the practical limit for a module of this shape; which of them is
faster depends on the machine, so every ratio is taken against the faster of the
two measured in the same run (see `attnkit.bench.cases.REFERENCES`). The others:

- `TorchMultiheadAttention`: `torch.nn.MultiheadAttention` with
  ``need_weights=False`` and a causal mask, called two ways: with the
  ``is_causal=True`` hint, which lets it run the fused causal kernel (``mha``, its
  best case), and with the mask alone, as most code calls it (``mha_mask``).
- `TextbookAttention`: the explicit form, written out step by step (scores,
  ``masked_fill_``, softmax, weighted sum), independent of attnkit's own kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BASELINES",
    "FusedSDPA",
    "SeparateSDPA",
    "TextbookAttention",
    "TorchMultiheadAttention",
]


def _causal_mask(tokens: int) -> torch.Tensor:
    """Boolean ``(tokens, tokens)``, True above the diagonal: the positions to hide."""
    return torch.ones(tokens, tokens, dtype=torch.bool).triu(diagonal=1)


def _attend(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, dropout: float
) -> torch.Tensor:
    """Causal SDPA, heads concatenated: ``(batch, heads, tokens, head_dim)`` -> ``(batch, tokens, width)``."""  # noqa: E501
    batch, heads, tokens, head_dim = queries.shape
    context = F.scaled_dot_product_attention(
        queries, keys, values, dropout_p=dropout, is_causal=True
    )
    return context.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


class FusedSDPA(nn.Module):
    """One fused QKV projection, heads split by views, into PyTorch's scaled dot-product attention.

    Args:
        d_model: Width of the input and the output.
        num_heads: Number of heads; must divide ``d_model``.
        dropout: Probability of zeroing each attention weight while training.
    """

    causal = True

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, tokens, d_model)`` -> ``(batch, tokens, d_model)``."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim)
        queries, keys, values = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, tokens, head_dim)
        return self.out_proj(_attend(queries, keys, values, self.dropout if self.training else 0.0))


class SeparateSDPA(nn.Module):
    """Three projections (queries, keys, values) into PyTorch's scaled dot-product attention.

    Built under the same seed, its weights are ``multihead``'s: the same layers,
    created in the same order.

    Args:
        d_model: Width of the input and the output.
        num_heads: Number of heads; must divide ``d_model``.
        dropout: Probability of zeroing each attention weight while training.
    """

    causal = True

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.W_query = nn.Linear(d_model, d_model, bias=False)
        self.W_key = nn.Linear(d_model, d_model, bias=False)
        self.W_value = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, tokens, d_model)`` -> ``(batch, tokens, d_model)``."""
        batch, tokens, _ = x.shape
        split = (batch, tokens, self.num_heads, self.head_dim)
        queries = self.W_query(x).view(split).transpose(1, 2)
        keys = self.W_key(x).view(split).transpose(1, 2)
        values = self.W_value(x).view(split).transpose(1, 2)
        return self.out_proj(_attend(queries, keys, values, self.dropout if self.training else 0.0))


class TorchMultiheadAttention(nn.Module):
    """`torch.nn.MultiheadAttention` with a causal mask and ``need_weights=False``.

    It keeps its default biases: without an input-projection bias PyTorch skips
    its inference fast path.

    Args:
        d_model: Width of the input and the output.
        num_heads: Number of heads; must divide ``d_model``.
        tokens: The number of tokens the causal mask covers.
        dropout: Probability of zeroing each attention weight while training.
        causal_hint: Also pass ``is_causal=True``, telling PyTorch that the mask is
            the causal one, so that training can use the fused causal kernel; without
            it the mask is applied as an arbitrary mask.
    """

    causal = True

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        tokens: int,
        dropout: float = 0.0,
        causal_hint: bool = True,
    ) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)
        self.causal_hint = causal_hint
        self.register_buffer("mask", _causal_mask(tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, tokens, d_model)`` -> ``(batch, tokens, d_model)``."""
        tokens = x.shape[1]
        context, _ = self.attention(
            x,
            x,
            x,
            need_weights=False,
            attn_mask=self.mask[:tokens, :tokens],
            is_causal=self.causal_hint,
        )
        return context


class TextbookAttention(nn.Module):
    """Causal multi-head attention the textbook way, every intermediate materialised.

    Separate query, key and value projections, then per head: scores ``Q K^T``,
    the future masked in place with ``-inf``, softmax of the scaled scores,
    dropout, and the weighted sum of the values; the heads are concatenated and
    projected.

    Args:
        d_model: Width of the input and the output.
        num_heads: Number of heads; must divide ``d_model``.
        tokens: The number of tokens the causal mask covers.
        dropout: Probability of zeroing each attention weight while training.
    """

    causal = True

    def __init__(self, d_model: int, num_heads: int, tokens: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.W_query = nn.Linear(d_model, d_model, bias=False)
        self.W_key = nn.Linear(d_model, d_model, bias=False)
        self.W_value = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", _causal_mask(tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, tokens, d_model)`` -> ``(batch, tokens, d_model)``."""
        batch, tokens, d_model = x.shape
        split = (batch, tokens, self.num_heads, self.head_dim)
        queries = self.W_query(x).view(split).transpose(1, 2)
        keys = self.W_key(x).view(split).transpose(1, 2)
        values = self.W_value(x).view(split).transpose(1, 2)
        scores = queries @ keys.transpose(2, 3)  # (batch, heads, tokens, tokens)
        scores.masked_fill_(self.mask[:tokens, :tokens], -math.inf)
        weights = torch.softmax(scores / math.sqrt(self.head_dim), dim=-1)
        weights = self.dropout(weights)
        context = (weights @ values).transpose(1, 2).reshape(batch, tokens, d_model)
        return self.out_proj(context)


BASELINES = {
    "sdpa": "one fused QKV projection + scaled_dot_product_attention(is_causal=True)",
    "sdpa_separate": "three projections (Q, K, V) + scaled_dot_product_attention(is_causal=True)",
    "mha": "torch.nn.MultiheadAttention(need_weights=False, causal mask, is_causal=True)",
    "mha_mask": "torch.nn.MultiheadAttention(need_weights=False, causal mask only)",
    "textbook": "explicit scores, masked_fill_, softmax, matmul",
}
"""The baselines by the name ``--baselines`` selects them with, and what each is."""
