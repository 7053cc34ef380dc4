"""Running the checks: `iter_checks` yields each result as its check finishes.

Every door to the kit goes through it: `check_variant` collects the results into
a report, the ``attnkit check`` command prints each as it arrives, and each test
that `parametrize_with_checks` makes takes the one result of its check.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from attnkit._suggest import did_you_mean
from attnkit.interface import Attention
from attnkit.testing._checks import CHECKS, Check, Failed, Skipped, require_backend
from attnkit.testing._report import CheckResult, ConformanceReport, Outcome
from attnkit.testing._subject import (
    Subject,
    VariantBuildError,
    VariantSpec,
    build_arguments,
    format_kwargs,
    resolve,
)

__all__ = ["check_variant", "iter_checks", "select"]

_BY_NAME = {check.name: check for check in CHECKS}


def select(names: Iterable[str] | None, what: str) -> list[str]:
    """The check names in ``names`` (all if ``None``), each once; unknown names raise."""
    if names is None:
        return list(_BY_NAME)
    if isinstance(names, str):
        names = [names]
    selected = list(dict.fromkeys(names))
    for name in selected:
        if name not in _BY_NAME:
            hint = did_you_mean(name, _BY_NAME)
            raise ValueError(
                f"unknown check {name!r} in {what}{'; ' + hint if hint else '.'} "
                f"Checks: {', '.join(_BY_NAME)}"
            )
    return selected


def _run_check(check: Check, subject: Subject, skip: frozenset[str] = frozenset()) -> CheckResult:
    """Run one check, turning whatever it raises into a failed or skipped result."""
    started = time.perf_counter()
    if check.name in skip:
        outcome, detail = Outcome.SKIPPED, "skipped on request"
    else:
        try:
            # Gradients are off but where a check turns them on (the gradients check).
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                detail = check.function(subject)
            outcome = Outcome.PASSED
        except Skipped as reason:
            outcome, detail = Outcome.SKIPPED, str(reason)
        except Failed as failure:
            outcome, detail = Outcome.FAILED, str(failure)
        except Exception as error:
            outcome = Outcome.FAILED
            detail = f"raised {type(error).__name__}: {error} (rule: {check.rule})"
    seconds = time.perf_counter() - started
    return CheckResult(check.name, outcome, f"{check.name}: {detail}", seconds)


def _prepare(
    variant: str | type[Attention],
    kwargs: Mapping[str, Any] | None,
    checks: Iterable[str] | None,
    skip: Iterable[str],
    compile_backend: str,
) -> tuple[Subject, list[Check], frozenset[str]]:
    """Validate everything and build the variant once, before any check runs."""
    spec = VariantSpec.of((variant, dict(kwargs or {})))
    selected = set(select(checks, "checks"))
    skipped = frozenset(select(skip, "skip"))
    cls = resolve(spec.variant)
    arguments = build_arguments(cls, spec.kwargs)
    try:
        with torch.random.fork_rng(devices=[]):
            cls(**arguments)
    except Exception as error:
        raise VariantBuildError(
            f"cannot build {spec.label}: {cls.__name__}({format_kwargs(arguments)}) raised "
            f"{type(error).__name__}: {error}"
        ) from error
    if "compile" in selected - skipped:
        require_backend(compile_backend)
    subject = Subject.of(spec, compile_backend, arguments)
    return subject, [check for check in CHECKS if check.name in selected], skipped


def iter_checks(
    variant: str | type[Attention],
    kwargs: Mapping[str, Any] | None = None,
    *,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    compile_backend: str = "inductor",
) -> Iterator[CheckResult]:
    """Run the conformance checks on one variant, yielding each result as its check finishes.

    Everything that could stop the checks is found before this returns (an
    unknown variant or check, arguments the constructor does not take, a
    constructor that raises, an unknown compile backend); after that, each check
    runs only when the next result is asked for, in `CHECKS` order. The
    ``attnkit check`` command prints each result as it arrives; `check_variant`
    collects them into a report.

    Args:
        variant: A registered name, or an `attnkit.Attention` subclass (it need not
            be registered).
        kwargs: Constructor arguments, on top of the standard sizes (see
            `build_arguments`).
        checks: The names of the checks to run, in `CHECKS` order; all by default.
        skip: Names of checks to report as skipped without running them.
        compile_backend: The ``torch.compile`` backend of the ``compile`` check.
            ``"inductor"`` (the default) is what users get; ``"aot_eager"`` checks
            that forward traces as one graph without generating code, much faster.

    Raises:
        UnknownVariantError: No variant has that name.
        TypeError: ``kwargs`` do not fit the constructor (see `build_arguments`).
        ValueError: ``checks`` or ``skip`` names an unknown check, or
            ``compile_backend`` is no backend ``torch.compile`` knows.
        VariantBuildError: The constructor raised; no check ran.

    Examples:
        >>> from attnkit.testing import iter_checks
        >>> results = iter_checks("causal", {"d_in": 4}, checks=["causality", "d_in_validation"])
        >>> print(next(results).format())  # d_in_validation runs now; causality has not yet
          PASS  d_in_validation  an input of width 5 raises ValueError (d_in is 4)
        >>> print(next(results).format(width=72))
          PASS  causality        outputs at positions 0 to t unchanged when tokens
                                 after t change (6 tokens)
    """
    subject, selected, skipped = _prepare(variant, kwargs, checks, skip, compile_backend)
    return (_run_check(check, subject, skipped) for check in selected)


def check_variant(
    variant: str | type[Attention],
    kwargs: Mapping[str, Any] | None = None,
    *,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    compile_backend: str = "inductor",
) -> ConformanceReport:
    """Run the conformance checks on one variant and return the report.

    The checks and the arguments are those of `iter_checks`, whose results the
    report collects.

    Returns:
        A `ConformanceReport`; ``report.ok`` is true when no check failed.

    Raises:
        UnknownVariantError: No variant has that name.
        TypeError: ``kwargs`` do not fit the constructor (see `build_arguments`).
        ValueError: ``checks`` or ``skip`` names an unknown check, or
            ``compile_backend`` is no backend ``torch.compile`` knows.
        VariantBuildError: The constructor raised; no check ran.

    Examples:
        >>> from attnkit.testing import check_variant
        >>> report = check_variant(
        ...     "causal", {"d_in": 4, "d_out": 4, "context_length": 6},
        ...     checks=["causality", "d_in_validation"],
        ... )
        >>> report.ok
        True
        >>> print(report)
        causal: d_in=4, d_out=4, context_length=6, dropout=0.0
          PASS  d_in_validation  an input of width 5 raises ValueError (d_in is 4)
          PASS  causality        outputs at positions 0 to t unchanged when tokens after t change (6 tokens)
        2 passed, 0 failed, 0 skipped
        >>> check_variant("simple", checks=["d_in_validation"])["d_in_validation"].message
        'd_in_validation: the variant accepts inputs of any width (its d_in is None)'
    """  # noqa: E501
    results = iter_checks(
        variant, kwargs, checks=checks, skip=skip, compile_backend=compile_backend
    )
    cls = resolve(variant)
    arguments = build_arguments(cls, kwargs)
    return ConformanceReport(VariantSpec(cls).name, cls, arguments, tuple(results))
