"""Padding: variants called with a padding ``attention_mask``, and what the mask costs.

With ``attnkit bench --padding FRACTION``, every selected variant that declares
the ``attention_mask`` capability gets a second row at each shape and mode: the
same module on the same input, called with an ``attention_mask`` (Hugging Face's
convention, 1 = real token, 0 = padding) whose first ``FRACTION`` of every row is
padding (``--padding-side right``: the last). The padded row is timed in turns
with the unpadded rows, and its ``vs_unpadded`` ratio is its time over the
unpadded row's. A variant that cannot take the mask gets a skipped row saying so.

The mask itself is timed in the same turns, as a decoder builds it in each
forward call (`attnkit.masks`):

- ``first``: ``causal() & padding(attention_mask)`` for a new ``attention_mask``
  tensor, then ``to_dense(batch, heads, tokens, tokens)``: building the mask and
  materialising it, as the first layer does for each new batch;
- ``cached``: the same for the same tensor, as every later layer does: the masks
  remember the tensor they were built from, so this returns the cached mask.

Each padded row's ``mask_share`` is ``first`` over the row's time: what a new
batch pays once, not once per layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from attnkit import masks
from attnkit.bench.cases import Shape
from attnkit.bench.measure import median

__all__ = [
    "SIDES",
    "attention_mask",
    "mask_entry",
    "mask_steps",
    "padded_tokens",
    "parse_fraction",
]

SIDES = ("left", "right")
"""Where the padding goes in each row: before the real tokens (``left``) or after them."""


def parse_fraction(text: str) -> float:
    """Read ``--padding``: a fraction of every row, at least 0 and below 1.

    Examples:
        >>> parse_fraction("0.25")
        0.25
        >>> parse_fraction("1")
        Traceback (most recent call last):
        ...
        ValueError: expected a fraction of each row, at least 0 and below 1, such as 0.25, got '1'
    """
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise ValueError(
            f"expected a fraction of each row, at least 0 and below 1, such as 0.25, got {text!r}"
        )
    return value


def padded_tokens(tokens: int, fraction: float) -> int:
    """How many of ``tokens`` are padding: the nearest whole number, leaving one real token.

    Examples:
        >>> padded_tokens(1024, 0.25), padded_tokens(16, 0.25), padded_tokens(2, 0.9)
        (256, 4, 1)
    """
    return min(tokens - 1, round(tokens * fraction))


def attention_mask(batch: int, tokens: int, padded: int, side: str = "left") -> torch.Tensor:
    """``(batch, tokens)`` of 1 (real) and 0 (padding), ``padded`` zeros on ``side`` of each row.

    Examples:
        >>> attention_mask(2, 5, 2)
        tensor([[0, 0, 1, 1, 1],
                [0, 0, 1, 1, 1]])
        >>> attention_mask(1, 5, 2, side="right")
        tensor([[1, 1, 1, 0, 0]])
    """
    if side not in SIDES:
        raise ValueError(f"padding side must be one of {', '.join(SIDES)}, got {side!r}")
    mask = torch.ones(batch, tokens, dtype=torch.long)
    if padded:
        if side == "left":
            mask[:, :padded] = 0
        else:
            mask[:, tokens - padded :] = 0
    return mask


def mask_steps(
    shape: Shape, attention_mask: torch.Tensor
) -> tuple[masks.Mask, dict[str, Callable[[], object]]]:
    """The mask a decoder builds from ``attention_mask``, and the two calls that time it.

    Returns:
        The mask, already materialised once, and ``{"first": ..., "cached": ...}``
        (see the module's description).
    """
    sizes = _dense_sizes(shape)
    cached = masks.causal() & masks.padding(attention_mask)
    cached.to_dense(*sizes)

    def first() -> None:
        (masks.causal() & masks.padding(attention_mask.clone())).to_dense(*sizes)

    def again() -> None:
        (masks.causal() & masks.padding(attention_mask)).to_dense(*sizes)

    return cached, {"first": first, "cached": again}


def mask_entry(
    shape: Shape,
    mode: str,
    mask: masks.Mask,
    side: str,
    runs: dict[str, list[float]],
) -> dict[str, Any]:
    """The report's record of the mask's cost at one shape and mode (``runs`` in seconds)."""
    dense = mask.to_dense(*_dense_sizes(shape))
    return {
        "shape": shape.to_json(),
        "mode": mode,
        "mask": repr(mask),
        "side": side,
        "dense_shape": list(dense.shape),
        "dense_mb": dense.numel() * dense.element_size() / 2**20,
        "first_ms": median(runs["first"]) * 1e3,
        "cached_us": median(runs["cached"]) * 1e6,
        "runs_ms": {name: [seconds * 1e3 for seconds in values] for name, values in runs.items()},
    }


def _dense_sizes(shape: Shape) -> tuple[int, int, int, int]:
    return (shape.batch, shape.heads, shape.tokens, shape.tokens)
