"""The pluggy markers and the hook specification plugins implement.

A plugin is a module (or any object) with functions marked ``@attnkit.hookimpl``.
Installed plugins are found through the ``attnkit`` entry-point group; the
built-in variants and kernels are registered by plugins found the same way. A
plugin may implement either hook or both.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from attnkit.interface import Attention
from attnkit.kernel import Kernel

__all__ = ["hookimpl", "hookspec", "register_kernels", "register_variants"]

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


@hookspec
def register_kernels(register: Callable[[Kernel], Kernel]) -> None:
    """Register attention kernels: call ``register(attnkit.Kernel(name, function))`` for each.

    A kernel is the computation a variant hands its queries, keys, values and
    mask to (see `attnkit.Kernel` for the arguments it takes and returns).
    Variants choose one by name with their ``kernel=`` argument.

    Args:
        register: Adds one `attnkit.Kernel` to the registry under its ``name``. It
            raises `attnkit.DuplicateKernelError` if the name is taken.

    Examples:
        A plugin module registering one kernel:

        ```python
        import attnkit

        def my_kernel(query, key, value, *, mask, scale, dropout_p, training,
                      need_weights, **options):
            \"\"\"Attention computed my way.\"\"\"
            ...
            return context, None

        @attnkit.hookimpl
        def register_kernels(register):
            register(attnkit.Kernel("mine", my_kernel))
        ```
    """
