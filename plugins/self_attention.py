"""Stage 2: self-attention with trainable query, key and value weights.

Three learned projections turn each embedding into a query, a key and a value;
scores are scaled dot products of queries with keys:

$$
Q = X W_q,\\quad K = X W_k,\\quad V = X W_v, \\qquad
Z = \\operatorname{softmax}\\!\\left(\\frac{Q K^\\top}{\\sqrt{d_k}}\\right) V
$$
"""

from __future__ import annotations

import torch
from torch import nn

import attnkit
from attnkit.interface import check_flag
from attnkit.masks import padding
from attnkit_builtins.kernels import choose_kernel, weights_kernel


class SelfAttention(attnkit.Attention):
    """Scaled dot-product self-attention with trainable query, key and value projections.

    Args:
        d_in: Width of the input embeddings.
        d_out: Width of the queries, keys, values and context vectors.
        qkv_bias: Give the three projections a bias.
        kernel: The kernel that computes the attention: ``"sdpa"``, PyTorch's fused
            ``scaled_dot_product_attention``, by default; ``"explicit"`` writes out
            every step (and runs for any call with ``need_weights=True``). Both give
            the same numbers.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``, created first.
        W_key: ``nn.Linear(d_in, d_out)``, created second.
        W_value: ``nn.Linear(d_in, d_out)``, created third.

    Examples:
        Seeded as in the reference chapter, the first context vector of
        "Your journey starts with one step" is the one it publishes:

        >>> import attnkit, torch
        >>> inputs = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64],
        ...                        [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]])
        >>> _ = torch.manual_seed(789)
        >>> attention = attnkit.create("self_attention", d_in=3, d_out=2)
        >>> attention(inputs)[0]
        tensor([-0.0739,  0.0713], grad_fn=<SelectBackward0>)
    """

    name = "self_attention"
    stage = 2
    causal = False
    capabilities = frozenset({"attention_mask", "weights"})

    def __init__(
        self,
        d_in: int,
        d_out: int,
        qkv_bias: bool = False,
        kernel: str | attnkit.Kernel = "sdpa",
    ) -> None:
        super().__init__(d_in=d_in, d_out=d_out)
        check_flag(qkv_bias, "qkv_bias", type(self).__name__)
        self.kernel = choose_kernel(kernel, type(self).__name__)
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d_in)`` -> context ``(batch, tokens, d_out)``, weights ``(batch, 1, tokens, tokens)``."""  # noqa: E501
        queries = self.W_query(x).unsqueeze(1)  # one head: (batch, 1, tokens, d_out)
        keys = self.W_key(x).unsqueeze(1)
        values = self.W_value(x).unsqueeze(1)
        mask = None if attention_mask is None else padding(attention_mask)
        kernel = weights_kernel(self.kernel) if need_weights else self.kernel
        context, weights = kernel(queries, keys, values, mask=mask, need_weights=need_weights)
        context = context.squeeze(1)
        return (context, weights) if need_weights else context


@attnkit.hookimpl
def register_variants(register):
    register(SelfAttention)
