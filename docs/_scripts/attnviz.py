"""Attention-weight heatmaps for the documentation, drawn with matplotlib as inline SVG.

The executed examples on the stage pages call `heatmap` with the weights attnkit
returned, and print the HTML it gives back. The SVG is inlined in the page (not an
``<img>``) so that its text and lines can take the page's text colour: they are
drawn in a placeholder colour that is then replaced by ``currentColor``, which
reads well in light and dark mode alike. The background is transparent.
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

__all__ = ["TOKENS", "heatmap"]

TOKENS = ["Your", "journey", "starts", "with", "one", "step"]
"""The example sentence the stage pages use, one token per embedding."""

# Drawn in this colour, then swapped for the page's text colour (currentColor).
_INK = "#0a0b0c"
_CMAP = "viridis"
_figure_ids = itertools.count(1)

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


def heatmap(
    weights: torch.Tensor,
    tokens: Sequence[str] = TOKENS,
    *,
    caption: str,
    titles: Sequence[str] | None = None,
    mask: torch.Tensor | None = None,
) -> str:
    """An HTML ``<figure>`` with one heatmap panel per ``(tokens, tokens)`` matrix.

    Args:
        weights: ``(tokens, tokens)`` for one panel, or ``(panels, tokens, tokens)``,
            e.g. one panel per head. Row ``i`` holds the weights of query ``i``.
        tokens: Axis labels, one per token.
        caption: The figure's caption (plain text).
        titles: One title per panel.
        mask: Boolean ``(tokens, tokens)``, True where a query may not look; those
            cells are hatched rather than coloured.
    """
    panels = weights.detach().to("cpu", torch.float64)
    if panels.dim() == 2:
        panels = panels.unsqueeze(0)
    count, rows, columns = panels.shape
    if rows != len(tokens) or columns != len(tokens):
        expected = f"({len(tokens)}, {len(tokens)})"
        raise ValueError(f"expected {expected} weights, got {tuple(panels.shape)}")
    if titles is not None and len(titles) != count:
        raise ValueError(f"expected {count} titles, got {len(titles)}")
    if mask is None:
        mask = torch.zeros(rows, columns, dtype=torch.bool)
    hidden = mask.detach().cpu().bool()
    number = next(_figure_ids)

    # The salt makes the ids inside each SVG unique on a page that inlines several.
    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": f"attnkit-heatmap-{number}"}):
        # A fixed layout (inches), computed once: cheaper than a layout engine's extra draw.
        cell, left, right, gap, bottom = 0.42, 1.05, 0.15, 1.2, 0.1
        top = 1.05 + (0.3 if titles else 0.0)
        side = cell * columns
        width = left + count * side + (count - 1) * gap + right
        height = top + side + bottom
        figure = Figure(figsize=(width, height))
        figure.subplots_adjust(
            left=left / width,
            right=1 - right / width,
            bottom=bottom / height,
            top=1 - top / height,
            wspace=gap / side,
        )
        axes = figure.subplots(1, count, squeeze=False)
        largest = float(panels.max())
        for index, ax in enumerate(axes[0]):
            title = titles[index] if titles else None
            _panel(ax, panels[index], tokens, hidden, largest, title)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", transparent=True, metadata={"Date": None})

    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and doctype
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)
    # An inline SVG's <style> applies to the whole page; matplotlib's only sets line joins.
    svg = re.sub(r"\s*<style[^>]*>.*?</style>", "", svg, flags=re.DOTALL)
    # Several figures share a page: keep their element ids (and references to them) apart.
    prefix = f"heatmap-{number}-"
    svg = re.sub(r'\b(id="|url\(#|href="#)', rf"\g<1>{prefix}", svg)
    svg = svg.replace(_INK, "currentColor")
    label = html.escape(caption, quote=True)
    svg = re.sub(r"^<svg ", f'<svg role="img" aria-label="{label}" ', svg, count=1)
    return (
        f'<figure class="attnkit-heatmap" id="heatmap-{number}" data-panels="{count}" '
        f'data-masked-cells="{int(hidden.sum()) * count}">\n{svg}\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


def _panel(ax, weights, tokens, hidden, top, title) -> None:
    # Each cell is a vector rectangle (imshow would embed a tiny PNG the browser blurs).
    cmap = matplotlib.colormaps[_CMAP]
    for (i, j), value in _cells(weights):
        if hidden[i, j]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////", linewidth=0))
            continue
        red, green, blue, _ = colour = cmap(value / top if top else 0.0)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=colour, linewidth=0))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ax.text(
            j, i, f"{value:.2f}", ha="center", va="center", fontsize=8.5,
            color="#1a1a1a" if light else "#ffffff",
        )  # fmt: skip
    size = len(tokens)
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)  # first token at the top, as in the matrix
    ax.set_aspect("equal")
    ax.set_xticks(range(size), tokens, rotation=40, ha="left", rotation_mode="anchor")
    ax.set_yticks(range(size), tokens)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("keys: the tokens looked at")
    ax.set_ylabel("queries: the tokens looking")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, pad=8, fontweight="bold")


def _cells(weights: torch.Tensor):
    rows, columns = weights.shape
    for i in range(rows):
        for j in range(columns):
            yield (i, j), float(weights[i, j])
