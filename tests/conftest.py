"""Shared fixtures: the chapter's example sentence, registry isolation, one thread.

Helpers that test modules import live in ``tests/helpers.py``.
"""

from __future__ import annotations

import pytest
import torch

import attnkit
from tests.helpers import CHAPTER_INPUTS


@pytest.fixture
def chapter_inputs() -> torch.Tensor:
    return CHAPTER_INPUTS.clone()


@pytest.fixture
def fresh_registry():
    """Reload plugins after the test, undoing whatever it registered."""
    yield
    attnkit.registry.reload_plugins()


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
