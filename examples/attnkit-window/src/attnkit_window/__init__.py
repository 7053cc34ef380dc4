"""attnkit-window: sliding-window causal attention, as an attnkit plugin.

Each token attends to itself and at most ``window - 1`` tokens before it, so the
cost of a forward pass grows with ``tokens * window`` rather than ``tokens**2``
once a fused kernel exploits the band, and a token's receptive field grows by
``window - 1`` per layer when layers are stacked. With ``window >= context_length``
it is ordinary causal attention.

The package is found by attnkit through its entry point, declared in
``pyproject.toml``::

    [project.entry-points.attnkit]
    window = "attnkit_window"

attnkit imports this module the first time its registry is used and calls
`register_variants`; nothing else is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import attnkit
from attnkit.functional import scaled_dot_product
from attnkit.interface import check_dropout, check_positive_int

__all__ = ["SlidingWindowAttention", "register_variants", "window_mask"]

__version__ = "0.1.0"


def window_mask(context_length: int, window: int) -> torch.Tensor:
    """Boolean ``(context_length, context_length)``: True where a query must not attend.

    Query ``i`` may attend to key ``j`` when ``i - window < j <= i``.

    Examples:
        >>> window_mask(4, 2).int()
        tensor([[0, 1, 1, 1],
                [0, 0, 1, 1],
                [1, 0, 0, 1],
                [1, 1, 0, 0]], dtype=torch.int32)
    """
    position = torch.arange(context_length)
    offset = position[:, None] - position[None, :]  # how far key j lies before query i
    return (offset < 0) | (offset >= window)


class SlidingWindowAttention(attnkit.Attention):
    """Sliding-window causal attention: each token sees itself and the window - 1 tokens before.

    Args:
        d_in: Width of the input embeddings.
        d_out: Width of the output; split into ``num_heads`` heads of ``d_out // num_heads``.
        context_length: The most tokens a forward pass accepts; sizes the mask.
        dropout: Probability of zeroing each attention weight while training.
        num_heads: Number of heads; must divide ``d_out``.
        qkv_bias: Give the query, key and value projections a bias.
        window: How many tokens each token attends to, itself included.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``.
        W_key: ``nn.Linear(d_in, d_out)``.
        W_value: ``nn.Linear(d_in, d_out)``.
        out_proj: ``nn.Linear(d_out, d_out)``; mixes the heads.
        mask: Non-persistent buffer, boolean ``(context_length, context_length)``,
            True where a query must not attend (see `window_mask`).

    Examples:
        >>> import attnkit, torch
        >>> attention = attnkit.create("window", d_in=4, d_out=4, context_length=5, window=2)
        >>> context, weights = attention(torch.rand(5, 4), need_weights=True)
        >>> context.shape
        torch.Size([5, 4])
        >>> (weights[0] > 0).int()
        tensor([[1, 0, 0, 0, 0],
                [1, 1, 0, 0, 0],
                [0, 1, 1, 0, 0],
                [0, 0, 1, 1, 0],
                [0, 0, 0, 1, 1]], dtype=torch.int32)
    """

    name = "window"
    causal = True
    # Opting in to the KV cache: forward accepts cache= and then takes only the new tokens.
    supports_kv_cache = True

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        num_heads: int = 1,
        qkv_bias: bool = False,
        window: int = 4,
    ) -> None:
        super().__init__(d_in=d_in, d_out=d_out, context_length=context_length)
        owner = type(self).__name__
        check_positive_int(num_heads, "num_heads", owner)
        check_positive_int(window, "window", owner)
        if d_out % num_heads:
            raise ValueError(
                f"{owner}: d_out ({d_out}) must be divisible by num_heads ({num_heads})"
            )
        check_dropout(dropout, owner)  # attnkit's own check: a probability in [0, 1)
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.window = window
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        # Derived from the arguments, so it stays out of the state_dict.
        self.register_buffer("mask", window_mask(context_length, window), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        cache: attnkit.KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d_in)`` -> context ``(batch, tokens, d_out)``, weights ``(batch, num_heads, tokens, tokens)``.

        With a ``cache``, ``x`` holds only the tokens new since the last call; the
        keys and values of the earlier ones come from the cache.
        """  # noqa: E501
        batch, tokens, _ = x.shape
        split = (batch, tokens, self.num_heads, self.head_dim)
        queries = self.W_query(x).view(split).transpose(1, 2)  # (batch, heads, tokens, head_dim)
        keys = self.W_key(x).view(split).transpose(1, 2)
        values = self.W_value(x).view(split).transpose(1, 2)
        if cache is not None:
            keys, values = cache.append(keys, values, capacity=self.context_length)
        # The new tokens are the last `tokens` of the `seen` so far: their rows of the mask.
        seen = keys.shape[2]
        hidden = self.mask[seen - tokens : seen, :seen]
        weights = None
        if need_weights:
            # attnkit's explicit reference path takes any boolean mask, a band included.
            context, weights = scaled_dot_product(
                queries,
                keys,
                values,
                mask=hidden,
                dropout_p=self.dropout.p,
                training=self.training,
            )
        else:
            # The fast path: PyTorch's fused kernel, with True meaning "may attend".
            context = F.scaled_dot_product_attention(
                queries,
                keys,
                values,
                attn_mask=~hidden,
                dropout_p=self.dropout.p if self.training else 0.0,
            )
        context = self.out_proj(context.transpose(1, 2).reshape(batch, tokens, self.d_out))
        return (context, weights) if need_weights else context

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_heads={self.num_heads}, window={self.window}"


@attnkit.hookimpl
def register_variants(register):
    """Register `SlidingWindowAttention` as ``"window"``."""
    register(SlidingWindowAttention)
