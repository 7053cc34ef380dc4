"""`Kernel`: the second kind of plugin, the computation at the heart of attention.

A variant (an `attnkit.Attention`) owns its projections, its cache and its
positions; a kernel turns queries, keys, values and a mask into context vectors:

$$
\\operatorname{softmax}\\!\\left(s \\cdot Q K^\\top + M\\right) V
$$

with scale $s$ (usually $1/\\sqrt{d_k}$) and $M$ the mask, $0$ where a query may
attend and $-\\infty$ elsewhere. Every kernel takes the same arguments, close to
Hugging Face transformers' attention functions:

```python
context, weights = kernel(
    query,        # (batch, heads, tokens_q, head_dim)
    key,          # (batch, kv_heads, tokens_k, head_dim); heads is a multiple of kv_heads
    value,        # (batch, kv_heads, tokens_k, head_dim_v)
    mask=mask,    # an attnkit.masks.Mask, or None to attend everywhere
    scale=scale,  # None: 1 / sqrt(head_dim)
    dropout_p=0.0, training=False, need_weights=False,
)
# context: (batch, heads, tokens_q, head_dim_v); weights: (batch, heads, tokens_q, tokens_k) or None
```

The queries are the *last* ``tokens_q`` of the ``tokens_k`` positions (they are
equal unless earlier keys come from a `attnkit.KVCache`), and the kernel
materialises the mask as it needs: a dense boolean for SDPA and the explicit
path, a block mask for FlexAttention. Grouped-query attention needs no repeated
copies of keys and values: each group of ``heads / kv_heads`` query heads shares
one key and value head. A query that may attend to no key at all gets a context
vector of zeros (and zero weights), never NaN, as PyTorch's SDPA does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from attnkit.masks import Mask

__all__ = ["Kernel", "KernelFunction"]

KernelFunction = Callable[..., tuple[torch.Tensor, "torch.Tensor | None"]]


@dataclass(frozen=True)
class Kernel:
    """A named attention kernel, as plugins register it.

    Calling a `Kernel` checks the shapes every kernel relies on, fills in the
    default scale, and calls ``function`` with the arguments described in this
    module's introduction.

    Attributes:
        name: The registry key, for example ``"sdpa"``.
        function: ``function(query, key, value, *, mask, scale, dropout_p, training,
            need_weights, **options) -> (context, weights_or_None)``.
        returns_weights: Whether ``function`` can return the attention weights
            (with ``need_weights=True``). Variants asked for weights use a kernel
            that can.
        summary: One line for listings; defaults to the first line of the
            function's docstring.
        plugin: The plugin that registered it; set by the registry.

    Examples:
        >>> import attnkit, torch
        >>> explicit = attnkit.get_kernel("explicit")
        >>> q = k = v = torch.randn(1, 2, 3, 4)
        >>> context, weights = explicit(q, k, v, mask=attnkit.masks.causal(), need_weights=True)
        >>> context.shape, weights.shape
        (torch.Size([1, 2, 3, 4]), torch.Size([1, 2, 3, 3]))
    """

    name: str
    function: KernelFunction
    returns_weights: bool = False
    summary: str = ""
    plugin: str | None = None

    def __post_init__(self) -> None:
        if not self.summary:
            doc = inspect.cleandoc(getattr(self.function, "__doc__", None) or "")
            object.__setattr__(self, "summary", doc.splitlines()[0].strip() if doc else "")

    def __call__(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        *,
        mask: Mask | None = None,
        scale: float | None = None,
        dropout_p: float = 0.0,
        training: bool = False,
        need_weights: bool = False,
        **options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_kernel_inputs(self.name, query, key, value)
        if need_weights and not self.returns_weights:
            raise ValueError(
                f"kernel {self.name!r} cannot return attention weights; use a kernel that "
                f"can (returns_weights=True), such as 'explicit'"
            )
        if scale is None:
            scale = query.shape[-1] ** -0.5
        return self.function(
            query,
            key,
            value,
            mask=mask,
            scale=scale,
            dropout_p=dropout_p,
            training=training,
            need_weights=need_weights,
            **options,
        )


def check_kernel_inputs(
    name: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> None:
    """Raise `ValueError` unless the shapes fit the kernel contract, naming what does not."""
    for label, tensor in (("query", query), ("key", key), ("value", value)):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise ValueError(
                f"kernel {name!r}: {label} must be a 4-D tensor (batch, heads, tokens, "
                f"head_dim), got {shape}"
            )
    batch, heads, tokens_q, head_dim = query.shape
    _, kv_heads, tokens_k, _ = key.shape
    if key.shape[0] != batch or value.shape[0] != batch:
        raise ValueError(
            f"kernel {name!r}: query, key and value must share the batch size, got "
            f"{batch}, {key.shape[0]} and {value.shape[0]}"
        )
    if key.shape[-1] != head_dim:
        raise ValueError(
            f"kernel {name!r}: query and key must share head_dim, got {head_dim} and "
            f"{key.shape[-1]}"
        )
    if value.shape[1:3] != key.shape[1:3]:
        raise ValueError(
            f"kernel {name!r}: key and value must have the same kv_heads and tokens, got "
            f"{tuple(key.shape)} and {tuple(value.shape)}"
        )
    if heads % kv_heads:
        raise ValueError(
            f"kernel {name!r}: the query's {heads} heads must be a multiple of the key's "
            f"{kv_heads} kv_heads (grouped-query attention)"
        )
    if tokens_q > tokens_k:
        raise ValueError(
            f"kernel {name!r}: {tokens_q} queries but only {tokens_k} keys; the queries are "
            f"the last tokens_q of the tokens_k positions"
        )
