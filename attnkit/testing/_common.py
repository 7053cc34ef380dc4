"""What every check shares, for variants and kernels alike: `Check`, its outcomes, tolerances."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "TOLERANCE",
    "Check",
    "Failed",
    "Skipped",
    "expect_tensor",
    "first_wrong",
    "largest_difference",
    "shape_of",
]

# Absolute and relative tolerances, per dtype, for outputs compared against a reference.
# bfloat16 keeps 8 bits of mantissa and its error compounds through several projections.
TOLERANCE: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (5e-2, 5e-2),
}


@dataclass(frozen=True)
class Check:
    """One conformance check, of a variant (in `CHECKS`) or of a kernel (in `KERNEL_CHECKS`).

    Attributes:
        name: Used in reports, test ids, and the ``checks`` and ``skip`` arguments.
        rule: The rule it holds variants (or kernels) to, in one sentence.
    """

    name: str
    rule: str
    function: Callable[[Any], str] = field(repr=False, compare=False)


class Failed(Exception):
    """Raised inside a check: the rule was broken; the message says how."""


class Skipped(Exception):
    """Raised inside a check: it does not apply; the message says why."""


def shape_of(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def expect_tensor(result: object, call: str) -> torch.Tensor:
    if not isinstance(result, torch.Tensor):
        raise Failed(f"{call} returned {type(result).__name__}; expected a tensor")
    return result


def largest_difference(
    actual: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    tolerance: tuple[float, float] | None = None,
) -> float | None:
    """The largest absolute difference if it exceeds the tolerance (the dtype's), else None."""
    atol, rtol = tolerance or TOLERANCE[dtype]
    actual, expected = actual.detach().double(), expected.detach().double()
    difference = (actual - expected).abs()
    nan_mismatch = actual.isnan() != expected.isnan()
    if nan_mismatch.any():
        return float("nan")
    difference = difference.nan_to_num(0.0)
    if (difference > atol + rtol * expected.abs().nan_to_num(0.0)).any():
        return float(difference.max())
    return None


def first_wrong(
    actual: torch.Tensor, expected: torch.Tensor, tolerance: tuple[float, float]
) -> tuple[tuple[int, ...], float, float] | None:
    """Where ``actual`` first strays beyond tolerance of ``expected`` (NaN always does).

    Returns:
        ``None`` if nowhere; else the index of the first vector (all axes but the
        last, e.g. ``(batch, head, query)``), the stray value, and the largest
        absolute difference within that vector (``inf`` for NaN).
    """
    atol, rtol = tolerance
    actual, expected = actual.detach().double(), expected.detach().double()
    difference = (actual - expected).abs()
    wrong = ~(difference <= atol + rtol * expected.abs())  # NaN compares False: wrong
    if not wrong.any():
        return None
    index = tuple(int(i) for i in wrong.nonzero()[0])
    worst = float(difference.nan_to_num(float("inf"))[index[:-1]].max())
    return index[:-1], float(actual[index]), worst
