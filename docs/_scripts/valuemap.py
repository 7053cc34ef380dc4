"""Heatmaps of signed values (biases, scores) for the "Beyond the four stages" pages.

`attnviz.heatmap` draws attention *weights*, which lie between 0 and 1. Some
pictures in that chapter show other matrices: ALiBi's bias (zero or negative),
RoPE's scores (either sign). `value_heatmap` draws those with a diverging
colour map centred on zero, in the same style as `attnviz` (inline SVG, text in
the page's colour, a transparent background, hatched cells where a query may
not look, a colour bar beside the panels), so that both kinds of figure sit side
by side on a page.

A value map's scale is symmetric, ``-m`` to ``m``, so that zero is always the
neutral middle colour. ``m`` is read from the data (rounded up to a short number)
unless the caller passes ``limit``: figures meant to be compared pass the same
``limit`` and then share one scale. The colour bar is labelled at ``-m``,
``-m/2``, 0, ``m/2`` and ``m``; the figure carries ``data-colorbar="signed"``
and ``data-colorbar-limit``, ``m``.
"""

from __future__ import annotations

import html
import io
import itertools
import math
import re
from collections.abc import Sequence

import matplotlib
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["SCALE", "nice_limit", "value_heatmap"]

SCALE = "signed"
"""The ``data-colorbar`` of every value map: a diverging scale, ``-m`` to ``m``, centred on 0."""
_CMAP = "RdBu_r"
# The limits a scale read from the data is rounded up to, times a power of ten: each
# half of them (a tick of the colour bar) is short too.
_NICE = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)

# Drawn in this colour, then swapped for the page's text colour (currentColor).
_INK = "#0a0b0c"
_figure_ids = itertools.count(1)

_STYLE = {
    "svg.fonttype": "none",
    "font.size": 10,
    "text.color": _INK,
    "axes.labelcolor": _INK,
    "axes.edgecolor": _INK,
    "xtick.color": _INK,
    "ytick.color": _INK,
    "hatch.color": _INK,
    "hatch.linewidth": 0.6,
}


def value_heatmap(
    values: torch.Tensor,
    rows: Sequence[str],
    columns: Sequence[str] | None = None,
    *,
    caption: str,
    titles: Sequence[str] | None = None,
    mask: torch.Tensor | None = None,
    xlabel: str = "keys: the tokens looked at",
    ylabel: str = "queries: the tokens looking",
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
    panels = values.detach().to("cpu", torch.float64)
    if panels.dim() == 2:
        panels = panels.unsqueeze(0)
    count, height, width = panels.shape
    if height != len(rows) or width != len(columns):
        expected = f"({len(rows)}, {len(columns)})"
        raise ValueError(f"expected {expected} values per panel, got {tuple(panels.shape)}")
    if titles is not None and len(titles) != count:
        raise ValueError(f"expected {count} titles, got {len(titles)}")
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
    norm = Normalize(-limit, limit, clip=True)
    number = next(_figure_ids)

    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": f"attnkit-valuemap-{number}"}):
        cell, left, right, gap, bottom = 0.5, 1.25, 0.15, 1.2, 0.1
        # The colour bar: a gap after the last panel, the bar, then room for its labels.
        bar_gap, bar_width, bar_labels = 0.3, 0.16, 0.8
        top = 1.05 + (0.3 if titles else 0.0)
        side_x, side_y = cell * width, cell * height
        panels_width = count * side_x + (count - 1) * gap
        figure_width = left + panels_width + bar_gap + bar_width + bar_labels + right
        figure_height = top + side_y + bottom
        figure = Figure(figsize=(figure_width, figure_height))
        figure.subplots_adjust(
            left=left / figure_width,
            right=(left + panels_width) / figure_width,
            bottom=bottom / figure_height,
            top=1 - top / figure_height,
            wspace=gap / side_x,
        )
        axes = figure.subplots(1, count, squeeze=False)[0]
        cmap = matplotlib.colormaps[_CMAP]
        for index, ax in enumerate(axes):
            for i in range(height):
                for j in range(width):
                    if hidden[i, j]:
                        ax.add_patch(
                            Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////", lw=0)
                        )
                        continue
                    value = float(panels[index, i, j])
                    red, green, blue, _ = colour = cmap(norm(value))
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=colour, lw=0))
                    light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
                    text = _signed(f"{value:.{decimals}f}")
                    ax.text(
                        j, i, text, ha="center", va="center", fontsize=8.5,
                        color="#1a1a1a" if light else "#ffffff",
                    )  # fmt: skip
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
            ax.set_aspect("equal")
            ax.set_xticks(range(width), columns, rotation=40, ha="left", rotation_mode="anchor")
            ax.set_yticks(range(height), rows)
            ax.xaxis.tick_top()
            ax.xaxis.set_label_position("top")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if titles:
                ax.set_title(titles[index], pad=8, fontweight="bold")
        bar_left = (left + panels_width + bar_gap) / figure_width
        bar = figure.add_axes(
            (bar_left, bottom / figure_height, bar_width / figure_width, side_y / figure_height)
        )
        _colorbar(figure, bar, norm, bar_label)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", transparent=True, metadata={"Date": None})

    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)
    # An inline SVG's <style> applies to the whole page; matplotlib's only sets line joins.
    svg = re.sub(r"\s*<style[^>]*>.*?</style>", "", svg, flags=re.DOTALL)
    prefix = f"valuemap-{number}-"
    svg = re.sub(r'\b(id="|url\(#|href="#)', rf"\g<1>{prefix}", svg)
    svg = svg.replace(_INK, "currentColor")
    label = html.escape(caption, quote=True)
    svg = re.sub(r"^<svg ", f'<svg role="img" aria-label="{label}" ', svg, count=1)
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


def _colorbar(figure: Figure, ax, norm: Normalize, label: str) -> None:
    # Its own id (not "axes_N"): a page's tests count the panels by their axes groups.
    ax.set_gid("colorbar")
    limit = norm.vmax
    ticks = (-limit, -limit / 2, 0.0, limit / 2, limit)
    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=_CMAP), cax=ax, ticks=ticks)
    bar.solids.set_edgecolor("face")  # no hairlines between the bar's bands
    bar.outline.set_visible(False)
    bar.ax.tick_params(length=3, width=0.6, labelsize=8.5)
    bar.ax.set_yticklabels([_signed(f"{tick:g}") for tick in ticks])
    bar.set_label(label, labelpad=4)


def _signed(text: str) -> str:
    """A number as printed, with a true minus sign and no "minus zero"."""
    text = text.replace("-", "\u2212")
    if text.lstrip("\u2212").strip("0.") == "":
        text = text.lstrip("\u2212")
    return text
