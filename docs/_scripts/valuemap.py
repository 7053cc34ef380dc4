"""Heatmaps of signed values (biases, scores) for the "Beyond the four stages" pages.

`attnviz.heatmap` draws attention *weights*, which lie between 0 and 1. Some
pictures in that chapter show other matrices: ALiBi's bias (zero or negative),
RoPE's scores (either sign). `value_heatmap` draws those with a diverging
colour map centred on zero, in the same style as `attnviz` (inline SVG, text in
the page's colour, a transparent background, hatched cells where a query may
not look), so that both kinds of figure sit side by side on a page.
"""

from __future__ import annotations

import html
import io
import itertools
import re
from collections.abc import Sequence

import matplotlib
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["value_heatmap"]

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
) -> str:
    """An HTML ``<figure>`` with one panel per ``(rows, columns)`` matrix of signed values.

    Zero is white-ish, positive values red, negative values blue, on one scale
    shared by every panel (``-m`` to ``m``, ``m`` the largest magnitude shown).

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
    number = next(_figure_ids)

    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": f"attnkit-valuemap-{number}"}):
        cell, left, right, gap, bottom = 0.5, 1.25, 0.15, 1.2, 0.1
        top = 1.05 + (0.3 if titles else 0.0)
        side_x, side_y = cell * width, cell * height
        figure_width = left + count * side_x + (count - 1) * gap + right
        figure_height = top + side_y + bottom
        figure = Figure(figsize=(figure_width, figure_height))
        figure.subplots_adjust(
            left=left / figure_width,
            right=1 - right / figure_width,
            bottom=bottom / figure_height,
            top=1 - top / figure_height,
            wspace=gap / side_x,
        )
        axes = figure.subplots(1, count, squeeze=False)[0]
        cmap = matplotlib.colormaps["RdBu_r"]
        for index, ax in enumerate(axes):
            for i in range(height):
                for j in range(width):
                    if hidden[i, j]:
                        ax.add_patch(
                            Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////", lw=0)
                        )
                        continue
                    value = float(panels[index, i, j])
                    shade = 0.5 + 0.5 * value / largest if largest else 0.5
                    red, green, blue, _ = colour = cmap(shade)
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=colour, lw=0))
                    light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
                    text = f"{value:.{decimals}f}".replace("-", "\u2212")
                    if text.lstrip("\u2212").strip("0.") == "":
                        text = text.lstrip("\u2212")  # no "minus zero"
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
        f'data-panels="{count}" data-masked-cells="{int(hidden.sum()) * count}">\n{svg}\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )
