"""Attention-weight heatmaps for the documentation, drawn with matplotlib as inline SVG.

The executed examples on the stage pages call `heatmap` with the weights attnkit
returned, and print the HTML it gives back. The drawing itself, shared with
valuemap's signed maps, is docs/_scripts/heatmapsvg.py: text and lines in the
page's colour, a transparent background.

Every attention-weight figure on the site colours a weight the same way: one fixed
scale from 0 to 1 (`WEIGHT_SCALE`), drawn as a colour bar beside the panels, so
that a colour means the same weight on every page and near-uniform weights look
near-uniform. `scale_heatmap` draws the interactive figure of stage 2 with the
same colours; docs/javascripts/attnkit-scale.js redraws it in the browser.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Sequence

import torch
from heatmapsvg import KEYS_AXIS, QUERIES_AXIS, ColourScale, as_panels, heatmap_svg
from matplotlib.colors import Normalize

__all__ = ["TOKENS", "WEIGHT_SCALE", "heatmap", "scale_heatmap"]

TOKENS = ["Your", "journey", "starts", "with", "one", "step"]
"""The example sentence the stage pages use, one token per embedding."""

_figure_ids = itertools.count(1)

WEIGHT_SCALE = (0.0, 1.0)
"""The colour scale of every attention-weight figure: a weight of 0 to a weight of 1."""
_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
_WEIGHTS = ColourScale(
    norm=Normalize(*WEIGHT_SCALE, clip=True),
    cmap="viridis",
    ticks=_TICKS,
    tick_labels=tuple(f"{tick:g}" for tick in _TICKS),
    label="weight",
)
_SCALE_LABEL = f"{WEIGHT_SCALE[0]:g}-{WEIGHT_SCALE[1]:g}"  # "0-1", for data-colorbar


def heatmap(
    weights: torch.Tensor,
    tokens: Sequence[str] = TOKENS,
    *,
    caption: str,
    titles: Sequence[str] | None = None,
    mask: torch.Tensor | None = None,
) -> str:
    """An HTML ``<figure>`` with one heatmap panel per ``(tokens, tokens)`` matrix.

    The cells are coloured on the fixed scale `WEIGHT_SCALE` (0 to 1), shown by a
    colour bar to the right of the panels; the figure carries
    ``data-colorbar="0-1"``.

    Args:
        weights: ``(tokens, tokens)`` for one panel, or ``(panels, tokens, tokens)``,
            e.g. one panel per head. Row ``i`` holds the weights of query ``i``.
        tokens: Axis labels, one per token.
        caption: The figure's caption (plain text).
        titles: One title per panel.
        mask: Boolean ``(tokens, tokens)``, True where a query may not look; those
            cells are hatched rather than coloured.
    """
    panels = as_panels(weights, tokens, tokens, titles, what="weights")
    count, rows, columns = panels.shape
    if mask is None:
        mask = torch.zeros(rows, columns, dtype=torch.bool)
    hidden = mask.detach().cpu().bool()
    number = next(_figure_ids)
    svg = heatmap_svg(
        panels,
        tokens,
        tokens,
        hidden=hidden,
        scale=_WEIGHTS,
        cell_text=lambda value: f"{value:.2f}",
        titles=titles,
        xlabel=KEYS_AXIS,
        ylabel=QUERIES_AXIS,
        caption=caption,
        ident=f"heatmap-{number}",
        cell=0.42,
        left=1.05,
        bar_labels=0.75,
    )
    return (
        f'<figure class="attnkit-heatmap" id="heatmap-{number}" data-panels="{count}" '
        f'data-masked-cells="{int(hidden.sum()) * count}" data-colorbar="{_SCALE_LABEL}">\n{svg}\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


# The divisors the stage 2 slider offers, in order: (key, label, divisor from d_k).
_DIVISORS = (
    ("1", lambda d_k: "1", lambda d_k: 1.0),
    ("sqrt", lambda d_k: f"√d_k {'=' if (d_k**0.5).is_integer() else '≈'} {d_k**0.5:.3g}",
     lambda d_k: d_k**0.5),
    ("d_k", lambda d_k: f"d_k = {d_k}", lambda d_k: float(d_k)),
)  # fmt: skip


def scale_heatmap(
    scores: torch.Tensor,
    tokens: Sequence[str] = TOKENS,
    *,
    d_k: int,
    caption: str,
) -> str:
    """An interactive ``<figure>``: the weights ``softmax(scores / divisor)`` and a slider.

    The slider picks the divisor: 1, ``sqrt(d_k)`` or ``d_k``. The three weight
    matrices are computed here, at build time, and embedded in the figure as JSON
    (``data-scales``), with each cell's colour on the fixed 0-to-1 scale of
    `heatmap`; docs/javascripts/attnkit-scale.js redraws the cells when the slider
    moves and sets ``data-scale`` (``1``, ``sqrt`` or ``d_k``) on the figure. Without
    the script the figure shows the ``sqrt(d_k)`` weights and the slider stays
    disabled.

    Args:
        scores: ``(tokens, tokens)`` unscaled scores, ``Q K^T``.
        tokens: Axis labels, one per token.
        d_k: The width of the queries and keys.
        caption: The figure's caption (plain text).
    """
    scores = scores.detach().to("cpu", torch.float64)
    size = len(tokens)
    if scores.shape != (size, size):
        raise ValueError(f"expected ({size}, {size}) scores, got {tuple(scores.shape)}")
    number = next(_figure_ids)
    scales = []
    for key, label_of, divisor_of in _DIVISORS:
        divisor = divisor_of(d_k)
        weights = torch.softmax(scores / divisor, dim=-1)
        largest = weights.max(dim=-1).values
        colours = [[_WEIGHTS.colours(float(value)) for value in row] for row in weights]
        scales.append(
            {
                "key": key,
                "label": label_of(d_k),
                "divisor": divisor,
                "weights": [[round(float(value), 4) for value in row] for row in weights],
                "labels": [[f"{float(value):.2f}" for value in row] for row in weights],
                "fills": [[fill for fill, _ in row] for row in colours],
                "inks": [[ink for _, ink in row] for row in colours],
                "summary": (
                    f"Largest weight in a row: {float(largest.min()):.2f} to "
                    f"{float(largest.max()):.2f}; {int((largest > 0.9).sum())} of {size} rows "
                    f"put more than 0.9 on one token."
                ),
            }
        )
    start = 1  # sqrt(d_k), what attention divides by
    shown = scales[start]
    ident = f"scale-heatmap-{number}"
    data = json.dumps({"d_k": d_k, "tokens": list(tokens), "scales": scales})
    ticks = "".join(
        f'<span style="flex:1;text-align:{align}">{html.escape(scale["label"])}</span>'
        for scale, align in zip(scales, ("left", "center", "right"), strict=True)
    )
    controls = (
        f'<div class="attnkit-scale-controls" style="max-width:22rem;margin:0 auto 0.6em">\n'
        f'<label for="{ident}-slider">Divide the scores by '
        f'<output class="attnkit-scale-readout" for="{ident}-slider">{shown["label"]}</output>'
        f"</label>\n"
        f'<input type="range" class="attnkit-scale-slider" id="{ident}-slider" min="0" '
        f'max="{len(scales) - 1}" step="1" value="{start}" disabled '
        f'aria-valuetext="{html.escape(shown["label"])}" '
        f'style="display:block;width:100%;margin:0.4em 0 0">\n'
        f'<div aria-hidden="true" style="display:flex;font-size:0.8em">{ticks}</div>\n'
        f'<p class="attnkit-scale-summary" aria-live="polite" style="margin:0.4em 0 0;'
        f'font-size:0.85em">{html.escape(shown["summary"])}</p>\n'
        f"</div>"
    )
    svg = _scale_svg(shown, tokens, ident, caption)
    return (
        f'<figure class="attnkit-heatmap attnkit-scale-heatmap" id="{ident}" data-panels="1" '
        f'data-masked-cells="0" data-colorbar="{_SCALE_LABEL}" data-d-k="{d_k}" '
        f'data-scale="{shown["key"]}" data-divisor="{shown["divisor"]:g}" '
        f'data-scales="{html.escape(data, quote=True)}">\n'
        f"{controls}\n{svg}\n<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


def _scale_svg(scale: dict, tokens: Sequence[str], ident: str, caption: str) -> str:
    """The slider's heatmap as hand-written SVG: one ``rect`` and one ``text`` a cell."""
    size = len(tokens)
    cell, left, top = 46, 86, 84
    grid = cell * size
    bar_x, bar_width = left + grid + 26, 14
    width, height = bar_x + bar_width + 64, top + grid + 12
    ink = 'fill="currentColor"'
    label = html.escape(caption, quote=True)
    stops = "".join(
        f'<stop offset="{step / 16:g}" stop-color="{_WEIGHTS.colours(step / 16)[0]}"/>'
        for step in range(17)
    )
    parts = [
        f'<svg class="attnkit-scale-svg" role="img" aria-label="{label}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="13">',
        f'<defs><linearGradient id="{ident}-gradient" x1="0" y1="1" x2="0" y2="0">{stops}'
        "</linearGradient></defs>",
        f'<text x="{left + grid / 2}" y="14" text-anchor="middle" {ink}>'
        f"{html.escape(KEYS_AXIS)}</text>",
        f'<text transform="translate(16 {top + grid / 2}) rotate(-90)" text-anchor="middle" {ink}>'
        f"{html.escape(QUERIES_AXIS)}</text>",
    ]
    for j, token in enumerate(tokens):
        x = left + j * cell + cell / 2 - 6
        parts.append(
            f'<text transform="translate({x} {top - 8}) rotate(-40)" {ink}>'
            f"{html.escape(token)}</text>"
        )
    for i, token in enumerate(tokens):
        y = top + i * cell + cell / 2
        parts.append(
            f'<text x="{left - 8}" y="{y}" text-anchor="end" dominant-baseline="central" {ink}>'
            f"{html.escape(token)}</text>"
        )
    for i in range(size):
        for j in range(size):
            x, y = left + j * cell, top + i * cell
            parts.append(
                f'<g class="attnkit-scale-cell" data-row="{i}" data-column="{j}">'
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{scale["fills"][i][j]}"/>'
                f'<text x="{x + cell / 2}" y="{y + cell / 2}" text-anchor="middle" '
                f'dominant-baseline="central" font-size="12" fill="{scale["inks"][i][j]}">'
                f"{scale['labels'][i][j]}</text></g>"
            )
    parts.append(
        f'<g class="attnkit-colorbar"><rect x="{bar_x}" y="{top}" width="{bar_width}" '
        f'height="{grid}" fill="url(#{ident}-gradient)"/>'
    )
    for tick, tick_label in zip(_WEIGHTS.ticks, _WEIGHTS.tick_labels, strict=True):
        y = top + grid * (1 - _WEIGHTS.norm(tick))
        parts.append(
            f'<line x1="{bar_x + bar_width}" y1="{y}" x2="{bar_x + bar_width + 4}" y2="{y}" '
            f'stroke="currentColor" stroke-width="0.8"/>'
            f'<text x="{bar_x + bar_width + 7}" y="{y}" dominant-baseline="central" font-size="11" '
            f"{ink}>{tick_label}</text>"
        )
    parts.append(
        f'<text transform="translate({bar_x + bar_width + 52} {top + grid / 2}) rotate(-90)" '
        f'text-anchor="middle" {ink}>{_WEIGHTS.label}</text></g>'
    )
    parts.append("</svg>")
    return "\n".join(parts)
