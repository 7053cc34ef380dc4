"""What the checks work on: the variant to check, its arguments, fresh modules and inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from attnkit import _arguments, registry
from attnkit.errors import AttnkitError
from attnkit.interface import Attention

__all__ = ["Subject", "VariantBuildError", "VariantSpec", "build_arguments", "resolve"]

BATCH = 2
TOKENS = 6  # fewer when context_length is smaller
_ANY_WIDTH = _arguments.STANDARD_SIZES["d_in"]  # input width for variants that accept any


class VariantBuildError(AttnkitError, ValueError):
    """The variant could not be built from the arguments given; no check ran.

    The constructor's own error is chained as ``__cause__``.
    """


def format_kwargs(kwargs: Mapping[str, Any]) -> str:
    """``key=value, ...``: how reports, test ids and errors show keyword arguments."""
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


@dataclass(frozen=True)
class VariantSpec:
    """A variant to check, and the keyword arguments to build it with.

    Attributes:
        variant: A registered name, or an `attnkit.Attention` subclass (registered or not).
        kwargs: Constructor arguments, on top of the standard sizes (see `build_arguments`).
    """

    variant: str | type[Attention]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, spec: VariantSpec | str | type[Attention] | tuple[Any, Mapping[str, Any]]
    ) -> VariantSpec:
        """Accept a spec, a name, a class, or a ``(name_or_class, kwargs)`` pair."""
        if isinstance(spec, VariantSpec):
            return spec
        if isinstance(spec, tuple):
            if len(spec) != 2 or not isinstance(spec[1], Mapping):
                raise TypeError(
                    f"expected a (variant, kwargs) pair with kwargs a dict, got {spec!r}"
                )
            return cls(spec[0], dict(spec[1]))
        return cls(spec)

    @property
    def label(self) -> str:
        """``name`` or ``name(key=value, ...)``: how reports and test ids show it."""
        arguments = format_kwargs(self.kwargs)
        return f"{self.name}({arguments})" if arguments else self.name

    @property
    def name(self) -> str:
        """The registered name, or the class's own name if it has none."""
        if isinstance(self.variant, str):
            return self.variant
        return self.variant.__dict__.get("name") or self.variant.__qualname__

    def __str__(self) -> str:
        return self.label


def resolve(variant: str | type[Attention]) -> type[Attention]:
    """The variant class for a registered name or a class."""
    if isinstance(variant, str):
        return registry.get_variant(variant)
    if isinstance(variant, type) and issubclass(variant, Attention):
        return variant
    raise TypeError(
        f"expected a variant name or an attnkit.Attention subclass, got {variant!r}; "
        f"registered variants: {', '.join(registry.list_variants())}"
    )


def build_arguments(
    variant: str | type[Attention], kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments the kit builds ``variant`` with.

    Small standard sizes (for ``d_in``, ``d_out``, ``context_length``,
    ``num_heads`` and ``dropout``; the ``attnkit check --help`` text lists them)
    filtered to those the constructor accepts, then ``kwargs`` on top, checked
    against the constructor as `attnkit.create` checks them.

    Raises:
        UnknownVariantError: ``variant`` is a name nobody registered.
        TypeError: ``kwargs`` names an argument the constructor does not take, or
            the constructor requires one that neither ``kwargs`` nor the standard
            sizes give. The message lists what it accepts.

    Examples:
        >>> arguments = build_arguments("multihead", {"num_heads": 4})
        >>> sorted(arguments), arguments["num_heads"]
        (['context_length', 'd_in', 'd_out', 'dropout', 'num_heads'], 4)
        >>> build_arguments("simple")  # its constructor takes no arguments
        {}
        >>> build_arguments("causal", {"heads": 2})
        Traceback (most recent call last):
        ...
        TypeError: causal: unexpected keyword argument 'heads'. causal accepts: d_in, d_out, context_length, ...
    """  # noqa: E501
    cls = resolve(variant)
    given = dict(kwargs or {})
    missing = _arguments.missing_arguments(cls, {**_arguments.STANDARD_SIZES, **given})
    hint = ""
    if missing:
        hint = f", which the kit has no size for; pass it (attnkit check: --arg {missing[0]}=VALUE)"
    return _arguments.standard_arguments(
        cls, given, caller=VariantSpec(cls).name, missing_hint=hint
    )


@dataclass(frozen=True)
class Subject:
    """What a check works on: the class, its arguments, and helpers to build and feed it."""

    cls: type[Attention]
    arguments: dict[str, Any]
    user_arguments: dict[str, Any]
    compile_backend: str

    @classmethod
    def of(
        cls, spec: VariantSpec, compile_backend: str, arguments: dict[str, Any] | None = None
    ) -> Subject:
        variant = resolve(spec.variant)
        if arguments is None:
            arguments = build_arguments(variant, spec.kwargs)
        return cls(variant, arguments, dict(spec.kwargs), compile_backend)

    def build(self, seed: int = 0, **overrides: Any) -> Attention:
        torch.manual_seed(seed)
        return self.cls(**{**self.arguments, **overrides})

    def tokens(self, module: Attention, wanted: int = TOKENS) -> int:
        limit = module.context_length
        return min(wanted, limit) if limit is not None else wanted

    def width(self, module: Attention) -> int:
        return module.d_in if module.d_in is not None else _ANY_WIDTH

    def inputs(
        self,
        module: Attention,
        batch: int = BATCH,
        tokens: int | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = 1234,
    ) -> torch.Tensor:
        """Seeded random inputs of shape ``(batch, tokens, width)``, drawn in float64."""
        tokens = self.tokens(module) if tokens is None else tokens
        generator = torch.Generator().manual_seed(seed)
        shape = (batch, tokens, self.width(module))
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
