"""The options of the multi-head variants: what today's LLMs change about attention.

`multihead` and `gqa` accept the same options, in any combination that makes
sense; each is off by default, so the stage-4 variant still reads like the
chapter:

- ``rope_base``: rotary position embeddings (RoPE), as in Llama and Qwen: each
  pair of query and key dimensions ``(x_i, x_{i + d/2})`` (the rotate-half
  convention) is rotated by the angle ``position * base^(-2i/d)``, so that
  ``q_m . k_n`` depends on the positions only through ``m - n``.
- ``alibi``: ALiBi (Press et al., 2022): no position embedding at all, but a
  penalty ``-slope_h * (m - n)`` added to each head's scores, the slopes a
  geometric sequence per head.
- ``qk_norm``: RMSNorm on each head's queries and keys before the scores (Qwen3,
  Gemma 3), which keeps the logits from growing without bound.
- ``softcap``: logit soft-capping, ``cap * tanh(scores / cap)`` (Gemma 2).
- ``window``: sliding-window attention (Mistral, Gemma): each token sees itself
  and the ``window - 1`` tokens before it, and the KV cache keeps only the last
  ``window`` tokens, so generation memory stays flat.
- ``sinks``: a learned logit per head that takes part in the softmax but
  contributes no value (gpt-oss), so a head can attend to "nothing".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from attnkit.interface import check_flag, check_positive_int
from attnkit.masks import Mask, causal, padding, sliding_window

__all__ = ["AttentionOptions", "alibi_slopes", "apply_rope", "rope_angles"]


class AttentionOptions(nn.Module):
    """The optional parts of a multi-head variant, applied where each belongs.

    Args:
        owner: The variant's class name, for error messages.
        num_heads: Query heads.
        head_dim: Width of each head.
        rope_base: RoPE's base (10,000 in Llama 2, 500,000 in Llama 3), or ``None``.
        alibi: Add ALiBi's linear biases to the scores.
        qk_norm: RMSNorm on queries and keys, per head.
        softcap: Soft-cap the scores at this value, or ``None``.
        window: Sliding-window size (tokens each token sees, itself included), or ``None``.
        sinks: Learn one attention-sink logit per head.

    Attributes:
        q_norm: ``nn.RMSNorm(head_dim)`` when ``qk_norm``.
        k_norm: ``nn.RMSNorm(head_dim)`` when ``qk_norm``.
        sinks: ``nn.Parameter`` of shape ``(num_heads,)`` when ``sinks``, else ``None``.
    """

    def __init__(
        self,
        owner: str,
        *,
        num_heads: int,
        head_dim: int,
        rope_base: float | None = None,
        alibi: bool = False,
        qk_norm: bool = False,
        softcap: float | None = None,
        window: int | None = None,
        sinks: bool = False,
    ) -> None:
        super().__init__()
        check_flag(alibi, "alibi", owner)
        check_flag(qk_norm, "qk_norm", owner)
        check_flag(sinks, "sinks", owner)
        if rope_base is not None:
            _check_positive_number(rope_base, "rope_base", owner)
            if head_dim % 2:
                raise ValueError(
                    f"{owner}: RoPE rotates pairs of dimensions, so the head width must be "
                    f"even; got head_dim {head_dim}"
                )
            if alibi:
                raise ValueError(f"{owner}: rope_base and alibi both encode positions; choose one")
        if softcap is not None:
            _check_positive_number(softcap, "softcap", owner)
        if window is not None:
            check_positive_int(window, "window", owner)
        self.rope_base = None if rope_base is None else float(rope_base)
        self.softcap = None if softcap is None else float(softcap)
        self.window = window
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else None
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else None
        self.sinks = nn.Parameter(torch.zeros(num_heads)) if sinks else None
        if alibi:
            self.register_buffer("alibi_slopes", alibi_slopes(num_heads), persistent=False)
        else:
            self.alibi_slopes = None

    def queries_and_keys(
        self, queries: torch.Tensor, keys: torch.Tensor, position_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """QK-norm, then RoPE at ``position_ids``: queries ``(batch, heads, tokens, head_dim)``."""
        if self.q_norm is not None:
            queries, keys = self.q_norm(queries), self.k_norm(keys)
        if self.rope_base is not None:
            if position_ids is None:
                position_ids = torch.arange(queries.shape[2], device=queries.device)[None]
            dtype = torch.promote_types(queries.dtype, torch.float32)
            cos, sin = rope_angles(position_ids, queries.shape[-1], self.rope_base, dtype=dtype)
            queries, keys = apply_rope(queries, cos, sin), apply_rope(keys, cos, sin)
        return queries, keys

    def mask(self, attention_mask: torch.Tensor | None, tokens_k: int) -> Mask:
        """Causal (or the sliding window), and the padding of the last ``tokens_k`` keys."""
        mask = causal() if self.window is None else sliding_window(self.window)
        if attention_mask is not None:
            mask = mask & padding(attention_mask[:, -tokens_k:])
        return mask

    def kernel_options(self) -> dict[str, Any]:
        """What the kernel applies to the scores: ALiBi's slopes, the soft cap, the sinks."""
        options: dict[str, Any] = {}
        if self.alibi_slopes is not None:
            options["alibi_slopes"] = self.alibi_slopes
        if self.softcap is not None:
            options["softcap"] = self.softcap
        if self.sinks is not None:
            options["sinks"] = self.sinks
        return options

    def extra_repr(self) -> str:
        chosen = {
            "rope_base": self.rope_base,
            "alibi": self.alibi_slopes is not None or None,
            "qk_norm": self.q_norm is not None or None,
            "softcap": self.softcap,
            "window": self.window,
            "sinks": self.sinks is not None or None,
        }
        return ", ".join(f"{k}={v}" for k, v in chosen.items() if v is not None)


def rope_angles(
    position_ids: torch.Tensor, head_dim: int, base: float, *, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of RoPE's angles, ``(batch, 1, tokens, head_dim)`` each, in ``dtype``.

    Dimension ``i`` and ``i + head_dim / 2`` share the frequency ``base^(-2i / head_dim)``
    (the rotate-half layout of Llama and Hugging Face).

    Examples:
        >>> cos, sin = rope_angles(torch.tensor([[0, 1]]), 4, 10_000.0)
        >>> cos.shape
        torch.Size([1, 1, 2, 4])
        >>> cos[0, 0, 1]
        tensor([0.5403, 0.9999, 0.5403, 0.9999])
    """
    exponents = torch.arange(0, head_dim, 2, device=position_ids.device, dtype=dtype)
    frequencies = base ** (-exponents / head_dim)
    angles = position_ids.to(dtype)[..., None] * frequencies  # (batch, tokens, dim/2)
    angles = torch.cat((angles, angles), dim=-1).unsqueeze(1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(batch, heads, tokens, head_dim)`` by the angles: ``x cos + rotate_half(x) sin``.

    With ``x = (x1, x2)`` split in halves, that is ``(x1 cos - x2 sin, x2 cos + x1 sin)``,
    computed in at least float32 (the angles' dtype): bfloat16 rotations would drift
    with the position.
    """  # noqa: E501
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]  # both halves of the angles are equal
    x1, x2 = x.to(cos.dtype).chunk(2, dim=-1)
    if torch.is_grad_enabled() and x.requires_grad:
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)
    # Without autograd, write both halves in place: one pass fewer over the queries.
    rotated = torch.empty(x.shape, dtype=cos.dtype, device=x.device)
    first, second = rotated.chunk(2, dim=-1)
    torch.mul(x1, c, out=first).addcmul_(x2, s, value=-1)
    torch.mul(x2, c, out=second).addcmul_(x1, s)
    return rotated.to(x.dtype)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes: ``2^(-8/n), 2^(-16/n), ...`` for ``n`` a power of two.

    For another number of heads, the slopes of the nearest lower power of two,
    then every other slope of the next power of two, as in the paper.

    Examples:
        >>> alibi_slopes(4)
        tensor([0.2500, 0.0625, 0.0156, 0.0039])
        >>> alibi_slopes(6)
        tensor([0.2500, 0.0625, 0.0156, 0.0039, 0.5000, 0.1250])
    """

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two(lower)
    if lower != num_heads:
        slopes += power_of_two(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes)


def _check_positive_number(value: object, argument: str, owner: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{owner}: {argument} must be a positive number, got {value!r}")
