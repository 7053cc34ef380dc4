"""Scaled dot-product attention, the computation the trainable variants share.

For queries $Q$, keys $K$ and values $V$ with head width $d_k$:

$$
\\operatorname{Attention}(Q, K, V) = \\operatorname{softmax}\\!\\left(\\frac{Q K^\\top}{\\sqrt{d_k}}
+ M\\right) V
$$

where the mask $M$ is $-\\infty$ at the positions a query may not see and 0 elsewhere.

Two ways to compute it live here. `scaled_dot_product` writes every step out
and returns the weights: it is the readable reference. `attention` computes the
same through PyTorch's fused
`torch.nn.functional.scaled_dot_product_attention` (SDPA), which never builds
the ``tokens x tokens`` matrix when a fused kernel applies, and falls back to
the explicit form when the weights are asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "IMPLEMENTATIONS",
    "attention",
    "causal_mask",
    "check_implementation",
    "scaled_dot_product",
]

IMPLEMENTATIONS = ("fused", "explicit")
"""The values of the ``implementation`` option of the built-in trainable variants."""


def scaled_dot_product(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out step by step: scores, mask, softmax, dropout, weighted sum.

    Args:
        queries: ``(batch, heads, tokens_q, d_k)``.
        keys: ``(batch, heads, tokens_k, d_k)``.
        values: ``(batch, heads, tokens_k, d_v)``.
        mask: Boolean ``(tokens_q, tokens_k)``, True where a query must not attend.
        dropout_p: Probability of zeroing each attention weight while training.
        training: Apply dropout (weights are rescaled by ``1 / (1 - dropout_p)``).

    Returns:
        ``(context, weights)``: the context vectors ``(batch, heads, tokens_q, d_v)``
        and the softmax-normalised weights ``(batch, heads, tokens_q, tokens_k)``,
        taken before dropout so that every row sums to 1.

    Examples:
        >>> import torch
        >>> q = k = v = torch.eye(2).reshape(1, 1, 2, 2)
        >>> context, weights = scaled_dot_product(q, k, v)
        >>> weights
        tensor([[[[0.6698, 0.3302],
                  [0.3302, 0.6698]]]])
    """
    d_k = keys.shape[-1]
    # Scores in at least float32, scaled before the product: in float16, q @ k^T of
    # unscaled vectors overflows to inf (and the softmax to NaN) where SDPA is finite,
    # and in bfloat16 the exponentials lose too many digits.
    compute = torch.promote_types(queries.dtype, torch.float32)
    scores = (queries.to(compute) * d_k**-0.5) @ keys.to(compute).transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(values.dtype)
    context = F.dropout(weights, p=dropout_p, training=training) @ values
    return context, weights


def attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    *,
    causal: bool = False,
    dropout_p: float = 0.0,
    training: bool = False,
    need_weights: bool = False,
    implementation: str = "fused",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention through SDPA, or explicitly when the weights are wanted.

    With ``causal=True``, the queries belong to the last ``tokens_q`` of the
    ``tokens_k`` positions (they are equal unless earlier keys come from a
    `attnkit.KVCache`), so query ``i`` sees keys ``0 .. tokens_k - tokens_q + i``.
    The mask is derived from the shapes on each call, so no stored tensor can go
    stale (after ``to_empty()``, say) or tie a module to one ``context_length``.

    Args:
        queries: ``(batch, heads, tokens_q, d_k)``.
        keys: ``(batch, heads, tokens_k, d_k)``, ``tokens_k >= tokens_q``.
        values: ``(batch, heads, tokens_k, d_v)``.
        causal: Hide from each query the keys of later positions.
        dropout_p: Probability of zeroing each attention weight while training.
        training: Apply dropout.
        need_weights: Return the weights too; this takes the explicit path.
        implementation: ``"fused"`` computes through SDPA, which picks a fused
            kernel where PyTorch has one; ``"explicit"`` through `scaled_dot_product`.

    Returns:
        ``(context, weights)``: context ``(batch, heads, tokens_q, d_v)``; weights
        ``(batch, heads, tokens_q, tokens_k)`` from the explicit path, else ``None``.
    """
    tokens_q, tokens_k = queries.shape[-2], keys.shape[-2]
    past = tokens_k - tokens_q
    mask = causal_mask(tokens_q, tokens_k, device=queries.device) if causal else None
    if need_weights or implementation == "explicit":
        return scaled_dot_product(
            queries, keys, values, mask=mask, dropout_p=dropout_p, training=training
        )
    dropout_p = dropout_p if training else 0.0
    if mask is None or tokens_q == 1:
        # No mask, or one new token after cached ones, which may see every key.
        context = F.scaled_dot_product_attention(queries, keys, values, dropout_p=dropout_p)
    elif past == 0:
        context = F.scaled_dot_product_attention(
            queries, keys, values, dropout_p=dropout_p, is_causal=True
        )
    else:
        # SDPA's boolean masks mark the positions that may be attended: the opposite of ours.
        context = F.scaled_dot_product_attention(
            queries, keys, values, attn_mask=~mask, dropout_p=dropout_p
        )
    return context, None


def causal_mask(
    tokens_q: int, tokens_k: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean ``(tokens_q, tokens_k)``, True where a query must not attend: the future.

    The queries are the last ``tokens_q`` of ``tokens_k`` positions.

    Examples:
        >>> causal_mask(3, 3)
        tensor([[False,  True,  True],
                [False, False,  True],
                [False, False, False]])
        >>> causal_mask(1, 3)  # one new token after two cached ones sees them all
        tensor([[False, False, False]])
    """
    past = tokens_k - tokens_q
    return torch.ones(tokens_q, tokens_k, dtype=torch.bool, device=device).triu(past + 1)


def check_implementation(implementation: str, owner: str) -> str:
    """Return ``implementation`` if it is one of `IMPLEMENTATIONS`, else raise `ValueError`."""
    if implementation not in IMPLEMENTATIONS:
        choices = ", ".join(repr(choice) for choice in IMPLEMENTATIONS)
        raise ValueError(
            f"{owner}: implementation must be one of {choices}, got {implementation!r}"
        )
    return implementation
