"""Shared fixtures: the chapter's example sentence, a generic builder, registry isolation."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import attnkit
from attnkit._arguments import accepted_arguments

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

# Sizes every test variant is built with; each variant takes the keys it accepts.
D_IN = 12
CONTEXT_LENGTH = 16
STANDARD_ARGUMENTS: dict[str, Any] = {
    "d_in": D_IN,
    "d_out": 12,
    "context_length": CONTEXT_LENGTH,
    "num_heads": 3,
    "dropout": 0.0,
}

# Per-dtype tolerances (absolute and relative) against float64 references.
TOLERANCES = {
    torch.float64: {"atol": 1e-12, "rtol": 1e-10},
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2},
}


def build(name: str, **overrides: Any) -> attnkit.Attention:
    """Build variant ``name`` from the standard sizes it accepts, plus ``overrides``."""
    accepted = accepted_arguments(attnkit.get_variant(name))
    arguments = {k: v for k, v in STANDARD_ARGUMENTS.items() if k in accepted}
    arguments.update(overrides)
    return attnkit.create(name, **arguments)


def input_width(module: attnkit.Attention) -> int:
    return module.d_in if module.d_in is not None else D_IN


@pytest.fixture
def chapter_inputs() -> torch.Tensor:
    return CHAPTER_INPUTS.clone()


@pytest.fixture
def fresh_registry():
    """Reload plugins after the test, undoing whatever it registered."""
    yield
    attnkit.reload_plugins()


@pytest.fixture
def uncached_variant(fresh_registry):
    """The name of a causal variant registered without the KV-cache capability."""

    class NoCache(attnkit.get_variant("causal")):
        """Causal attention that does not declare supports_kv_cache."""

        name = "causal_without_cache"
        supports_kv_cache = False

    attnkit.register(NoCache)
    return NoCache.name


@pytest.fixture
def one_thread():
    """Run on one thread: tiny models gain nothing from more, and on a busy machine
    threads that wait for each other make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
