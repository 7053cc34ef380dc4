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
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from attnkit.cache import KVCache
from attnkit.masks import TensorMemo

__all__ = [
    "CAPABILITIES",
    "Attention",
    "check_dropout",
    "check_flag",
    "check_positive_int",
    "ignore_saved_mask",
]


CAPABILITIES: dict[str, str] = {
    "attention_mask": "forward(x, attention_mask=...) hides padding tokens",
    "position_ids": "forward(x, position_ids=...) sets the positions of the tokens",
    "kv_cache": "forward(x, cache=KVCache()) takes only the new tokens",
    "weights": "forward(x, need_weights=True) also returns the attention weights",
}
"""What a variant can declare in ``capabilities``, and what each one means."""


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
        capabilities: Which optional arguments ``forward`` supports, from
            `CAPABILITIES`: ``"attention_mask"``, ``"position_ids"``, ``"kv_cache"``
            and ``"weights"`` (the default is ``{"weights"}``). The base class
            refuses an argument whose capability is not declared, naming the
            variant and the capability, and the conformance kit checks every
            declared one.
        supports_kv_cache: ``"kv_cache" in capabilities``; kept in step with it.
            (Setting ``supports_kv_cache = True`` alone declares the capability.)
        plugin: The plugin that registered the variant; set by the registry.
        d_in: Width of the input embeddings, or ``None`` if any width is accepted.
        d_out: Width of each head's context vectors, or ``None`` if it equals ``d_in``.
        context_length: The most tokens one forward pass accepts, or ``None`` for no limit.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    stage: ClassVar[int | None] = None
    causal: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"weights"})
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
        _settle_capabilities(cls)
        forward = cls.__dict__.get("forward")
        if forward is not None and not getattr(forward, "__attnkit_checked__", False):
            cls.forward = _with_input_checks(forward)  # type: ignore[method-assign]

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Any:
        """Compute context vectors for ``x``.

        A variant's ``forward`` declares only the keyword arguments of the
        capabilities it has; the base class never passes the others.

        Args:
            x: Token embeddings, ``(batch, tokens, d_in)``. (Unbatched input is
                handled by the base class before this method runs.)
            need_weights: Also return the attention weights.
            attention_mask: ``(batch, past + tokens)`` booleans, True (or 1) for a
                real token and False (or 0) for padding, the Hugging Face
                convention; ``past`` counts the tokens already in ``cache``. The
                base class checks it and hands the variant a boolean tensor.
                Padding keys are never attended to; outputs at real tokens do not
                depend on the padding, and a query with no key left gets zeros.
            position_ids: ``(batch, tokens)`` integer positions, for variants that
                encode positions. Variants that declare the capability always
                receive them: by default the base class passes positions that
                continue from the cache's length, ``past .. past + tokens - 1``.
            cache: An `attnkit.KVCache`; ``x`` then holds only the new tokens.

        Returns:
            ``context`` of shape ``(batch, tokens, d_out)``; with ``need_weights``,
            the pair ``(context, weights)`` with ``weights`` of shape
            ``(batch, heads, tokens, past + tokens)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    @classmethod
    def kv_cache_elements(cls, arguments: Mapping[str, Any], tokens: int) -> int | None:
        """Elements the KV cache holds per sequence after ``tokens`` tokens, or ``None``.

        Computed from the constructor ``arguments`` (defaults filled in), without
        building the module, so that `attnkit.models.kv_cache_bytes` can size the
        cache of a model too large to build. Variants with a KV cache declare it;
        the conformance kit checks the declaration against a real cache.
        """
        return None

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
        past = cache.length
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


_ARGUMENT_CAPABILITY = {
    "attention_mask": "attention_mask",
    "position_ids": "position_ids",
    "cache": "kv_cache",
}


def _check_capabilities(module: Attention, need_weights: object, kwargs: dict[str, Any]) -> None:
    """Refuse an argument the variant has not declared the capability for."""
    cls = type(module)
    if not isinstance(need_weights, bool):
        raise TypeError(f"{cls.__name__}: need_weights must be True or False, got {need_weights!r}")
    wanted = [(a, c) for a, c in _ARGUMENT_CAPABILITY.items() if kwargs.get(a) is not None]
    if need_weights:
        wanted.append(("need_weights", "weights"))
    for argument, capability in wanted:
        if capability not in cls.capabilities:
            declared = ", ".join(sorted(cls.capabilities)) or "none"
            raise TypeError(
                f"{cls.__name__}: the {getattr(cls, 'name', cls.__name__)!r} variant does not "
                f"support {argument}= (capability {capability!r}; it declares: {declared}); "
                f"call it without {argument}="
            )


def _check_attention_mask(
    module: Attention, x: torch.Tensor, mask: object, past: int
) -> torch.Tensor:
    """The padding mask as booleans ``(batch, past + tokens)``, checked."""
    owner = type(module).__name__
    batch, tokens = x.shape[0], x.shape[1]
    expected = (batch, past + tokens)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"{owner}: attention_mask must be a tensor of shape {expected}, got "
            f"{type(mask).__name__}"
        )
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(
            f"{owner}: attention_mask must be bool or integer 0/1 (1 = real token, 0 = "
            f"padding), got dtype {mask.dtype}"
        )
    if tuple(mask.shape) != expected:
        covers = f" (the {past} cached tokens and the {tokens} new ones)" if past else ""
        raise ValueError(
            f"{owner}: attention_mask must have shape (batch, past + tokens) = {expected}"
            f"{covers}, got {tuple(mask.shape)}"
        )
    if mask.dtype == torch.bool and mask.device == x.device:
        return mask
    # Every layer of a model is handed the same mask: convert (and check) it once, and
    # hand every layer the same boolean tensor, so the masks built from it are shared too.
    remembered = _BOOLEAN_MASKS.get(mask)
    if remembered is not None:
        return remembered
    if mask.dtype != torch.bool and ((mask != 0) & (mask != 1)).any():
        raise ValueError(
            f"{owner}: attention_mask must hold only 0 (padding) and 1 (real token), got "
            f"values {sorted(set(mask.unique().tolist()))[:6]}"
        )
    converted = (mask != 0).to(x.device)
    _BOOLEAN_MASKS.put(mask, converted)
    return converted


_BOOLEAN_MASKS = TensorMemo()


def _check_position_ids(module: Attention, x: torch.Tensor, positions: object) -> torch.Tensor:
    owner = type(module).__name__
    expected = (x.shape[0], x.shape[1])
    if not isinstance(positions, torch.Tensor) or positions.is_floating_point():
        kind = positions.dtype if isinstance(positions, torch.Tensor) else type(positions).__name__
        raise TypeError(f"{owner}: position_ids must be an integer tensor, got {kind}")
    if tuple(positions.shape) != expected:
        raise ValueError(
            f"{owner}: position_ids must have shape (batch, tokens) = {expected}, got "
            f"{tuple(positions.shape)}"
        )
    if positions.dtype == torch.bool or (positions < 0).any():
        raise ValueError(f"{owner}: position_ids must be non-negative integers")
    return positions.to(x.device)


def _drop_batch_axis(result: Any) -> Any:
    if isinstance(result, torch.Tensor):
        return result.squeeze(0)
    if isinstance(result, tuple):
        return tuple(_drop_batch_axis(item) for item in result)
    return result


def _settle_capabilities(cls: type[Attention]) -> None:
    """Keep ``capabilities`` and ``supports_kv_cache`` in step, whichever the class set."""
    if "capabilities" in cls.__dict__:
        unknown = set(cls.capabilities) - set(CAPABILITIES)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.capabilities: unknown {sorted(unknown)}; choose from "
                f"{', '.join(CAPABILITIES)}"
            )
        cls.capabilities = frozenset(cls.capabilities)
        cls.supports_kv_cache = "kv_cache" in cls.capabilities
    elif "supports_kv_cache" in cls.__dict__:
        change = {"kv_cache"}
        cls.capabilities = (
            cls.capabilities | change if cls.supports_kv_cache else cls.capabilities - change
        )


def _with_input_checks(forward: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a variant's ``forward`` with the shared checks and unbatched handling."""

    @functools.wraps(forward)
    def checked_forward(
        self: Attention, x: torch.Tensor, need_weights: bool = False, **kwargs: Any
    ) -> Any:
        cache = kwargs.get("cache")
        _check_input(self, x, cache)
        _check_capabilities(self, need_weights, kwargs)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0)
        for argument in ("attention_mask", "position_ids"):
            value = kwargs.get(argument)
            if value is None:
                kwargs.pop(argument, None)
            elif unbatched and isinstance(value, torch.Tensor) and value.dim() == 1:
                kwargs[argument] = value.unsqueeze(0)
        if "attention_mask" in kwargs:
            past = cache.length if cache is not None else 0
            kwargs["attention_mask"] = _check_attention_mask(
                self, x, kwargs["attention_mask"], past
            )
        if "position_ids" in kwargs:
            kwargs["position_ids"] = _check_position_ids(self, x, kwargs["position_ids"])
        elif "position_ids" in type(self).capabilities:
            # The default positions continue from the tokens already in the cache.
            past = cache.length if cache is not None else 0
            positions = torch.arange(past, past + x.shape[1], device=x.device)
            kwargs["position_ids"] = positions.expand(x.shape[0], -1)
        if cache is not None:
            cache.claim(self)
        elif "cache" in kwargs:
            del kwargs["cache"]
        if unbatched:
            return _drop_batch_axis(forward(self, x, need_weights, **kwargs))
        return forward(self, x, need_weights, **kwargs)

    checked_forward.__attnkit_checked__ = True  # type: ignore[attr-defined]
    return checked_forward
