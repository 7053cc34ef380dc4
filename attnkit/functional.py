"""Scaled dot-product attention, the computation the trainable variants share.

For queries $Q$, keys $K$ and values $V$ with head width $d_k$:

$$
\\operatorname{Attention}(Q, K, V) = \\operatorname{softmax}\\!\\left(\\frac{Q K^\\top}{\\sqrt{d_k}}
+ M\\right) V
$$

where the mask $M$ is $-\\infty$ at the positions a query may not see and 0 elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["scaled_dot_product"]


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
    scores = queries @ keys.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    # Softmax in at least float32: in bfloat16 the exponentials lose too many digits.
    weights = torch.softmax(
        scores / d_k**0.5, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)
    ).to(values.dtype)
    context = F.dropout(weights, p=dropout_p, training=training) @ values
    return context, weights
