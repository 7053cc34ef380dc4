"""Helpers the test modules share: the chapter's sentence, a generic builder, tolerances.

Fixtures live in ``conftest.py``; everything a test module imports lives here.
"""

from __future__ import annotations

from typing import Any

import torch

import attnkit
from attnkit._arguments import STANDARD_SIZES, standard_arguments

# "Your journey starts with one step", as six 3-dimensional embeddings.
CHAPTER_INPUTS = torch.tensor(
    [
        [0.43, 0.15, 0.89],
        [0.55, 0.87, 0.66],
        [0.57, 0.85, 0.64],
        [0.22, 0.58, 0.33],
        [0.77, 0.25, 0.10],
        [0.05, 0.80, 0.55],
    ]
)

# The built-in variants, in the registry's (alphabetical) order.
BUILTIN_VARIANTS = [
    "causal",
    "gqa",
    "mla",
    "multihead",
    "multihead_wrapper",
    "self_attention",
    "simple",
]

D_IN = STANDARD_SIZES["d_in"]
CONTEXT_LENGTH = STANDARD_SIZES["context_length"]

# Per-dtype tolerances (absolute and relative) against float64 references.
TOLERANCES = {
    torch.float64: {"atol": 1e-12, "rtol": 1e-10},
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
}


def build(name: str, **overrides: Any) -> attnkit.Attention:
    """Build variant ``name`` from the standard sizes it accepts, plus ``overrides``."""
    cls = attnkit.get_variant(name)
    return cls(**standard_arguments(cls, overrides, caller=f"build({name!r})"))


def input_width(module: attnkit.Attention) -> int:
    """The width of inputs ``module`` takes: its ``d_in``, or the standard one if any works."""
    return module.d_in if module.d_in is not None else D_IN
