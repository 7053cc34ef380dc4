"""attnkit kernels as Hugging Face transformers attention implementations.

transformers chooses each model's attention function by name
(``attn_implementation="sdpa"``, or ``model.set_attn_implementation(...)``)
from its `AttentionInterface`, and the function that builds the model's masks
from a second registry, `AttentionMaskInterface`. `register` puts every attnkit
kernel in both, as ``attnkit_<kernel>``:

```python
import attnkit.integrations.transformers as attnkit_hf

attnkit_hf.register()  # ['attnkit_chunked', 'attnkit_explicit', 'attnkit_flex', ...]
model = AutoModelForCausalLM.from_config(config, attn_implementation="attnkit_sdpa")
```

Registering the mask builder too matters: transformers gives an attention
function registered alone no mask at all, so padding would silently be
attended to. The adapter hands the kernel transformers' mask as an
`attnkit.masks` value (and the causal mask when transformers skips building
one, as it does for an unpadded batch), maps grouped key-value heads, the scale,
dropout, soft-capping and attention sinks onto the kernel contract, and returns
``(batch, tokens, heads, head_dim)`` as transformers expects. With
``output_attentions=True`` it returns the weights of any kernel that can compute
them (the fused ones hand over to ``explicit`` for that call), so a model need
not switch to ``eager`` to show them.

transformers is an optional extra (``pip install attnkit[transformers]``); this
module imports it only when `register` is called, and ``import attnkit`` never
does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import attnkit
from attnkit import masks
from attnkit.kernel import Kernel

__all__ = ["PREFIX", "attention_function", "implementation_name", "register"]

PREFIX = "attnkit_"
"""What attnkit kernels are called in transformers: ``attnkit_<kernel>``."""


def implementation_name(kernel: str) -> str:
    """The transformers ``attn_implementation`` name of an attnkit kernel: ``attnkit_<kernel>``.

    Kernel names never contain ``/``, which transformers would read as a kernel
    to download from the Hub.

    Examples:
        >>> implementation_name("sdpa")
        'attnkit_sdpa'
    """
    return f"{PREFIX}{kernel}"


def register(kernel: str | None = None) -> list[str]:
    """Register attnkit kernels with transformers' attention and mask interfaces.

    Args:
        kernel: The name of one registered kernel, or ``None`` for all of them
            (third-party kernels included).

    Returns:
        The ``attn_implementation`` names registered, e.g. ``["attnkit_sdpa"]``.

    Raises:
        ImportError: transformers is not installed.
        attnkit.UnknownKernelError: No kernel has that name.
    """
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError as error:
        raise ImportError(
            "attnkit.integrations.transformers needs Hugging Face transformers: "
            "pip install 'attnkit[transformers]'"
        ) from error
    names = attnkit.list_kernels() if kernel is None else [attnkit.get_kernel(kernel).name]
    registered = []
    for name in names:
        implementation = implementation_name(name)
        AttentionInterface.register(implementation, attention_function(attnkit.get_kernel(name)))
        AttentionMaskInterface.register(implementation, _build_mask)
        registered.append(implementation)
    return registered


def attention_function(kernel: Kernel) -> Callable[..., tuple[torch.Tensor, torch.Tensor | None]]:
    """A transformers attention function that computes with ``kernel``.

    Its signature is transformers': ``(module, query, key, value, attention_mask,
    dropout=0.0, scaling=None, **kwargs) -> (output, weights)``, with ``query``
    ``(batch, heads, tokens_q, head_dim)``, ``key`` and ``value`` ``(batch,
    kv_heads, tokens_k, head_dim)``, and ``output`` ``(batch, tokens_q, heads,
    head_dim)``.
    """

    def attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        dropout: float = 0.0,
        scaling: float | None = None,
        is_causal: bool | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if kwargs.get("position_bias") is not None:
            raise NotImplementedError(
                f"{implementation_name(kernel.name)}: this model adds a position bias to the "
                f"scores, which attnkit kernels do not take; use attn_implementation='eager'"
            )
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        mask = _as_mask(attention_mask, causal, implementation_name(kernel.name))
        need_weights = bool(kwargs.get("output_attentions", False)) or _collecting_attentions()
        chosen = kernel
        if need_weights and not kernel.returns_weights:
            chosen = attnkit.get_kernel("explicit")
        options: dict[str, Any] = {}
        if kwargs.get("softcap") is not None:
            options["softcap"] = float(kwargs["softcap"])
        if kwargs.get("s_aux") is not None:  # gpt-oss's attention sinks
            options["sinks"] = kwargs["s_aux"]
        context, weights = chosen(
            query,
            key,
            value,
            mask=mask,
            scale=scaling,
            dropout_p=dropout,
            training=module.training,
            need_weights=need_weights,
            **options,
        )
        return context.transpose(1, 2).contiguous(), weights

    attention.__name__ = f"{PREFIX}{kernel.name}_attention"
    attention.__doc__ = f"transformers attention computed by the attnkit kernel {kernel.name!r}."
    return attention


def _collecting_attentions() -> bool:
    """Whether transformers is recording attention weights for this forward pass.

    Some models (GPT-2) do not pass ``output_attentions`` down to the attention
    function; transformers' output recorder, which gathers the weights the
    function returns, says whether they were asked for.
    """
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:  # another transformers layout: rely on output_attentions alone
        return False
    try:
        collected = _active_collector.get()
    except LookupError:
        return False
    return collected is not None and "attentions" in collected


def _build_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """transformers' SDPA mask builder: a boolean 4-D mask, True where a query may attend.

    Like SDPA's, it skips building a purely causal mask (no padding, no window
    in reach); the attention function then uses `attnkit.masks.causal`, so the
    fused kernels keep their causal fast path.
    """
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, **kwargs)


def _as_mask(attention_mask: torch.Tensor | None, causal: bool, owner: str) -> masks.Mask | None:
    if attention_mask is None:
        return masks.causal() if causal else None
    if attention_mask.dtype == torch.bool:
        return masks.dense(attention_mask)
    # An additive float mask (0 where allowed, a very negative number elsewhere).
    lowest = torch.finfo(attention_mask.dtype).min
    allowed = attention_mask == 0
    if not torch.all(allowed | (attention_mask <= lowest / 2)):
        raise NotImplementedError(
            f"{owner}: the model passed a float mask with values other than 0 and -inf (a "
            f"bias on the scores), which attnkit kernels do not take"
        )
    return masks.dense(allowed)
