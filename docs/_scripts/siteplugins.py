"""Which plugins the site documents: the same ones wherever it is built.

The published site shows attnkit's built-in variants and kernels and those of the
example plugin, ``attnkit-window``, and nothing else, whatever else is installed
in the environment that builds it. ``docs/_hooks.py`` makes that so: it checks that
the example plugin loads before any page is built (`check`), and has every page's
executed examples load exactly these plugins (`ENVIRONMENT`, through attnkit's own
``ATTNKIT_PLUGINS``).

The reader's own plugins are not left out of their own copy: ``mkdocs serve``
(``make docs``) sets `show_installed`, and the catalog then lists the other
installed plugins in a section of its own (`installed_elsewhere`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution

import attnkit
from attnkit.registry import PluginInfo

__all__ = [
    "ENVIRONMENT",
    "INSTALL_HINT",
    "SITE_PLUGINS",
    "check",
    "environment",
    "every_installed_plugin",
    "installed_elsewhere",
    "show_installed",
]

SITE_PLUGINS = ("attnkit-window",)
"""The third-party distributions the site documents: the example plugin."""

SITE_NAMES = {"attnkit-window": ({"window"}, {"chunked"})}
"""What each of them must register: (variants, kernels)."""

INSTALL_HINT = (
    "`make install` from the repository root, or `python -m pip install "
    "./examples/attnkit-window` into the environment that runs mkdocs"
)

ENVIRONMENT: dict[str, str | None] = {
    "ATTNKIT_PLUGINS": ",".join(SITE_PLUGINS),
    "ATTNKIT_STRICT_PLUGINS": None,
}
"""Set while a page's examples run: these plugins only, and attnkit's default policy for
failures (whatever the shell that runs the build sets: None removes a variable)."""

show_installed = False
"""Whether the catalog lists the other installed plugins (set for ``mkdocs serve``)."""


class MissingPluginError(RuntimeError):
    """The example plugin that the site documents cannot be loaded."""


def check() -> None:
    """Raise `MissingPluginError`, saying how to install it, unless the example plugin loads.

    Loads the plugins as every page will (`ENVIRONMENT`), so that a plugin that is
    installed but broken stops the build here, with its own error, rather than as a
    traceback in the middle of a page.
    """
    for name in SITE_PLUGINS:
        try:
            distribution(name)
        except PackageNotFoundError:
            raise MissingPluginError(
                f"The site documents the example plugin {name}, which is not installed "
                f"in this environment; install it with {INSTALL_HINT}."
            ) from None
    with environment({**ENVIRONMENT, "ATTNKIT_STRICT_PLUGINS": "1"}):
        try:
            attnkit.registry.reload_plugins()
        except attnkit.PluginLoadError as error:
            raise MissingPluginError(
                f"The example plugin failed to load: {error}. Reinstall it with {INSTALL_HINT}."
            ) from error
        variants, kernels = set(attnkit.list_variants()), set(attnkit.list_kernels())
    for name, (wanted_variants, wanted_kernels) in SITE_NAMES.items():
        missing = sorted((wanted_variants - variants) | (wanted_kernels - kernels))
        if missing:
            raise MissingPluginError(
                f"The example plugin {name} loaded but did not register {', '.join(missing)}; "
                f"the installed copy is out of date; reinstall it with {INSTALL_HINT}."
            )


@contextlib.contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables, and put them back afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def every_installed_plugin() -> Iterator[list[PluginInfo]]:
    """Load every installed plugin for the duration; yield those the site leaves out.

    A plugin that fails is reported, not raised: it is the reader's, not the site's.
    The site's own selection is loaded again afterwards.
    """
    wanted = {name.lower() for name in SITE_PLUGINS}
    try:
        with environment({"ATTNKIT_PLUGINS": None, "ATTNKIT_STRICT_PLUGINS": None}):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", attnkit.PluginLoadWarning)
                attnkit.registry.reload_plugins()
            yield [
                plugin
                for plugin in attnkit.list_plugins()
                if not plugin.builtin and (plugin.distribution or "").lower() not in wanted
            ]
    finally:
        attnkit.registry.reload_plugins()


def installed_elsewhere() -> list[str]:
    """The names of the other installed plugin distributions (those the site leaves out)."""
    with every_installed_plugin() as plugins:
        return sorted({plugin.distribution or plugin.name for plugin in plugins})
