"""Every ``Examples:`` section in attnkit and the built-in plugins runs as a doctest."""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import attnkit
import attnkit_builtins


def modules():
    for package in (attnkit, attnkit_builtins):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            yield info.name


MODULES = sorted(modules())


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name, fresh_registry):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report = io.StringIO()
    for test in finder.find(module, module_name):
        runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


def test_the_public_api_has_examples():
    """Guard against the doctests silently finding nothing."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in ("create", "get_variant", "list_variants", "register"):
        tests = finder.find(getattr(attnkit, name))
        assert any(test.examples for test in tests), f"attnkit.{name} has no examples"
