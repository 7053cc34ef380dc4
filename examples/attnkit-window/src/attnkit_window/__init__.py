"""attnkit-window: sliding-window causal attention and a chunked kernel, as an attnkit plugin.

The plugin implements both of attnkit's hooks:

- `register_variants` adds `SlidingWindowAttention` as ``"window"``: each token
  attends to itself and at most ``window - 1`` tokens before it, so a token's
  receptive field grows by ``window - 1`` per layer when layers are stacked.
  With ``window >= context_length`` it is ordinary causal attention.
- `register_kernels` adds `chunked` as ``"chunked"``: exact attention computed a
  chunk of queries at a time, so that it never holds more than
  ``chunk_size x tokens_k`` scores per head. Any variant that takes ``kernel=``
  can use it, the built-in ones included.

The package is found by attnkit through its entry point, declared in
``pyproject.toml``::

    [project.entry-points.attnkit]
    window = "attnkit_window"

attnkit imports this module the first time its registry is used and calls both
hooks; nothing else is needed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import attnkit
from attnkit import masks
from attnkit.interface import check_dropout, check_flag, check_positive_int

__all__ = ["CHUNKED", "SlidingWindowAttention", "chunked", "register_kernels", "register_variants"]

__version__ = "0.1.0"

DEFAULT_CHUNK_SIZE = 128
"""How many queries `chunked` scores at once unless told otherwise."""


def chunked(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mask: masks.Mask | None,
    scale: float,
    dropout_p: float,
    training: bool,
    need_weights: bool,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exact attention in chunks of queries, in bounded memory.

    The result equals the ``explicit`` kernel's, but the ``tokens_q x tokens_k``
    score matrix is never built, only ``chunk_size x tokens_k`` scores per head
    at a time: each chunk of ``chunk_size`` queries is scored against every key,
    masked, normalised and applied to the values on its own, and the mask is
    computed for that chunk's rows only. Asking for the weights
    (``need_weights=True``) returns them all, and so gives up the bound; so does
    training, as autograd keeps every chunk's weights for the backward pass.

    Args:
        query: ``(batch, heads, tokens_q, head_dim)``.
        key: ``(batch, kv_heads, tokens_k, head_dim)``; ``heads`` is a multiple of ``kv_heads``.
        value: ``(batch, kv_heads, tokens_k, head_dim_v)``.
        mask: An `attnkit.masks.Mask`, or ``None`` to attend everywhere. A mask
            built from a tensor (padding, documents) must hold it on the
            queries' device, as a variant's padding mask does.
        scale: Multiplies the scores.
        dropout_p: Probability of zeroing each attention weight while ``training``.
        training: Apply dropout.
        need_weights: Also return the weights, ``(batch, heads, tokens_q, tokens_k)``.
        chunk_size: How many queries to score at once, a positive int.

    Returns:
        ``(context, weights)``: context ``(batch, heads, tokens_q, head_dim_v)``,
        and the weights or ``None``.

    Examples:
        >>> import attnkit, torch
        >>> q = k = v = torch.randn(1, 2, 10, 4)
        >>> window = attnkit.masks.sliding_window(3)
        >>> context, _ = attnkit.get_kernel("chunked")(q, k, v, mask=window, chunk_size=4)
        >>> expected, _ = attnkit.get_kernel("explicit")(q, k, v, mask=window)
        >>> torch.allclose(context, expected, atol=1e-6)
        True
    """
    if options:
        raise TypeError(
            f"kernel 'chunked' takes one option, chunk_size; got {', '.join(sorted(options))} "
            f"(choose a kernel that applies them, such as 'explicit')"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"kernel 'chunked': chunk_size must be a positive int, got {chunk_size!r}")
    batch, heads, tokens_q, head_dim = query.shape
    kv_heads, tokens_k = key.shape[1], key.shape[2]
    if mask is not None:
        # Materialising one row checks that the mask fits these shapes (a padding mask made
        # for another batch raises here, saying so) for the cost of tokens_k booleans.
        mask.to_dense(batch, heads, 1, tokens_k, device=query.device)
    # Grouped-query attention: each group of heads // kv_heads query heads shares one
    # key and value head, so the queries are grouped instead of the keys repeated.
    groups = heads // kv_heads
    grouped = query.reshape(batch, kv_heads, groups, tokens_q, head_dim)
    # Scores in at least float32, as the explicit kernel computes them.
    compute = torch.promote_types(query.dtype, torch.float32)
    # (batch, kv_heads, 1, head_dim, tokens_k) and (batch, kv_heads, 1, tokens_k, head_dim_v):
    # the 1 broadcasts each key and value head over its group of query heads.
    keys_t = key.to(compute).unsqueeze(2).transpose(-2, -1)
    values = value.unsqueeze(2)
    past = tokens_k - tokens_q  # the queries are the last tokens_q of the tokens_k positions
    contexts, all_weights = [], []
    for start in range(0, tokens_q, chunk_size):
        stop = min(start + chunk_size, tokens_q)
        # (batch, kv_heads, groups, stop - start, tokens_k): this chunk's scores only.
        scores = (grouped[:, :, :, start:stop].to(compute) * scale) @ keys_t
        if mask is not None:
            rows = range(past + start, past + stop)
            allowed = _mask_rows(mask, batch, heads, kv_heads, rows, tokens_k, query.device)
            # The lowest finite number, not -inf, so that a row with no allowed key stays
            # finite; it is zeroed below, in outputs and gradients alike.
            scores = scores.masked_fill(~allowed, torch.finfo(compute).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights * allowed.any(dim=-1, keepdim=True)
        weights = weights.to(value.dtype)
        contexts.append(F.dropout(weights, p=dropout_p, training=training) @ values)
        if need_weights:
            all_weights.append(weights)
    context = torch.cat(contexts, dim=3).reshape(batch, heads, tokens_q, value.shape[-1])
    if not need_weights:
        return context, None
    return context, torch.cat(all_weights, dim=3).reshape(batch, heads, tokens_q, tokens_k)


def _mask_rows(
    mask: masks.Mask,
    batch: int,
    heads: int,
    kv_heads: int,
    rows: range,
    tokens_k: int,
    device: torch.device,
) -> torch.Tensor:
    """The mask's rows for the query positions ``rows``, grouped like the scores.

    Returns:
        Bool ``(batch, kv_heads, heads // kv_heads, len(rows), tokens_k)``, except
        that the batch and head sizes are 1 where the mask does not depend on them.
    """
    # The mask_mod called on index tensors, as `Mask.to_dense` calls it, for these rows only.
    b = torch.arange(batch if mask.depends_on_batch else 1, device=device).view(-1, 1, 1, 1)
    h = torch.arange(heads if mask.depends_on_head else 1, device=device).view(1, -1, 1, 1)
    q = torch.arange(rows.start, rows.stop, device=device).view(1, 1, -1, 1)
    kv = torch.arange(tokens_k, device=device).view(1, 1, 1, -1)
    allowed = mask.mask_mod(b, h, q, kv).broadcast_to(len(b), len(h), len(rows), tokens_k)
    if mask.depends_on_head:  # split the heads into (kv_heads, groups), as the queries are
        return allowed.reshape(len(b), kv_heads, heads // kv_heads, len(rows), tokens_k)
    return allowed.unsqueeze(2)


CHUNKED = attnkit.Kernel("chunked", chunked, returns_weights=True)
"""`chunked`, as the plugin registers it."""


class SlidingWindowAttention(attnkit.Attention):
    """Sliding-window causal attention: each token sees itself and the window - 1 tokens before.

    The window is a mask value, ``attnkit.masks.sliding_window(window)``, joined by
    ``attnkit.masks.padding(attention_mask)`` when some tokens are padding; a
    kernel computes the attention with it.

    Args:
        d_in: Width of the input embeddings.
        d_out: Width of the output; split into ``num_heads`` heads of ``d_out // num_heads``.
        context_length: The most tokens a forward pass (or a KV cache) holds.
        dropout: Probability of zeroing each attention weight while training.
        num_heads: Number of heads; must divide ``d_out``.
        qkv_bias: Give the query, key and value projections a bias.
        window: How many tokens each token attends to, itself included.
        kernel: The name of a registered kernel (see `attnkit.list_kernels`), or an
            `attnkit.Kernel`. With ``need_weights=True`` a kernel that cannot
            return the weights is replaced by ``"explicit"``.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``.
        W_key: ``nn.Linear(d_in, d_out)``.
        W_value: ``nn.Linear(d_in, d_out)``.
        out_proj: ``nn.Linear(d_out, d_out)``; mixes the heads.
        mask: ``attnkit.masks.sliding_window(window)``; kernels materialise it
            and cache it per shape.
        kernel: The `attnkit.Kernel` that ``kernel`` names.

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
    # The optional arguments forward accepts; attnkit refuses the others, and its
    # conformance kit checks each one declared here.
    capabilities = frozenset({"attention_mask", "kv_cache", "weights"})

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        num_heads: int = 1,
        qkv_bias: bool = False,
        window: int = 4,
        kernel: str | attnkit.Kernel = "sdpa",
    ) -> None:
        super().__init__(d_in=d_in, d_out=d_out, context_length=context_length)
        owner = type(self).__name__
        check_positive_int(num_heads, "num_heads", owner)
        check_positive_int(window, "window", owner)
        if d_out % num_heads:
            raise ValueError(
                f"{owner}: d_out ({d_out}) must be divisible by num_heads ({num_heads})"
            )
        check_dropout(dropout, owner)  # attnkit's own checks: a probability in [0, 1), a bool
        check_flag(qkv_bias, "qkv_bias", owner)
        if not isinstance(kernel, (str, attnkit.Kernel)):
            raise TypeError(
                f"{owner}: kernel must be the name of a registered kernel "
                f"({', '.join(attnkit.list_kernels())}) or an attnkit.Kernel, got {kernel!r}"
            )
        self.kernel = attnkit.get_kernel(kernel)  # an unknown name raises, listing the kernels
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.window = window
        self.mask = masks.sliding_window(window)
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        attention_mask: torch.Tensor | None = None,
        cache: attnkit.KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d_in)`` -> context ``(batch, tokens, d_out)``, weights ``(batch, num_heads, tokens, past + tokens)``.

        With a ``cache``, ``x`` holds only the tokens new since the last call; the
        keys and values of the earlier ``past`` ones come from the cache, and
        ``attention_mask`` (checked by attnkit, bool, True for real tokens) covers
        all ``past + tokens``.
        """  # noqa: E501
        batch, tokens, _ = x.shape
        split = (batch, tokens, self.num_heads, self.head_dim)
        queries = self.W_query(x).view(split).transpose(1, 2)  # (batch, heads, tokens, head_dim)
        keys = self.W_key(x).view(split).transpose(1, 2)
        values = self.W_value(x).view(split).transpose(1, 2)
        if cache is not None:
            keys, values = cache.append(keys, values, capacity=self.context_length)
        mask = self.mask if attention_mask is None else self.mask & masks.padding(attention_mask)
        kernel = self.kernel
        if need_weights and not kernel.returns_weights:
            kernel = attnkit.get_kernel("explicit")
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
            f"{super().extra_repr()}, num_heads={self.num_heads}, window={self.window}, "
            f"kernel={self.kernel.name!r}"
        )


@attnkit.hookimpl
def register_variants(register):
    """Register `SlidingWindowAttention` as ``"window"``."""
    register(SlidingWindowAttention)


@attnkit.hookimpl
def register_kernels(register):
    """Register `chunked` as ``"chunked"``."""
    register(CHUNKED)
