"""Finding installed plugins, and the policy for loading them.

Plugins are found through the ``attnkit`` entry-point group, the built-in ones
included. Two environment variables, read each time plugins load (not at
import), decide what happens:

- ``ATTNKIT_PLUGINS`` chooses which third-party distributions load. Unset: all
  of them. Empty: none. A comma-separated list of distribution names: those (a
  name that is not installed is warned about). The built-in plugins always load.
- ``ATTNKIT_STRICT_PLUGINS`` set to ``1`` (or ``true``, ``yes``, ``on``) makes a
  plugin that fails to load raise `attnkit.PluginLoadError`, chaining the
  original error. Otherwise the failure is reported with a
  `attnkit.PluginLoadWarning` naming the plugin and its distribution, and every
  other plugin still loads.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from attnkit.errors import PluginLoadError, PluginLoadWarning

# Internal: the registry calls these. What users rely on is the policy itself: the
# entry-point group and the two environment variables.
__all__ = ["ENTRY_POINT_GROUP", "PLUGINS_ENV", "STRICT_ENV"]

ENTRY_POINT_GROUP = "attnkit"
BUILTIN_DISTRIBUTION = "attnkit"
PLUGINS_ENV = "ATTNKIT_PLUGINS"
STRICT_ENV = "ATTNKIT_STRICT_PLUGINS"


@dataclass(frozen=True)
class PluginSource:
    """An installed plugin, found but not yet imported."""

    name: str
    distribution: str
    version: str
    builtin: bool
    load: Callable[[], object]


def normalize_distribution(name: str) -> str:
    """Normalise a distribution name as PyPI does: ``Attnkit_Window`` -> ``attnkit-window``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def strict() -> bool:
    """Whether ``ATTNKIT_STRICT_PLUGINS`` asks for failures to raise."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def discover() -> list[PluginSource]:
    """The installed plugins that should load: built-ins first, then the rest by name."""
    sources: dict[tuple[str, str], PluginSource] = {}
    # Reading a distribution's metadata parses its METADATA file: do it once per
    # distribution, not once per entry point and field.
    described: dict[int, tuple[str, str]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry_point.dist
        if id(distribution) not in described:
            metadata = distribution.metadata if distribution is not None else {}
            described[id(distribution)] = (
                metadata.get("Name") or "<unknown>",
                metadata.get("Version") or "?",
            )
        dist_name, version = described[id(distribution)]
        key = (normalize_distribution(dist_name), entry_point.name)
        # The same distribution can be visible twice on sys.path; load it once.
        sources.setdefault(
            key,
            PluginSource(
                name=entry_point.name,
                distribution=dist_name,
                version=version,
                builtin=key[0] == BUILTIN_DISTRIBUTION,
                load=entry_point.load,
            ),
        )
    found = sorted(sources.values(), key=lambda s: (not s.builtin, s.distribution, s.name))
    if not any(source.builtin for source in found):
        warnings.warn(
            "attnkit: the built-in variants were not found through the 'attnkit' entry-point "
            "group, so none of them is registered; is attnkit installed (pip install attnkit, "
            "or pip install -e . in a checkout)?",
            PluginLoadWarning,
            stacklevel=3,
        )
    return _select(found)


def _select(found: list[PluginSource]) -> list[PluginSource]:
    selection = os.environ.get(PLUGINS_ENV)
    if selection is None:
        return found
    wanted = {normalize_distribution(n.strip()) for n in selection.split(",") if n.strip()}
    installed = {normalize_distribution(source.distribution) for source in found}
    third_party = sorted({s.distribution for s in found if not s.builtin})
    for unknown in sorted(wanted - installed):
        warnings.warn(
            f"attnkit: {PLUGINS_ENV} names {unknown!r}, which is not an installed attnkit "
            f"plugin distribution; installed: {', '.join(third_party) or 'none'}",
            PluginLoadWarning,
            stacklevel=4,
        )
    return [
        source
        for source in found
        if source.builtin or normalize_distribution(source.distribution) in wanted
    ]


def report_failure(what: str, stage: str, error: BaseException) -> None:
    """Warn that ``what`` failed while ``stage`` and was skipped, or raise in strict mode."""
    message = f"attnkit: {what} failed {stage}: {type(error).__name__}: {error}"
    if strict():
        raise PluginLoadError(message) from error
    warnings.warn(
        f"{message}. It was skipped; every other plugin loaded. Set {STRICT_ENV}=1 to raise "
        f"instead, or {PLUGINS_ENV} to choose which plugins load.",
        PluginLoadWarning,
        stacklevel=5,
    )


def report_empty(what: str, why: str) -> None:
    """Tell the author that ``what`` loaded but registered nothing, and ``why``; raise if strict."""
    message = f"attnkit: {what} loaded but registered nothing: {why}"
    if strict():
        raise PluginLoadError(message)
    warnings.warn(message, PluginLoadWarning, stacklevel=5)
