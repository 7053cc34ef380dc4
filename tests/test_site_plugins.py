"""The site documents the same plugins wherever it is built (docs/_scripts/siteplugins.py).

The published pages show the built-ins and the example plugin, attnkit-window, and
nothing else, whatever else is installed; without the example plugin, the build stops
at once with a message saying how to install it, before any page renders a traceback.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

import attnkit

SCRIPTS = Path(__file__).parent.parent / "docs" / "_scripts"
sys.path.insert(0, str(SCRIPTS))
import siteplugins  # noqa: E402

sys.path.remove(str(SCRIPTS))


def site_plugins() -> set[str]:
    """The distributions of the plugins that a page's examples see."""
    with siteplugins.environment(siteplugins.ENVIRONMENT):
        attnkit.registry.reload_plugins()
        return {p.distribution for p in attnkit.list_plugins() if not p.builtin}


def test_the_pages_see_the_builtins_and_the_example_plugin_whatever_is_installed(install):
    install("good")  # another installed plugin: attnkit-test-good
    assert site_plugins() == {"attnkit-window"}
    assert {"window"} <= set(attnkit.list_variants()) and "chunked" in attnkit.list_kernels()
    assert "good" not in attnkit.list_variants()
    # It is not hidden from the reader's own copy: `mkdocs serve` lists it apart.
    assert siteplugins.installed_elsewhere() == ["attnkit-test-good"]


def test_the_build_stops_and_says_how_to_install_a_missing_example_plugin(monkeypatch, install):
    def not_installed(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(siteplugins, "distribution", not_installed)
    with pytest.raises(siteplugins.MissingPluginError) as error:
        siteplugins.check()
    message = str(error.value)
    assert "example plugin attnkit-window, which is not installed" in message
    assert "`make install`" in message and "pip install ./examples/attnkit-window" in message


def test_the_mkdocs_hook_turns_it_into_a_build_error(monkeypatch, install):
    sys.path.insert(0, str(SCRIPTS.parent))
    try:
        import _hooks
    finally:
        sys.path.remove(str(SCRIPTS.parent))

    def missing():
        raise siteplugins.MissingPluginError("install it with make install")

    monkeypatch.setattr(_hooks.siteplugins, "check", missing)
    with pytest.raises(PluginError, match="install it with make install"):
        _hooks.on_config({})


def test_an_example_plugin_that_registers_too_little_is_reported(monkeypatch, install):
    monkeypatch.setitem(siteplugins.SITE_NAMES, "attnkit-window", ({"window", "gone"}, set()))
    with pytest.raises(siteplugins.MissingPluginError, match="did not register gone"):
        siteplugins.check()
