"""`Attention`: the base class every attention variant subclasses, and its contract.

A variant is a `torch.nn.Module` with a little class-level metadata and a
`forward` that maps token embeddings to context vectors:

- ``forward(x)`` with ``x`` of shape ``(batch, tokens, d_in)`` returns
  ``(batch, tokens, d_out)``;
- ``forward(x, need_weights=True)`` returns ``(context, weights)`` where
  ``weights`` are the softmax-normalised attention weights, of shape
  ``(batch, heads, tokens, tokens)`` (``heads`` is 1 for single-head variants).

The base class does the shared work around ``forward`` so that no variant has
to: it checks the input (a floating-point tensor of rank 2 or 3, ``d_in`` and
``context_length`` where the variant sets them) and it accepts unbatched input
``(tokens, d_in)``, adding the batch axis before the variant's ``forward`` runs
and dropping it from the results. A variant's ``forward`` therefore always sees
``(batch, tokens, d_in)``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from attnkit.cache import KVCache

__all__ = [
    "Attention",
    "check_dropout",
    "check_flag",
    "check_positive_int",
    "ignore_saved_mask",
]


class Attention(nn.Module):
    """Base class of every attention variant.

    Subclasses set the class attributes below and implement `forward`. They
    call ``super().__init__(d_in=..., d_out=..., context_length=...)`` with
    whichever of those sizes they have, so that the shared input checks know
    what to expect.

    Attributes:
        name: The registry key, for example ``"causal"``. Required for registration.
        summary: One line for tables and listings. Defaults to the first line of the
            class docstring.
        stage: The stage of the teaching path (1 to 4) for the built-ins, ``None``
            for other variants.
        causal: Whether position ``t`` only attends to positions ``<= t``. The
            conformance checks hold every variant that claims this to it.
        supports_kv_cache: Whether ``forward`` accepts ``cache=`` (an
            `attnkit.KVCache`) and then takes only the new tokens; an optional
            capability for causal variants, which makes generation fast.
        plugin: The plugin that registered the variant; set by the registry.
        d_in: Width of the input embeddings, or ``None`` if any width is accepted.
        d_out: Width of each head's context vectors, or ``None`` if it equals ``d_in``.
        context_length: The most tokens one forward pass accepts, or ``None`` for no limit.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    stage: ClassVar[int | None] = None
    causal: ClassVar[bool] = False
    supports_kv_cache: ClassVar[bool] = False
    plugin: ClassVar[str | None] = None

    d_in: int | None
    d_out: int | None
    context_length: int | None

    def __init__(
        self,
        *,
        d_in: int | None = None,
        d_out: int | None = None,
        context_length: int | None = None,
    ) -> None:
        super().__init__()
        sizes = {"d_in": d_in, "d_out": d_out, "context_length": context_length}
        for argument, value in sizes.items():
            if value is not None:
                check_positive_int(value, argument, type(self).__name__)
        self.d_in = d_in
        self.d_out = d_out
        self.context_length = context_length

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "summary" not in cls.__dict__:
            cls.summary = _first_line(cls.__doc__)
        forward = cls.__dict__.get("forward")
        if forward is not None and not getattr(forward, "__attnkit_checked__", False):
            cls.forward = _with_input_checks(forward)  # type: ignore[method-assign]

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> Any:
        """Compute context vectors for ``x``.

        Args:
            x: Token embeddings, ``(batch, tokens, d_in)``. (Unbatched input is
                handled by the base class before this method runs.)
            need_weights: Also return the attention weights.

        Returns:
            ``context`` of shape ``(batch, tokens, d_out)``; with ``need_weights``,
            the pair ``(context, weights)`` with ``weights`` of shape
            ``(batch, heads, tokens, tokens)``.

        Variants with ``supports_kv_cache = True`` also take a keyword argument
        ``cache`` (an `attnkit.KVCache`); ``x`` then holds only the new tokens and
        the weights have shape ``(batch, heads, tokens, cached + tokens)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    @property
    def output_dim(self) -> int | None:
        """Width of the context vectors ``forward`` returns; ``None`` if it equals the input's."""
        return self.d_out

    def extra_repr(self) -> str:
        sizes = [
            f"{argument}={value}"
            for argument in ("d_in", "d_out", "context_length")
            if (value := getattr(self, argument, None)) is not None
        ]
        return ", ".join(sizes)


def check_dropout(dropout: float, owner: str) -> float:
    """Return ``dropout`` if it is a probability in [0, 1), else raise `ValueError`.

    A dropout of 1 would zero every attention weight, so it is refused too.

    Examples:
        >>> check_dropout(0.1, "CausalAttention")
        0.1
        >>> check_dropout(1.0, "CausalAttention")
        Traceback (most recent call last):
        ...
        ValueError: CausalAttention: dropout must be in [0, 1), got 1.0
    """
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


def check_positive_int(value: int, argument: str, owner: str) -> int:
    """Return ``value`` if it is a positive integer (not a bool), else raise `ValueError`.

    Examples:
        >>> check_positive_int(12, "num_heads", "MultiHeadAttention")
        12
        >>> check_positive_int(0, "num_heads", "MultiHeadAttention")
        Traceback (most recent call last):
        ...
        ValueError: MultiHeadAttention: num_heads must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {argument} must be a positive integer, got {value!r}")
    return value


def check_flag(value: bool, argument: str, owner: str) -> bool:
    """Return ``value`` if it is a bool, else raise `TypeError` (no truthy strings or numbers).

    Examples:
        >>> check_flag(True, "qkv_bias", "CausalAttention")
        True
        >>> check_flag("no", "qkv_bias", "CausalAttention")
        Traceback (most recent call last):
        ...
        TypeError: CausalAttention: qkv_bias must be True or False, got 'no'
    """
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {argument} must be True or False, got {value!r}")
    return value


def ignore_saved_mask(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Drop a ``mask`` entry from a checkpoint made when causal masks were buffers.

    A load-state-dict pre-hook (``module._register_load_state_dict_pre_hook``): the
    mask now follows from positions, so a stored one is not needed, and it must
    not stop weights saved at one ``context_length`` from loading at another.
    """
    state_dict.pop(f"{prefix}mask", None)


def _first_line(docstring: str | None) -> str:
    text = inspect.cleandoc(docstring or "")
    return text.splitlines()[0].strip() if text else ""


def _check_input(module: Attention, x: object, cache: object = None) -> None:
    owner = type(module).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: expected a torch.Tensor as input, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: expected a floating-point input tensor, got dtype {x.dtype}")
    d_in = module.d_in if module.d_in is not None else "d_in"
    if x.dim() not in (2, 3):
        raise ValueError(
            f"{owner}: expected input of shape (batch, tokens, {d_in}) or (tokens, {d_in}), "
            f"got {tuple(x.shape)}"
        )
    if module.d_in is not None and x.shape[-1] != module.d_in:
        expected = f"(batch, tokens, {d_in})" if x.dim() == 3 else f"(tokens, {d_in})"
        raise ValueError(f"{owner}: expected input of shape {expected}, got {tuple(x.shape)}")
    tokens = x.shape[-2]
    if cache is not None:
        if not isinstance(cache, KVCache):
            raise TypeError(
                f"{owner}: cache must be an attnkit.KVCache, got {type(cache).__name__}"
            )
        if not type(module).supports_kv_cache:
            raise TypeError(
                f"{owner}: the {module.name!r} variant does not support a KV cache "
                f"(supports_kv_cache is False); call it without cache="
            )
        past = cache.length  # type: ignore[attr-defined]
        if module.context_length is not None and past + tokens > module.context_length:
            raise ValueError(
                f"{owner}: the cache holds {past} tokens and {tokens} more were given, but "
                f"context_length is {module.context_length}; start a new cache"
            )
    if tokens < 1:
        raise ValueError(
            f"{owner}: expected at least one token, got input of shape {tuple(x.shape)}"
        )
    if module.context_length is not None and tokens > module.context_length:
        raise ValueError(
            f"{owner}: input has {tokens} tokens but context_length is {module.context_length}; "
            f"pass at most {module.context_length} tokens or build the module with a larger "
            f"context_length"
        )


def _drop_batch_axis(result: Any) -> Any:
    if isinstance(result, torch.Tensor):
        return result.squeeze(0)
    if isinstance(result, tuple):
        return tuple(_drop_batch_axis(item) for item in result)
    return result


def _with_input_checks(forward: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a variant's ``forward`` with the shared checks and unbatched handling."""

    @functools.wraps(forward)
    def checked_forward(self: Attention, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        cache = kwargs.get("cache")
        _check_input(self, x, cache)
        if cache is not None:
            cache.claim(self)
        if x.dim() == 2:
            return _drop_batch_axis(forward(self, x.unsqueeze(0), *args, **kwargs))
        return forward(self, x, *args, **kwargs)

    checked_forward.__attnkit_checked__ = True  # type: ignore[attr-defined]
    return checked_forward
