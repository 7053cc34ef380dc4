"""Grouped-query attention: several query heads share each key and value head.

During generation, the KV cache is what limits the context and the batch: it
grows by ``2 x d_out`` numbers per token and layer. Grouped-query attention
(Ainslie et al., 2023; Llama 2 70B, Llama 3, Mistral, Qwen) keeps ``num_heads``
query heads but only ``num_kv_heads`` key and value heads, each shared by a group
of ``num_heads / num_kv_heads`` query heads:

$$
\\operatorname{head}_i = \\operatorname{softmax}\\!\\left(
\\frac{Q_i K_{g(i)}^\\top}{\\sqrt{d_k}}\\right) V_{g(i)},
\\qquad g(i) = \\left\\lfloor i \\cdot \\frac{n_{kv}}{n_h} \\right\\rfloor
$$

so the cache shrinks by the factor ``num_heads / num_kv_heads``. With
``num_kv_heads == 1`` it is multi-query attention (Shazeer, 2019); with
``num_kv_heads == num_heads``, ordinary multi-head attention. The kernels take
the grouped keys as they are, so no copies of them are ever made.
"""

from __future__ import annotations

import attnkit
from attnkit.interface import check_positive_int
from attnkit_builtins.multihead import MultiHeadAttention


class GroupedQueryAttention(MultiHeadAttention):
    """Causal multi-head attention whose query heads share ``num_kv_heads`` key-value heads.

    Takes every argument and option of `multihead` (RoPE, ALiBi, QK-norm,
    soft-capping, a sliding window, sinks), plus ``num_kv_heads``.

    Args:
        num_kv_heads: Key and value heads; must divide ``num_heads``. ``1`` is
            multi-query attention.

    Attributes:
        W_key: ``nn.Linear(d_in, num_kv_heads * head_dim)``.
        W_value: ``nn.Linear(d_in, num_kv_heads * head_dim)``.

    Examples:
        >>> import attnkit, torch
        >>> attention = attnkit.create(
        ...     "gqa", d_in=64, d_out=64, context_length=32, num_heads=8, num_kv_heads=2
        ... )
        >>> attention.W_key
        Linear(in_features=64, out_features=16, bias=False)
        >>> cache = attnkit.KVCache()
        >>> _ = attention(torch.rand(1, 5, 64), cache=cache)
        >>> cache.keys.shape  # only the 2 key-value heads are cached
        torch.Size([1, 2, 5, 8])
    """

    name = "gqa"
    stage = None

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        *,
        num_heads: int,
        num_kv_heads: int,
        qkv_bias: bool = False,
        kernel: str | attnkit.Kernel = "sdpa",
        rope_base: float | None = None,
        alibi: bool = False,
        qk_norm: bool = False,
        softcap: float | None = None,
        window: int | None = None,
        sinks: bool = False,
    ) -> None:
        owner = type(self).__name__
        check_positive_int(num_kv_heads, "num_kv_heads", owner)
        check_positive_int(num_heads, "num_heads", owner)
        if num_heads % num_kv_heads:
            raise ValueError(
                f"{owner}: num_kv_heads ({num_kv_heads}) must divide num_heads ({num_heads}), "
                f"so that each key-value head serves a whole group of query heads"
            )
        # Read by MultiHeadAttention.__init__ (through key_value_heads) as it sizes W_key.
        self._requested_kv_heads = num_kv_heads
        super().__init__(
            d_in,
            d_out,
            context_length,
            dropout,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            kernel=kernel,
            rope_base=rope_base,
            alibi=alibi,
            qk_norm=qk_norm,
            softcap=softcap,
            window=window,
            sinks=sinks,
        )

    def key_value_heads(self, num_heads: int) -> int:
        """``num_kv_heads``: each serves ``num_heads // num_kv_heads`` query heads."""
        return self._requested_kv_heads

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}"
        )


@attnkit.hookimpl
def register_variants(register):
    register(GroupedQueryAttention)
