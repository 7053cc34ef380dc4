"""Heatmap panels drawn with matplotlib and inlined as SVG: what attnviz and valuemap share.

`heatmap_svg` draws one or more ``(rows, columns)`` matrices side by side, one
vector rectangle and one printed number a cell, hatches the cells a query may not
look at, and draws a colour bar to the right of the panels. How values map to
colours, and how the colour bar is labelled, is the caller's `ColourScale`:
attnviz's fixed 0-to-1 scale for attention weights, valuemap's signed scale.
`as_panels` checks the matrices and labels a caller was given.

The SVG is meant to be inlined in the page (not an ``<img>``), so that its text
and lines can take the page's text colour: they are drawn in a placeholder colour
that is then replaced by ``currentColor``, which reads well in light and dark mode
alike. The background is transparent.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["KEYS_AXIS", "QUERIES_AXIS", "ColourScale", "as_panels", "heatmap_svg"]

KEYS_AXIS = "keys: the tokens looked at"
"""The usual label of the columns' axis."""
QUERIES_AXIS = "queries: the tokens looking"
"""The usual label of the rows' axis."""

# Drawn in this colour, then swapped for the page's text colour (currentColor).
_INK = "#0a0b0c"
_STYLE = {
    "svg.fonttype": "none",  # text stays text: crisp, searchable, styled by the page
    "font.size": 10,
    "text.color": _INK,
    "axes.labelcolor": _INK,
    "axes.edgecolor": _INK,
    "xtick.color": _INK,
    "ytick.color": _INK,
    "hatch.color": _INK,
    "hatch.linewidth": 0.6,
}
# The figure's fixed layout, in inches, computed once: cheaper than a layout engine's
# extra draw. The panel size (cell), the room for the row labels (left) and for the
# colour bar's labels (bar_labels) are the caller's.
_RIGHT, _GAP, _BOTTOM = 0.15, 1.2, 0.1
_BAR_GAP, _BAR_WIDTH = 0.3, 0.16  # after the last panel, the colour bar


@dataclass(frozen=True)
class ColourScale:
    """How values are coloured, and how the colour bar beside the panels reads."""

    norm: Normalize
    cmap: str
    ticks: tuple[float, ...]
    """The values the colour bar is labelled at."""
    tick_labels: tuple[str, ...]
    """How those values are printed, one per tick."""
    label: str
    """What the values are, written along the colour bar."""

    def colours(self, value: float) -> tuple[str, str]:
        """The fill of a cell holding ``value``, and the colour of its printed number."""
        red, green, blue, _ = matplotlib.colormaps[self.cmap](self.norm(value))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        return to_hex((red, green, blue)), "#1a1a1a" if light else "#ffffff"


def as_panels(
    values: torch.Tensor,
    rows: Sequence[str],
    columns: Sequence[str],
    titles: Sequence[str] | None,
    *,
    what: str,
) -> torch.Tensor:
    """``values`` as ``(panels, rows, columns)`` float64 on the CPU, checked against the labels.

    Args:
        values: ``(rows, columns)`` for one panel, or ``(panels, rows, columns)``.
        rows: Labels of the rows.
        columns: Labels of the columns.
        titles: One title per panel, or None.
        what: What the values are, for the error message, e.g. ``weights``.

    Raises:
        ValueError: The shape does not match the labels, or the titles the panels.
    """
    panels = values.detach().to("cpu", torch.float64)
    if panels.dim() == 2:
        panels = panels.unsqueeze(0)
    count, height, width = panels.shape
    if height != len(rows) or width != len(columns):
        expected = f"({len(rows)}, {len(columns)})"
        raise ValueError(f"expected {expected} {what}, got {tuple(panels.shape)}")
    if titles is not None and len(titles) != count:
        raise ValueError(f"expected {count} titles, got {len(titles)}")
    return panels


def heatmap_svg(
    panels: torch.Tensor,
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    hidden: torch.Tensor,
    scale: ColourScale,
    cell_text: Callable[[float], str],
    titles: Sequence[str] | None,
    xlabel: str,
    ylabel: str,
    caption: str,
    ident: str,
    cell: float,
    left: float,
    bar_labels: float,
) -> str:
    """An inline ``<svg>``: one heatmap panel per matrix of ``panels``, and a colour bar.

    Args:
        panels: ``(panels, rows, columns)`` values.
        rows: Labels of the rows, top to bottom.
        columns: Labels of the columns, left to right.
        hidden: Boolean ``(rows, columns)``, True for the cells drawn hatched instead.
        scale: The colours of the cells and the colour bar.
        cell_text: How a cell's value is printed in it.
        titles: One title per panel, or None.
        xlabel: The columns' axis label.
        ylabel: The rows' axis label.
        caption: The figure's caption, the SVG's accessible label (plain text).
        ident: The figure's id on the page, e.g. ``heatmap-3``: it prefixes every
            id inside the SVG, so that the figures of one page keep theirs apart.
        cell: The side of a cell, in inches.
        left: The room for the row labels, in inches.
        bar_labels: The room for the colour bar's labels, in inches.
    """
    count, height, width = panels.shape
    # The salt makes the ids inside each SVG unique on a page that inlines several.
    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": f"attnkit-{ident}"}):
        top = 1.05 + (0.3 if titles else 0.0)
        side_x, side_y = cell * width, cell * height
        panels_width = count * side_x + (count - 1) * _GAP
        figure_width = left + panels_width + _BAR_GAP + _BAR_WIDTH + bar_labels + _RIGHT
        figure_height = top + side_y + _BOTTOM
        figure = Figure(figsize=(figure_width, figure_height))
        figure.subplots_adjust(
            left=left / figure_width,
            right=(left + panels_width) / figure_width,
            bottom=_BOTTOM / figure_height,
            top=1 - top / figure_height,
            wspace=_GAP / side_x,
        )
        axes = figure.subplots(1, count, squeeze=False)[0]
        for index, ax in enumerate(axes):
            _cells(ax, panels[index], hidden, scale, cell_text)
            _axes(ax, rows, columns, xlabel, ylabel, titles[index] if titles else None)
        bar_left = (left + panels_width + _BAR_GAP) / figure_width
        bar = figure.add_axes(
            (bar_left, _BOTTOM / figure_height, _BAR_WIDTH / figure_width, side_y / figure_height)
        )
        _colorbar(figure, bar, scale)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", transparent=True, metadata={"Date": None})
    return _inline(buffer.getvalue(), ident, caption)


def _cells(ax, values: torch.Tensor, hidden: torch.Tensor, scale: ColourScale, cell_text) -> None:
    # Each cell is a vector rectangle (imshow would embed a tiny PNG the browser blurs).
    height, width = values.shape
    for i in range(height):
        for j in range(width):
            if hidden[i, j]:
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////", linewidth=0)
                )
                continue
            value = float(values[i, j])
            fill, ink = scale.colours(value)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=fill, linewidth=0))
            ax.text(j, i, cell_text(value), ha="center", va="center", fontsize=8.5, color=ink)


def _axes(ax, rows, columns, xlabel: str, ylabel: str, title: str | None) -> None:
    ax.set_xlim(-0.5, len(columns) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row at the top, as in the matrix
    ax.set_aspect("equal")
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="left", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), rows)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, pad=8, fontweight="bold")


def _colorbar(figure: Figure, ax, scale: ColourScale) -> None:
    # Its own id (not "axes_N"): a page's tests count the panels by their axes groups.
    ax.set_gid("colorbar")
    mappable = ScalarMappable(norm=scale.norm, cmap=scale.cmap)
    bar = figure.colorbar(mappable, cax=ax, ticks=scale.ticks)
    bar.solids.set_edgecolor("face")  # no hairlines between the bar's bands
    bar.outline.set_visible(False)
    bar.ax.tick_params(length=3, width=0.6, labelsize=8.5)
    bar.ax.set_yticklabels(scale.tick_labels)
    bar.set_label(scale.label, labelpad=4)


def _inline(svg: str, ident: str, caption: str) -> str:
    """matplotlib's SVG file, made fit to inline in a page beside other figures."""
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and doctype
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)
    # An inline SVG's <style> applies to the whole page; matplotlib's only sets line joins.
    svg = re.sub(r"\s*<style[^>]*>.*?</style>", "", svg, flags=re.DOTALL)
    # Several figures share a page: keep their element ids (and references to them) apart.
    svg = re.sub(r'\b(id="|url\(#|href="#)', rf"\g<1>{ident}-", svg)
    svg = svg.replace(_INK, "currentColor")
    label = html.escape(caption, quote=True)
    return re.sub(r"^<svg ", f'<svg role="img" aria-label="{label}" ', svg, count=1)
