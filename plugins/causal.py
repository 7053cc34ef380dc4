"""Stage 3: causal self-attention, with dropout on the attention weights.

A mask hides every later token from each query, so position $i$ mixes only
positions $j \\le i$; this is what lets a model generate text one token at a
time. Masked scores are set to $-\\infty$ before the softmax, which makes their
weights exactly 0 while each row still sums to 1:

$$
Z = \\operatorname{dropout}\\!\\left(\\operatorname{softmax}\\!\\left(
\\frac{Q K^\\top}{\\sqrt{d_k}} + M\\right)\\right) V,
\\qquad M_{ij} = \\begin{cases} 0 & j \\le i \\\\ -\\infty & j > i \\end{cases}
$$
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

import attnkit
from attnkit.interface import check_dropout, check_flag, ignore_saved_mask
from attnkit.masks import causal, padding
from attnkit_builtins.kernels import choose_kernel, weights_kernel


class CausalAttention(attnkit.Attention):
    """Causal self-attention: each token attends only to itself and earlier tokens.

    The attention itself is computed by a kernel: by default ``"sdpa"``,
    PyTorch's fused ``scaled_dot_product_attention``; ``kernel="explicit"`` writes
    out every step (scores, mask, softmax, dropout, weighted sum), and runs
    whenever the weights are asked for. Both give the same numbers.

    Args:
        d_in: Width of the input embeddings.
        d_out: Width of the queries, keys, values and context vectors.
        context_length: The most tokens a forward pass accepts.
        dropout: Probability of zeroing each attention weight while training.
        qkv_bias: Give the three projections a bias.
        kernel: The name of a registered kernel (`attnkit.list_kernels`), or an
            `attnkit.Kernel`.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``, created first.
        W_key: ``nn.Linear(d_in, d_out)``, created second.
        W_value: ``nn.Linear(d_in, d_out)``, created third.

    Examples:
        >>> import attnkit, torch
        >>> attention = attnkit.create("causal", d_in=3, d_out=2, context_length=4)
        >>> _, weights = attention(torch.rand(4, 3), need_weights=True)
        >>> (weights[0] > 0).int()
        tensor([[1, 0, 0, 0],
                [1, 1, 0, 0],
                [1, 1, 1, 0],
                [1, 1, 1, 1]], dtype=torch.int32)
    """

    name = "causal"
    stage = 3
    causal = True
    capabilities = frozenset({"attention_mask", "kv_cache", "weights"})

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
        kernel: str | attnkit.Kernel = "sdpa",
    ) -> None:
        super().__init__(d_in=d_in, d_out=d_out, context_length=context_length)
        check_dropout(dropout, type(self).__name__)
        check_flag(qkv_bias, "qkv_bias", type(self).__name__)
        self.kernel = choose_kernel(kernel, type(self).__name__)
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # The causal mask follows from positions; checkpoints saved with it still load.
        self._register_load_state_dict_pre_hook(ignore_saved_mask)

    @classmethod
    def kv_cache_elements(cls, arguments: Mapping[str, Any], tokens: int) -> int:
        """A key and a value, ``d_out`` wide, per token."""
        return 2 * arguments["d_out"] * tokens

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        attention_mask: torch.Tensor | None = None,
        cache: attnkit.KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d_in)`` -> context ``(batch, tokens, d_out)``, weights ``(batch, 1, tokens, past + tokens)``."""  # noqa: E501
        queries = self.W_query(x).unsqueeze(1)  # one head: (batch, 1, tokens, d_out)
        keys = self.W_key(x).unsqueeze(1)
        values = self.W_value(x).unsqueeze(1)
        if cache is not None:
            keys, values = cache.append(keys, values, capacity=self.context_length)
        mask = causal() if attention_mask is None else causal() & padding(attention_mask)
        kernel = weights_kernel(self.kernel) if need_weights else self.kernel
        context, weights = kernel(
            queries,
            keys,
            values,
            mask=mask,
            dropout_p=self.dropout.p,
            training=self.training,
            need_weights=need_weights,
        )
        context = context.squeeze(1)
        return (context, weights) if need_weights else context


@attnkit.hookimpl
def register_variants(register):
    register(CausalAttention)
