"""The shapes of a page's tensors, printed after each step that changes them.

A stage page runs its examples in one markdown-exec session; after a block that
creates or reshapes tensors, a hidden block prints ``shapes(globals())``: one line
with every tensor of the session that is new or has a new shape since the
previous call, and the shape a reshaped one had before. The shapes are read from
the tensors themselves, never typed. Names that start with ``_`` are skipped, so
a hidden block's own tensors (a published matrix to compare with) stay out.
"""

from __future__ import annotations

import html
from collections.abc import MutableMapping
from typing import Any

import torch

__all__ = ["shapes"]

_SEEN = "__attnkit_shapes_seen__"


def shapes(namespace: MutableMapping[str, Any]) -> str:
    """HTML: one line with the session's new or reshaped tensors and their shapes.

    When no tensor changed since the previous call, the line lists them all.

    Args:
        namespace: The session's globals (``globals()`` in an executed block).
    """
    seen: dict[str, tuple[int, ...]] = namespace.setdefault(_SEEN, {})
    tensors = {
        name: tuple(value.shape)
        for name, value in namespace.items()
        if isinstance(value, torch.Tensor) and not name.startswith("_")
    }
    changed = [name for name, shape in tensors.items() if seen.get(name) != shape]
    items = []
    for name in changed or list(tensors):
        item = f"<code>{html.escape(name)}</code> {_shape(tensors[name])}"
        before = seen.get(name)
        if before is not None and before != tensors[name]:
            item += f" <em>(was {_shape(before)})</em>"
        items.append(f'<span class="attnkit-shape">{item}</span>')
    seen.clear()
    seen.update(tensors)
    label = "Shapes, new or changed:" if changed else "Shapes, unchanged:"
    return (
        f'<p class="attnkit-shapes"><strong>{label}</strong> ' + " &middot; ".join(items) + "</p>"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return html.escape(f"({shape[0]},)" if len(shape) == 1 else str(shape))
