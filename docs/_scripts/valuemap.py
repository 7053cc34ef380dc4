"""Heatmaps of signed values (biases, scores) for the "Beyond the four stages" pages.

`attnviz.heatmap` draws attention *weights*, which lie between 0 and 1. Some
pictures in that chapter show other matrices: ALiBi's bias (zero or negative),
RoPE's scores (either sign). `value_heatmap` draws those with a diverging
colour map centred on zero, drawn by the same code as `attnviz`'s
(docs/_scripts/heatmapsvg.py: inline SVG, text in the page's colour, a
transparent background, hatched cells where a query may not look, a colour bar
beside the panels), so that both kinds of figure sit side by side on a page.

A value map's scale is symmetric, ``-m`` to ``m``, so that zero is always the
neutral middle colour. ``m`` is read from the data (rounded up to a short number)
unless the caller passes ``limit``: figures meant to be compared pass the same
``limit`` and then share one scale. The colour bar is labelled at ``-m``,
``-m/2``, 0, ``m/2`` and ``m``; the figure carries ``data-colorbar="signed"``
and ``data-colorbar-limit``, ``m``.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence

import torch
from heatmapsvg import KEYS_AXIS, QUERIES_AXIS, ColourScale, as_panels, heatmap_svg
from matplotlib.colors import Normalize

__all__ = ["SCALE", "nice_limit", "value_heatmap"]

SCALE = "signed"
"""The ``data-colorbar`` of every value map: a diverging scale, ``-m`` to ``m``, centred on 0."""
_CMAP = "RdBu_r"
# The limits a scale read from the data is rounded up to, times a power of ten: each
# half of them (a tick of the colour bar) is short too.
_NICE = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)

_figure_ids = itertools.count(1)


def value_heatmap(
    values: torch.Tensor,
    rows: Sequence[str],
    columns: Sequence[str] | None = None,
    *,
    caption: str,
    titles: Sequence[str] | None = None,
    mask: torch.Tensor | None = None,
    xlabel: str = KEYS_AXIS,
    ylabel: str = QUERIES_AXIS,
    decimals: int = 2,
    limit: float | None = None,
    bar_label: str = "value",
) -> str:
    """An HTML ``<figure>`` with one panel per ``(rows, columns)`` matrix of signed values.

    Zero is white-ish, positive values red, negative values blue, on one scale
    shared by every panel, ``-m`` to ``m``, drawn as a colour bar to the right of
    the panels. The figure carries ``data-colorbar="signed"`` and
    ``data-colorbar-limit``, ``m``.

    Args:
        values: ``(rows, columns)`` for one panel, or ``(panels, rows, columns)``.
        rows: Labels of the rows, top to bottom.
        columns: Labels of the columns, left to right; ``rows`` if omitted.
        caption: The figure's caption (plain text).
        titles: One title per panel.
        mask: Boolean ``(rows, columns)``, True where a query may not look;
            those cells are hatched and ignored by the colour scale.
        xlabel: The columns' axis label.
        ylabel: The rows' axis label.
        decimals: Digits printed in each cell.
        limit: ``m``, for figures that must share a scale; by default
            `nice_limit` of the largest magnitude shown.
        bar_label: The colour bar's label: what the values are.

    Raises:
        ValueError: The shapes or titles do not match, or a value shown lies
            outside ``-limit`` to ``limit``.
    """
    columns = rows if columns is None else columns
    panels = as_panels(values, rows, columns, titles, what="values per panel")
    count, height, width = panels.shape
    hidden = torch.zeros(height, width, dtype=torch.bool) if mask is None else mask.cpu().bool()
    shown = panels[:, ~hidden]
    largest = float(shown.abs().max()) if shown.numel() else 0.0
    if limit is None:
        limit = nice_limit(largest)
    elif not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    elif largest > limit * (1 + 1e-9):
        raise ValueError(
            f"a value of magnitude {largest:g} lies outside the scale -{limit:g} to {limit:g}; "
            f"pass a limit of at least {largest:g}"
        )
    ticks = (-limit, -limit / 2, 0.0, limit / 2, limit)
    scale = ColourScale(
        norm=Normalize(-limit, limit, clip=True),
        cmap=_CMAP,
        ticks=ticks,
        tick_labels=tuple(_signed(f"{tick:g}") for tick in ticks),
        label=bar_label,
    )
    number = next(_figure_ids)
    svg = heatmap_svg(
        panels,
        rows,
        columns,
        hidden=hidden,
        scale=scale,
        cell_text=lambda value: _signed(f"{value:.{decimals}f}"),
        titles=titles,
        xlabel=xlabel,
        ylabel=ylabel,
        caption=caption,
        ident=f"valuemap-{number}",
        cell=0.5,
        left=1.25,
        bar_labels=0.8,
    )
    return (
        f'<figure class="attnkit-heatmap attnkit-valuemap" id="valuemap-{number}" '
        f'data-panels="{count}" data-masked-cells="{int(hidden.sum()) * count}" '
        f'data-colorbar="{SCALE}" data-colorbar-limit="{limit:g}">\n{svg}\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


def nice_limit(largest: float) -> float:
    """The scale's ``m`` for values up to ``largest`` in magnitude: the next short number.

    One of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten, at least ``largest``
    (1 when ``largest`` is 0), so that the colour bar's labels stay short.

    Examples:
        >>> nice_limit(1.25), nice_limit(0.9), nice_limit(4.0), nice_limit(0.0)
        (1.5, 1.0, 4.0, 1.0)
    """
    if not largest > 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(largest))
    for step in _NICE:
        if step * power >= largest * (1 - 1e-9):
            return float(f"{step * power:.12g}")  # 1.5 rather than 1.5000000000000002
    raise AssertionError("unreachable: the last step is ten times the power")


def _signed(text: str) -> str:
    """A number as printed, with a true minus sign and no "minus zero"."""
    text = text.replace("-", "\u2212")
    if text.lstrip("\u2212").strip("0.") == "":
        text = text.lstrip("\u2212")
    return text
