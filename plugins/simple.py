"""Stage 1: simplified self-attention, with no trainable weights.

Each token's context vector is a weighted sum of all the token embeddings,
weighted by how similar each is to it:

$$
\\omega_{ij} = x^{(i)} \\cdot x^{(j)}, \\qquad
\\alpha_{ij} = \\frac{\\exp \\omega_{ij}}{\\sum_{j'} \\exp \\omega_{ij'}}, \\qquad
z^{(i)} = \\sum_j \\alpha_{ij}\\, x^{(j)}
$$
"""

from __future__ import annotations

import torch

import attnkit


class SimplifiedSelfAttention(attnkit.Attention):
    """Self-attention with no weights: dot-product scores, softmax, weighted sum of the inputs.

    Takes no arguments and accepts embeddings of any width; the context vectors
    have the width of the inputs.

    Examples:
        >>> import attnkit, torch
        >>> inputs = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66]])
        >>> attention = attnkit.create("simple")
        >>> context, weights = attention(inputs, need_weights=True)
        >>> weights
        tensor([[[0.5113, 0.4887],
                 [0.3680, 0.6320]]])
    """

    name = "simple"
    stage = 1
    causal = False

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self, x: torch.Tensor, need_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d)`` -> context ``(batch, tokens, d)``, weights ``(batch, 1, tokens, tokens)``."""  # noqa: E501
        # Scores in at least float32: in float16 the dot products of wide inputs overflow.
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        scores = wide @ wide.transpose(1, 2)
        weights = torch.softmax(scores, dim=-1).to(x.dtype)
        context = weights @ x
        return (context, weights.unsqueeze(1)) if need_weights else context


@attnkit.hookimpl
def register_variants(register):
    register(SimplifiedSelfAttention)
