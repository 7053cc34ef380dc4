"""The pluggy markers and the hook specification plugins implement.

A plugin is a module (or any object) with functions marked ``@attnkit.hookimpl``.
Installed plugins are found through the ``attnkit`` entry-point group; the
built-in variants are registered by plugins found the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from attnkit.interface import Attention

__all__ = ["hookimpl", "hookspec", "register_variants"]

hookspec = pluggy.HookspecMarker("attnkit")
hookimpl = pluggy.HookimplMarker("attnkit")


@hookspec
def register_variants(register: Callable[[type[Attention]], type[Attention]]) -> None:
    """Register attention variants: call ``register(cls)`` once per `attnkit.Attention` subclass.

    Args:
        register: Adds one variant class to the registry under its ``name``. It
            raises `attnkit.DuplicateVariantError` if the name is taken, and
            `attnkit.InvalidVariantError` if the class is not a usable variant.

    Examples:
        A plugin module registering one variant:

        ```python
        import attnkit

        class MyAttention(attnkit.Attention):
            \"\"\"Attention with my twist.\"\"\"
            name = "mine"
            ...

        @attnkit.hookimpl
        def register_variants(register):
            register(MyAttention)
        ```
    """
