"""Shared fixtures: the chapter's example sentence, registry isolation, one thread, and
plugin distributions installed for one test.

Helpers that test modules import live in ``tests/helpers.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import attnkit
from tests.helpers import CHAPTER_INPUTS

DISTRIBUTIONS = Path(__file__).parent / "distributions"
"""Plugin distributions for the tests, each a folder with a module and its dist-info."""
# The modules those distributions import, forgotten after each test that installs them.
FIXTURE_MODULES = (
    "attnkit_test_",
    "attnkit_missing_dependency",
)


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


@pytest.fixture
def install(fresh_registry, monkeypatch):
    """Install fixture distributions by folder name; undone (and plugins reloaded) after.

    Also clears the plugin-selection and strict-mode variables, so that each test
    starts from the default policy.
    """
    monkeypatch.delenv("ATTNKIT_PLUGINS", raising=False)
    monkeypatch.delenv("ATTNKIT_STRICT_PLUGINS", raising=False)

    def install(*folders: str) -> None:
        for folder in folders:
            monkeypatch.syspath_prepend(str(DISTRIBUTIONS / folder))

    yield install
    for module in [m for m in sys.modules if m.startswith(FIXTURE_MODULES)]:
        del sys.modules[module]
