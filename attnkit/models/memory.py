"""`kv_cache_bytes`: how much memory a model's KV cache needs, from its config alone.

During generation each attention layer keeps the keys and values of the tokens
seen so far (`attnkit.KVCache`). For multi-head attention that is ``2 x d_out``
numbers per token and layer:

$$
\\text{bytes} = \\text{batch} \\times \\text{tokens} \\times n_\\text{layers}
\\times 2 \\times d_\\text{out} \\times \\text{bytes per element}
$$

which for a 7B-class model (32 layers, 4,096 wide) at 32,768 tokens in
bfloat16 is 17.18 GB, more than the weights. What today's attention changes
is this count: grouped-query attention stores ``num_kv_heads`` heads instead of
``num_heads``, multi-head latent attention a ``kv_latent_dim``-wide latent, a
sliding window at most ``window`` tokens. Each variant declares its own count
(`attnkit.Attention.kv_cache_elements`); `kv_cache_bytes` adds them up over the
layers of a `GPTModel` config without building it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

import attnkit
from attnkit._arguments import (
    accepted_arguments,
    check_arguments,
    filter_arguments,
)
from attnkit.interface import Attention, check_positive_int
from attnkit.models.gpt import _check_causal, _fitted, _layer_attention, _resolved
from attnkit.registry import refuse_unknown_keys

__all__ = ["kv_cache_bytes"]


def kv_cache_bytes(
    config: Mapping[str, Any],
    context_length: int,
    batch: int = 1,
    dtype: torch.dtype = torch.bfloat16,
) -> int:
    """Bytes the KV caches of a `GPTModel` of ``config`` hold after ``context_length`` tokens.

    The sum over the layers (each with its own entry of ``layer_pattern``) of
    what each layer's variant declares in its ``kv_cache_elements(arguments,
    tokens)`` (see `attnkit.Attention`), called with the arguments the model
    would build that layer with, the constructor's defaults filled in; times
    ``batch`` and the size of ``dtype``.
    Nothing is built, so a config far too large for the machine can be sized.
    (A variant whose output width is known only once built, such as
    ``multihead_wrapper``, is built once on PyTorch's ``meta`` device, which
    allocates no memory, to learn the ``d_out`` the model would give it.)

    The count is of the keys and values a cache holds (`attnkit.KVCache.nbytes`),
    as in the reference book's estimates; a cache may reserve room for
    ``context_length`` tokens up front.

    Args:
        config: A `GPTModel` config; checked as the model checks it.
        context_length: Tokens seen so far, from 1 to ``config["context_length"]``.
            A sliding-window layer holds at most ``window`` of them.
        batch: Sequences generated side by side.
        dtype: The cache's dtype (the model's): 2 bytes per number for
            ``torch.bfloat16``, 4 for ``torch.float32``.

    Returns:
        The number of bytes, an ``int``; divide by ``1000**3`` for GB (the
        book's unit) or ``2**30`` for GiB.

    Raises:
        TypeError: ``dtype`` is not a ``torch.dtype``, an argument the variant
            requires is missing or one is accepted by no registered variant, or
            a layer's variant has no KV cache or declares no size for it.
        ValueError: The config is invalid, or ``context_length`` or ``batch`` is
            out of range.

    Examples:
        The reference book's 7B-class model, 32,768 tokens in bfloat16:

        >>> from attnkit.models import kv_cache_bytes
        >>> config = {"vocab_size": 50_257, "context_length": 32_768, "emb_dim": 4_096,
        ...           "n_heads": 32, "n_layers": 32}
        >>> f"{kv_cache_bytes(config, 32_768) / 1000**3:.2f} GB"
        '17.18 GB'
        >>> gqa = {**config, "attention": "gqa", "num_kv_heads": 8}
        >>> f"{kv_cache_bytes(gqa, 32_768) / 1000**3:.2f} GB"
        '4.29 GB'
        >>> gemma_like = {**gqa, "layer_pattern": [{"window": 1_024}] * 5 + [{}]}
        >>> f"{kv_cache_bytes(gemma_like, 32_768) / 1000**3:.2f} GB"
        '0.78 GB'
    """
    resolved = _resolved(config)
    check_positive_int(context_length, "context_length", "kv_cache_bytes")
    check_positive_int(batch, "batch", "kv_cache_bytes")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"kv_cache_bytes: dtype must be a torch.dtype, got {dtype!r}")
    if context_length > resolved["context_length"]:
        raise ValueError(
            f"kv_cache_bytes: context_length ({context_length}) exceeds the config's "
            f"context_length ({resolved['context_length']}), the most tokens the model sees"
        )
    elements = 0
    for index, (name, arguments) in enumerate(_layer_attention(resolved)):
        variant = attnkit.get_variant(name)
        arguments = _declared_arguments(variant, name, arguments, resolved["emb_dim"])
        if not variant.supports_kv_cache:
            raise TypeError(
                f"kv_cache_bytes: attention {name!r} (layer {index}) has no KV cache "
                f"(supports_kv_cache is False): generate recomputes the window at every step"
            )
        declared = variant.kv_cache_elements(arguments, context_length)
        if declared is None:
            raise TypeError(
                f"kv_cache_bytes: attention {name!r} (layer {index}) declares no KV-cache size: "
                f"its kv_cache_elements(arguments, tokens) returns None; the variant's author "
                f"can declare one (see attnkit.Attention.kv_cache_elements)"
            )
        if isinstance(declared, bool) or not isinstance(declared, int) or declared < 0:
            raise TypeError(
                f"kv_cache_bytes: {variant.__name__}.kv_cache_elements must return a "
                f"non-negative int, got {declared!r}"
            )
        elements += declared
    return elements * batch * dtype.itemsize


def _declared_arguments(
    variant: type[Attention], name: str, arguments: Mapping[str, Any], emb_dim: int
) -> dict[str, Any]:
    """What the model would build the layer with, as ``kv_cache_elements`` receives it.

    The arguments the variant accepts, checked as `attnkit.create_from_config`
    checks them, with the constructor's defaults filled in.
    """
    _check_causal(name)
    refuse_unknown_keys(
        name,
        arguments,
        lambda key, hint: (
            f"kv_cache_bytes: cannot size attention {name!r}: no registered variant "
            f"accepts {key!r}{hint}"
        ),
    )
    given = filter_arguments(variant, arguments)
    check_arguments(variant, given, caller=f"kv_cache_bytes: attention {name!r}")
    if variant.output_dim is not Attention.output_dim:
        # The output width, and so the d_out the model settles on, is known only once built.
        with torch.device("meta"):
            _, fitted = _fitted(name, arguments, emb_dim)
        given = filter_arguments(variant, fitted)
    defaults = {
        argument: parameter.default
        for argument, parameter in accepted_arguments(variant).items()
        if parameter.default is not parameter.empty
    }
    return {**defaults, **given}
