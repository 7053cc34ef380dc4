"""Stage 4: multi-head attention, in its efficient form and as a stack of heads.

Each of $h$ heads attends with its own projections, so each can look for a
different kind of relation; their context vectors are concatenated:

$$
\\operatorname{MultiHead}(X) = \\operatorname{concat}(Z_1, \\dots, Z_h)\\, W_o,
\\qquad Z_i = \\operatorname{CausalAttention}_i(X)
$$

`MultiHeadAttentionWrapper` builds this literally, from $h$ separate
`CausalAttention` modules. `MultiHeadAttention` computes the same with one
query, one key and one value projection of width ``d_out``, whose outputs are
split into $h$ heads of width ``d_out / h``: a block of rows of a big
projection matrix is exactly one head's projection, so one large matrix product
replaces $h$ small ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import attnkit
from attnkit.interface import check_dropout, check_flag, check_positive_int, ignore_saved_mask
from attnkit_builtins.causal import CausalAttention
from attnkit_builtins.kernels import choose_kernel, weights_kernel
from attnkit_builtins.options import AttentionOptions


class MultiHeadAttention(attnkit.Attention):
    """Efficient causal multi-head attention: one projection each for Q, K, V, split into heads.

    All heads attend in one call to a kernel: by default ``"sdpa"``, PyTorch's
    fused ``scaled_dot_product_attention``; the explicit one runs when the
    weights are asked for, or always with ``kernel="explicit"``.

    Args:
        d_in: Width of the input embeddings.
        d_out: Width of the output; split into ``num_heads`` heads of ``d_out // num_heads``.
        context_length: The most tokens a forward pass accepts.
        dropout: Probability of zeroing each attention weight while training.
        num_heads: Number of heads; must divide ``d_out``.
        qkv_bias: Give the query, key and value projections a bias.
        kernel: The name of a registered kernel (`attnkit.list_kernels`), or an
            `attnkit.Kernel`.
        rope_base: Rotary position embeddings with this base, or ``None``.
        alibi: ALiBi's per-head linear biases instead of position embeddings.
        qk_norm: RMSNorm on each head's queries and keys.
        softcap: Soft-cap the scores, ``cap * tanh(scores / cap)``, or ``None``.
        window: Attend only to the last ``window`` tokens (itself included), with a
            KV cache that keeps only those; ``None`` for the whole past.
        sinks: Learn one attention-sink logit per head.

    The six options are explained in `attnkit_builtins.options`; all are off by
    default, and the variant is then the chapter's.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``, created first.
        W_key: ``nn.Linear(d_in, d_out)``, created second.
        W_value: ``nn.Linear(d_in, d_out)``, created third.
        out_proj: ``nn.Linear(d_out, d_out)`` with bias, created fourth; mixes the heads.
        options: The `AttentionOptions`, holding the QK-norm and sink parameters if any.

    Examples:
        >>> import attnkit, torch
        >>> attention = attnkit.create(
        ...     "multihead", d_in=768, d_out=768, context_length=1024, num_heads=12
        ... )
        >>> context, weights = attention(torch.rand(2, 10, 768), need_weights=True)
        >>> context.shape, weights.shape
        (torch.Size([2, 10, 768]), torch.Size([2, 12, 10, 10]))
    """

    name = "multihead"
    stage = 4
    causal = True
    capabilities = frozenset({"attention_mask", "position_ids", "kv_cache", "weights"})

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        *,
        num_heads: int,
        qkv_bias: bool = False,
        kernel: str | attnkit.Kernel = "sdpa",
        rope_base: float | None = None,
        alibi: bool = False,
        qk_norm: bool = False,
        softcap: float | None = None,
        window: int | None = None,
        sinks: bool = False,
    ) -> None:
        super().__init__(d_in=d_in, d_out=d_out, context_length=context_length)
        owner = type(self).__name__
        check_dropout(dropout, owner)
        check_positive_int(num_heads, "num_heads", owner)
        check_flag(qkv_bias, "qkv_bias", owner)
        self.kernel = choose_kernel(kernel, owner)
        check_divides(num_heads, d_out, owner)
        self.num_heads = num_heads
        self.num_kv_heads = self.key_value_heads(num_heads)
        self.head_dim = d_out // num_heads
        kv_width = self.num_kv_heads * self.head_dim  # d_out, unless heads share keys
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, kv_width, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, kv_width, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        # What today's LLMs add (RoPE, ALiBi, QK-norm, soft-capping, a window, sinks):
        # all off by default, see attnkit_builtins.options.
        self.options = AttentionOptions(
            owner,
            num_heads=num_heads,
            head_dim=self.head_dim,
            rope_base=rope_base,
            alibi=alibi,
            qk_norm=qk_norm,
            softcap=softcap,
            window=window,
            sinks=sinks,
        )
        self._register_load_state_dict_pre_hook(ignore_saved_mask)

    def key_value_heads(self, num_heads: int) -> int:
        """How many key and value heads the queries' ``num_heads`` heads use: all of them."""
        return num_heads

    @classmethod
    def kv_cache_elements(cls, arguments: Mapping[str, Any], tokens: int) -> int:
        """A key and a value per token and key-value head, for at most ``window`` tokens."""
        kv_heads = arguments.get("num_kv_heads") or arguments["num_heads"]
        width = kv_heads * (arguments["d_out"] // arguments["num_heads"])
        window = arguments.get("window")
        return 2 * width * (tokens if window is None else min(tokens, window))

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: attnkit.KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d_in)`` -> context ``(batch, tokens, d_out)``, weights ``(batch, num_heads, tokens, past + tokens)``.

        With a ``window`` and a cache, the weights cover the keys held, at most
        ``window`` cached tokens and the new ones.
        """  # noqa: E501
        batch, tokens, _ = x.shape
        # (batch, tokens, d_out) -> (batch, num_heads, tokens, head_dim): the split into heads.
        queries, keys, values = self._project(x)
        queries = queries.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
        keys = keys.view(batch, tokens, self.num_kv_heads, self.head_dim).transpose(1, 2)
        values = values.view(batch, tokens, self.num_kv_heads, self.head_dim).transpose(1, 2)
        queries, keys = self.options.queries_and_keys(queries, keys, position_ids)
        if cache is not None:
            keys, values = cache.append(
                keys, values, capacity=self.context_length, window=self.options.window
            )
        mask = self.options.mask(attention_mask, keys.shape[2])  # causal, & padding if given
        kernel = weights_kernel(self.kernel) if need_weights else self.kernel
        context, weights = kernel(
            queries,
            keys,
            values,
            mask=mask,
            dropout_p=self.dropout.p,
            training=self.training,
            need_weights=need_weights,
            **self.options.kernel_options(),
        )
        # Concatenate the heads: (batch, num_heads, tokens, head_dim) -> (batch, tokens, d_out).
        context = context.transpose(1, 2).reshape(batch, tokens, self.d_out)
        context = self.out_proj(context)
        return (context, weights) if need_weights else context

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x @ W_query``, ``x @ W_key``, ``x @ W_value``, each ``(batch, tokens, width)``.

        Computed as one matrix product against the three weights side by side when
        there are enough rows to pay for joining them; the parameters stay three
        separate ``nn.Linear`` modules, so seeded construction is unchanged.
        """
        if x.shape[0] * x.shape[1] < _ONE_PRODUCT_MIN_ROWS:
            return self.W_query(x), self.W_key(x), self.W_value(x)
        projections = (self.W_query, self.W_key, self.W_value)
        weight = torch.cat([p.weight for p in projections])
        bias = None if self.W_query.bias is None else torch.cat([p.bias for p in projections])
        kv_width = self.W_key.out_features
        return F.linear(x, weight, bias).split((self.d_out, kv_width, kv_width), dim=-1)


# Below this many rows (batch x tokens), as when decoding one token at a time, copying
# the three weights into one costs more than the two matrix products it saves.
_ONE_PRODUCT_MIN_ROWS = 64


def check_divides(num_heads: int, d_out: int, owner: str) -> None:
    """Raise `ValueError` unless ``num_heads`` divides ``d_out``, naming nearby head counts.

    Only head counts near the requested one are tried, so the message is instant
    whatever the sizes.

    Examples:
        >>> check_divides(5, 768, "MultiHeadAttention")
        Traceback (most recent call last):
        ...
        ValueError: MultiHeadAttention: d_out (768) must be divisible by num_heads (5); nearby choices: 4, 6, 3, 2
    """  # noqa: E501
    if d_out % num_heads == 0:
        return
    nearby = sorted(range(max(1, num_heads - 32), num_heads + 33), key=lambda h: abs(h - num_heads))
    choices = [h for h in nearby if d_out % h == 0][:4]
    listing = ", ".join(str(h) for h in choices) if choices else "1"
    raise ValueError(
        f"{owner}: d_out ({d_out}) must be divisible by num_heads ({num_heads}); "
        f"nearby choices: {listing}"
    )


class MultiHeadAttentionWrapper(attnkit.Attention):
    """Multi-head attention as a stack of independent causal heads, outputs concatenated.

    Args:
        d_in: Width of the input embeddings.
        d_out: Width of each head; the output is ``num_heads * d_out`` wide.
        context_length: The most tokens a forward pass accepts.
        dropout: Probability of zeroing each attention weight while training.
        num_heads: Number of `CausalAttention` heads.
        qkv_bias: Give each head's projections a bias.
        kernel: The name of a registered kernel, or an `attnkit.Kernel`, for every head.

    Attributes:
        heads: ``nn.ModuleList`` of ``num_heads`` `CausalAttention` modules, created in order.

    Examples:
        >>> import attnkit, torch
        >>> attention = attnkit.create(
        ...     "multihead_wrapper", d_in=3, d_out=2, context_length=6, num_heads=2
        ... )
        >>> attention(torch.rand(2, 6, 3)).shape
        torch.Size([2, 6, 4])
    """

    name = "multihead_wrapper"
    stage = 4
    causal = True
    capabilities = frozenset({"attention_mask", "kv_cache", "weights"})

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        *,
        num_heads: int,
        qkv_bias: bool = False,
        kernel: str | attnkit.Kernel = "sdpa",
    ) -> None:
        super().__init__(d_in=d_in, d_out=d_out, context_length=context_length)
        check_positive_int(num_heads, "num_heads", type(self).__name__)
        check_dropout(dropout, type(self).__name__)
        check_flag(qkv_bias, "qkv_bias", type(self).__name__)
        self.num_heads = num_heads
        self.kernel = choose_kernel(kernel, type(self).__name__)
        self.heads = nn.ModuleList(
            CausalAttention(d_in, d_out, context_length, dropout, qkv_bias, self.kernel)
            for _ in range(num_heads)
        )

    @property
    def output_dim(self) -> int:
        """``num_heads * d_out``: the heads' outputs side by side."""
        return self.num_heads * self.d_out

    @classmethod
    def kv_cache_elements(cls, arguments: Mapping[str, Any], tokens: int) -> int:
        """Each head's key and value, ``d_out`` wide, per token."""
        return arguments["num_heads"] * 2 * arguments["d_out"] * tokens

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        attention_mask: torch.Tensor | None = None,
        cache: attnkit.KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: ``(batch, tokens, d_in)`` -> context ``(batch, tokens, num_heads * d_out)``, weights ``(batch, num_heads, tokens, past + tokens)``."""  # noqa: E501
        outputs = [
            head(
                x,
                need_weights,
                attention_mask=attention_mask,
                cache=None if cache is None else cache.child(i),
            )
            for i, head in enumerate(self.heads)
        ]
        if not need_weights:
            return torch.cat(outputs, dim=-1)
        context = torch.cat([context for context, _ in outputs], dim=-1)
        return context, torch.cat([weights for _, weights in outputs], dim=1)


@attnkit.hookimpl
def register_variants(register):
    register(MultiHeadAttention)
    register(MultiHeadAttentionWrapper)
