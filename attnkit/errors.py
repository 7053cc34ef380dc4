"""The exceptions and warnings attnkit raises, for users to catch.

Every message says what was wrong, what was expected and, where there is a
choice, what is available.
"""

from __future__ import annotations

__all__ = [
    "AttnkitError",
    "DuplicateKernelError",
    "DuplicateVariantError",
    "InvalidVariantError",
    "PluginError",
    "PluginLoadError",
    "PluginLoadWarning",
    "UnknownKernelError",
    "UnknownVariantError",
]


class AttnkitError(Exception):
    """Base class of every error attnkit raises on purpose."""


class UnknownVariantError(AttnkitError, KeyError):
    """No variant is registered under the requested name.

    A `KeyError`, so ``except KeyError`` works as it does for a dict; unlike a
    plain `KeyError`, its message is shown as written, not quoted.
    """

    def __init__(self, message: str, name: str, available: list[str]) -> None:
        super().__init__(message)
        self.name = name
        self.available = available

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownKernelError(UnknownVariantError):
    """No kernel is registered under the requested name (a `KeyError` too)."""


class DuplicateVariantError(AttnkitError, ValueError):
    """Two plugins tried to register variants under one name."""


class DuplicateKernelError(AttnkitError, ValueError):
    """Two plugins tried to register kernels under one name."""


class InvalidVariantError(AttnkitError, TypeError):
    """Something that is not a usable `attnkit.Attention` subclass was registered."""


class PluginError(AttnkitError, RuntimeError):
    """A plugin used the registry in a way that cannot work.

    For example, it called ``attnkit.registry.reload_plugins()`` from its hook while
    plugins were loading, or called its ``register`` callback after its hook had
    returned.
    """


class PluginLoadError(AttnkitError, RuntimeError):
    """A plugin failed to load while strict loading was on.

    The original exception is chained as ``__cause__``.
    """


class PluginLoadWarning(UserWarning):
    """A plugin failed to load and was skipped; every other plugin still loaded."""
