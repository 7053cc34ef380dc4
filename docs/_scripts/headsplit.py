"""The head split of stage 4, drawn from the page's own tensors as an inline SVG.

`MultiHeadAttention` projects the input to ``(batch, tokens, d_out)``, then
``view`` cuts the last axis into ``num_heads`` blocks of ``head_dim`` columns
and ``transpose(1, 2)`` moves the heads in front of the tokens. `head_split`
draws the three tensors the page computed, for the first sequence of the batch:
the projection with its columns tinted by the head they go to, the same numbers
grouped by ``view``, and one ``(tokens, head_dim)`` matrix per head after
``transpose``. Every number in the figure is read from those tensors, and the
figure checks that each head's matrix is its block of columns.

Text and lines are drawn in ``currentColor``, so the figure follows the page's
light or dark scheme; the head tints are translucent for the same reason.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence

import torch

__all__ = ["head_split"]

# One tint per head (the site's indigo and deep orange first), drawn translucent.
_TINTS = ["#3f51b5", "#ff7043", "#009688", "#9c27b0", "#fbc02d", "#607d8b"]
_CELL_W, _CELL_H = 56, 28
_FONT = 14  # the numbers and labels, in the SVG's own units
_LABEL_W = 74  # room for the token labels left of the first panel
_ARROW_W = 150
_TOP = 92  # titles and column labels above the grids
_figure_ids = itertools.count(1)


def head_split(
    projected: torch.Tensor,
    split: torch.Tensor,
    heads_first: torch.Tensor,
    tokens: Sequence[str],
    *,
    caption: str,
) -> str:
    """An HTML ``<figure>``: ``projected`` -> ``view`` -> ``transpose``, for batch item 0.

    Args:
        projected: ``(batch, tokens, d_out)``, e.g. ``W_query(x)``.
        split: ``projected.view(batch, tokens, num_heads, head_dim)``.
        heads_first: ``split.transpose(1, 2)``, ``(batch, num_heads, tokens, head_dim)``.
        tokens: One label per token.
        caption: The figure's caption (plain text).

    Raises:
        ValueError: The three tensors are not one split of the same numbers.
    """
    batch, count, width = projected.shape
    _, heads, _, head_dim = heads_first.shape
    if split.shape != (batch, count, heads, head_dim) or heads * head_dim != width:
        raise ValueError(
            f"expected split {(batch, count, heads, head_dim)} of projected "
            f"{tuple(projected.shape)}, got {tuple(split.shape)}"
        )
    if len(tokens) != count:
        raise ValueError(f"expected {count} token labels, got {len(tokens)}")
    for head in range(heads):
        block = projected[..., head * head_dim : (head + 1) * head_dim]
        if not (torch.equal(heads_first[:, head], block) and torch.equal(split[:, :, head], block)):
            raise ValueError(f"head {head + 1} is not columns {head * head_dim}.. of projected")
    values = projected[0].detach().cpu()
    number = next(_figure_ids)
    parts: list[str] = []

    # Panel 1: the projection, (tokens, d_out), columns tinted by head.
    x1 = _LABEL_W
    shapes = (
        f"(tokens {count}, d_out {width})",
        f"(tokens {count}, heads {heads}, head_dim {head_dim})",
        f"(heads {heads}, tokens {count}, head_dim {head_dim})",
    )
    parts.append(_title(x1 + width * _CELL_W / 2, "projected", shapes[0]))
    for column in range(width):
        left = x1 + column * _CELL_W
        parts.append(_text(left + _CELL_W / 2, _TOP - 8, f"col {column}", _FONT - 2, 0.75))
    for row in range(count):
        top = _TOP + row * _CELL_H
        parts.append(_text(x1 - 8, top + _CELL_H / 2, tokens[row], _FONT, anchor="end"))
        for column in range(width):
            head = column // head_dim
            parts.append(_cell(x1 + column * _CELL_W, top, head, values[row, column]))
    parts.append(_frame(x1, _TOP, width * _CELL_W, count * _CELL_H))
    x1_end = x1 + width * _CELL_W

    # Arrow: view.
    parts.append(_arrow(x1_end, f".view(b, t, {heads}, {head_dim})", "split the columns"))

    # Panel 2: (tokens, heads, head_dim): per token, one group of head_dim numbers per head.
    gap = 10
    x2 = x1_end + _ARROW_W
    group = head_dim * _CELL_W
    panel2 = heads * group + (heads - 1) * gap
    parts.append(_title(x2 + panel2 / 2, "after view", shapes[1]))
    for head in range(heads):
        left = x2 + head * (group + gap)
        parts.append(_text(left + group / 2, _TOP - 8, f"head {head + 1}", _FONT - 2, 0.75))
        for row in range(count):
            for k in range(head_dim):
                value = split[0, row, head, k]
                parts.append(_cell(left + k * _CELL_W, _TOP + row * _CELL_H, head, value))
        parts.append(_frame(left, _TOP, group, count * _CELL_H))
    x2_end = x2 + panel2

    # Arrow: transpose.
    parts.append(_arrow(x2_end, ".transpose(1, 2)", "heads before tokens"))

    # Panel 3: (heads, tokens, head_dim): one matrix per head, stacked.
    x3 = x2_end + _ARROW_W
    stack_gap = 30
    parts.append(_title(x3 + group / 2, "after transpose", shapes[2]))
    for head in range(heads):
        top = _TOP + head * (count * _CELL_H + stack_gap)
        if head:
            parts.append(_text(x3 + group / 2, top - 10, f"head {head + 1}", _FONT - 2, 0.75))
        else:
            parts.append(_text(x3 + group / 2, _TOP - 8, "head 1", _FONT - 2, 0.75))
        for row in range(count):
            for k in range(head_dim):
                value = heads_first[0, head, row, k]
                parts.append(_cell(x3 + k * _CELL_W, top + row * _CELL_H, head, value))
        parts.append(_frame(x3, top, group, count * _CELL_H))
    # The last panel is narrow: leave room for its title, which is centred on it.
    title_half = 0.62 * (_FONT - 1) * len(shapes[2]) / 2  # a monospace character's width
    total_w = x3 + group / 2 + max(group / 2, title_half) + 4
    total_h = _TOP + heads * count * _CELL_H + (heads - 1) * stack_gap + 10
    label = html.escape(caption, quote=True)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total_w:.0f} {total_h:.0f}" '
        f'width="{total_w:.0f}" height="{total_h:.0f}" role="img" aria-label="{label}" '
        # Scaled down to the page's width, but no further than the numbers stay legible:
        # on a phone, the figure scrolls sideways in its own box instead.
        f'style="max-width: 100%; min-width: {0.6 * total_w:.0f}px; height: auto; '
        f'font-family: var(--md-code-font-family, monospace)">\n'
        f'<defs><marker id="headsplit-{number}-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M 0 0 L 10 5 L 0 10 z" fill="currentColor"/></marker></defs>\n'
        + "\n".join(parts).replace("MARKER", f"headsplit-{number}-arrow")
        + "\n</svg>"
    )
    return (
        f'<figure class="attnkit-headsplit" id="headsplit-{number}" data-heads="{heads}" '
        f'data-head-dim="{head_dim}">\n<div style="overflow-x: auto">\n{svg}\n</div>\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


def _cell(x: float, y: float, head: int, value: torch.Tensor | float) -> str:
    tint = _TINTS[head % len(_TINTS)]
    return (
        f'<rect x="{x}" y="{y}" width="{_CELL_W}" height="{_CELL_H}" fill="{tint}" '
        f'fill-opacity="0.28" stroke="currentColor" stroke-opacity="0.25"/>'
        + _text(x + _CELL_W / 2, y + _CELL_H / 2, f"{float(value):.2f}", _FONT)
    )


def _frame(x: float, y: float, width: float, height: float) -> str:
    return (
        f'<rect x="{x}" y="{y}" width="{width}" height="{height}" fill="none" '
        f'stroke="currentColor" stroke-width="1.2"/>'
    )


def _text(
    x: float, y: float, text: str, size: int, opacity: float = 1.0, anchor: str = "middle"
) -> str:
    faded = f' fill-opacity="{opacity}"' if opacity != 1.0 else ""
    return (
        f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" '
        f'dominant-baseline="central" fill="currentColor"{faded}>{html.escape(text)}</text>'
    )


def _title(x: float, title: str, shape: str) -> str:
    return (
        f'<text x="{x}" y="18" font-size="{_FONT + 1}" font-weight="bold" text-anchor="middle" '
        f'fill="currentColor">{html.escape(title)}</text>'
        f'<text x="{x}" y="40" font-size="{_FONT - 1}" text-anchor="middle" '
        f'fill="currentColor">{html.escape(shape)}</text>'
    )


def _arrow(x: float, code: str, note: str) -> str:
    y = _TOP + 3 * _CELL_H
    return (
        f'<line x1="{x + 10}" y1="{y}" x2="{x + _ARROW_W - 10}" y2="{y}" stroke="currentColor" '
        f'stroke-width="1.5" marker-end="url(#MARKER)"/>'
        + _text(x + _ARROW_W / 2, y - 16, code, _FONT - 1)
        + _text(x + _ARROW_W / 2, y + 16, note, _FONT - 2, 0.75)
    )
