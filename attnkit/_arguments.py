"""Matching keyword arguments to a variant's constructor: one home for the job.

The registry's `create` and `create_from_config`, the conformance kit, the
benchmark and the tests all need to know which keyword arguments a variant's
constructor takes, to refuse the ones it does not (with a close match), to
report the required ones that are missing, and to build a variant at small
standard sizes. They all call the functions here, with the one table of sizes,
`STANDARD_SIZES`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from attnkit._suggest import did_you_mean

__all__ = [
    "STANDARD_SIZES",
    "accepted_arguments",
    "accepts_any_argument",
    "check_arguments",
    "filter_arguments",
    "format_arguments",
    "missing_arguments",
    "standard_arguments",
]

STANDARD_SIZES: dict[str, Any] = {
    "d_in": 8,
    "d_out": 8,
    "context_length": 16,
    "num_heads": 2,
    "num_kv_heads": 1,
    "kv_latent_dim": 4,
    "dropout": 0.0,
}
"""Small sizes that tools build variants with; each variant takes the keys it accepts."""


@functools.cache
def _signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls)


def accepted_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments ``cls(...)`` takes, by name (empty for ``**kwargs`` only)."""
    return {
        name: parameter
        for name, parameter in _signature(cls).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }


def accepts_any_argument(cls: type) -> bool:
    """Whether ``cls(...)`` takes ``**kwargs``, and so any keyword argument at all."""
    return any(p.kind is p.VAR_KEYWORD for p in _signature(cls).parameters.values())


def format_arguments(cls: type) -> str:
    """The keyword arguments ``cls(...)`` takes, for messages: ``d_in, dropout=0.0, ...``."""
    return ", ".join(
        name if p.default is p.empty else f"{name}={p.default!r}"
        for name, p in accepted_arguments(cls).items()
    )


def missing_arguments(cls: type, given: Mapping[str, Any]) -> list[str]:
    """The required arguments of ``cls(...)`` that ``given`` lacks, in signature order."""
    return [
        name
        for name, p in accepted_arguments(cls).items()
        if p.default is p.empty and name not in given
    ]


def filter_arguments(cls: type, offered: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``offered`` that ``cls(...)`` accepts (all, if it takes ``**kwargs``)."""
    if accepts_any_argument(cls):
        return dict(offered)
    accepted = accepted_arguments(cls)
    return {key: value for key, value in offered.items() if key in accepted}


def check_arguments(
    cls: type,
    kwargs: Mapping[str, Any],
    *,
    caller: str,
    label: str | None = None,
    missing_hint: str = "",
) -> None:
    """Raise `TypeError` if ``kwargs`` has a key ``cls(...)`` does not take, or lacks a required one.

    Args:
        cls: The variant class.
        kwargs: The keyword arguments about to be passed.
        caller: What is building it, to start the message: ``"create('causal')"``.
        label: How to name the variant in the message; defaults to its ``name``.
        missing_hint: Said after the missing arguments, e.g. how to pass one.

    Examples:
        >>> import attnkit
        >>> causal = attnkit.get_variant("causal")
        >>> check_arguments(causal, {"d_in": 3, "d_out": 2, "context_length": 6, "heads": 2},
        ...                 caller="create('causal')")
        Traceback (most recent call last):
        ...
        TypeError: create('causal'): unexpected keyword argument 'heads'. causal accepts: d_in, d_out, context_length, ...
    """  # noqa: E501
    label = label or getattr(cls, "name", cls.__name__)
    accepted = accepted_arguments(cls)
    listing = format_arguments(cls)
    for argument in kwargs:
        if not isinstance(argument, str) or not argument.isidentifier():
            raise TypeError(f"{caller}: argument names must be identifiers, got {argument!r}")
        if argument not in accepted and not accepts_any_argument(cls):
            hint = did_you_mean(argument, accepted)
            hint = f" ({hint})" if hint else ""
            raise TypeError(
                f"{caller}: unexpected keyword argument {argument!r}{hint}. "
                f"{label} accepts: {listing or 'no arguments'}"
            )
    missing = missing_arguments(cls, kwargs)
    if missing:
        names = ", ".join(repr(m) for m in missing)
        plural = "s" if len(missing) > 1 else ""
        raise TypeError(
            f"{caller}: missing required argument{plural} {names}{missing_hint}. "
            f"{label} accepts: {listing}"
        )


def standard_arguments(
    cls: type,
    overrides: Mapping[str, Any] | None = None,
    *,
    caller: str,
    sizes: Mapping[str, Any] = STANDARD_SIZES,
    missing_hint: str = "",
) -> dict[str, Any]:
    """``sizes`` filtered to what ``cls(...)`` accepts, ``overrides`` on top, checked.

    Examples:
        >>> import attnkit
        >>> standard_arguments(attnkit.get_variant("multihead"), {"num_heads": 4}, caller="kit")
        {'d_in': 8, 'd_out': 8, 'context_length': 16, 'num_heads': 4, 'dropout': 0.0}
        >>> standard_arguments(attnkit.get_variant("simple"), caller="kit")
        {}
    """
    overrides = dict(overrides or {})
    accepted = accepted_arguments(cls)
    arguments = {key: value for key, value in sizes.items() if key in accepted}
    arguments.update(overrides)
    check_arguments(cls, arguments, caller=caller, missing_hint=missing_hint)
    return arguments
