"""Running the checks: `iter_checks` (variants) and `iter_kernel_checks` (kernels)
yield each result as its check finishes.

Every door to the kit goes through them: `check_variant` and `check_kernel`
collect the results into a report, the ``attnkit check`` command prints each as
it arrives, and each test that `parametrize_with_checks` or
`parametrize_with_kernel_checks` makes takes the one result of its check.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from attnkit import registry
from attnkit._suggest import did_you_mean
from attnkit.interface import Attention
from attnkit.kernel import Kernel
from attnkit.testing._checks import CHECKS, require_backend
from attnkit.testing._common import Check, Failed, Skipped
from attnkit.testing._kernel_checks import KERNEL_CHECKS, KernelSubject
from attnkit.testing._report import CheckResult, ConformanceReport, Outcome
from attnkit.testing._subject import (
    Subject,
    VariantBuildError,
    VariantSpec,
    build_arguments,
    format_kwargs,
    resolve,
)

__all__ = [
    "check_kernel",
    "check_variant",
    "iter_checks",
    "iter_kernel_checks",
    "resolve_kernel",
    "select",
]


def select(names: Iterable[str] | None, what: str, among: Sequence[Check] = CHECKS) -> list[str]:
    """The names in ``names`` (all of ``among`` if ``None``), each once; unknown names raise."""
    known = [check.name for check in among]
    if names is None:
        return known
    if isinstance(names, str):
        names = [names]
    selected = list(dict.fromkeys(names))
    for name in selected:
        if name not in known:
            hint = did_you_mean(name, known)
            raise ValueError(
                f"unknown check {name!r} in {what}{'; ' + hint if hint else '.'} "
                f"Checks: {', '.join(known)}"
            )
    return selected


def _run_check(
    check: Check, subject: Subject | KernelSubject, skip: frozenset[str] = frozenset()
) -> CheckResult:
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


# --- Kernels -----------------------------------------------------------------------------------


def resolve_kernel(kernel: str | Kernel) -> Kernel:
    """The `attnkit.Kernel` for a registered name, or ``kernel`` itself.

    Raises:
        UnknownKernelError: No kernel has that name; the message lists them.
        TypeError: ``kernel`` is neither a name nor an `attnkit.Kernel`.
    """
    if isinstance(kernel, (str, Kernel)):
        return registry.get_kernel(kernel)
    raise TypeError(
        f"expected a kernel name or an attnkit.Kernel, got {kernel!r}; registered kernels: "
        f"{', '.join(registry.list_kernels())}"
    )


def iter_kernel_checks(
    kernel: str | Kernel,
    *,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> Iterator[CheckResult]:
    """Run the kernel conformance checks on one kernel, yielding each result as it finishes.

    Each check calls the kernel on seeded random inputs and compares what it
    returns with a float64 reference written in the kit (see `KERNEL_CHECKS`).
    A kernel that raises `NotImplementedError` for a case, such as FlexAttention's
    backward pass on the CPU, has that check skipped, with its own message as the
    reason. An unknown kernel or check is refused before this returns; each
    check runs only when the next result is asked for, in `KERNEL_CHECKS` order.

    Args:
        kernel: A registered kernel's name, or an `attnkit.Kernel` (registered or not).
        checks: The names of the checks to run, in `KERNEL_CHECKS` order; all by default.
        skip: Names of checks to report as skipped without running them.

    Raises:
        UnknownKernelError: No kernel has that name.
        TypeError: ``kernel`` is neither a name nor an `attnkit.Kernel`.
        ValueError: ``checks`` or ``skip`` names an unknown check.

    Examples:
        >>> from attnkit.testing import iter_kernel_checks
        >>> for result in iter_kernel_checks("sdpa", checks=["causal", "weights"]):
        ...     print(result.format(width=80))
          PASS  causal            causal(): within atol=1e-05, rtol=1e-05 (largest
                                  difference ...); batch 2, 4 heads, 200 tokens, head_dim 16
          SKIP  weights           the kernel does not declare returns_weights
    """
    resolved = resolve_kernel(kernel)
    selected = set(select(checks, "checks", KERNEL_CHECKS))
    skipped = frozenset(select(skip, "skip", KERNEL_CHECKS))
    subject = KernelSubject(resolved)
    return (
        _run_check(check, subject, skipped) for check in KERNEL_CHECKS if check.name in selected
    )


def check_kernel(
    kernel: str | Kernel,
    *,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> ConformanceReport:
    """Run the kernel conformance checks on one kernel and return the report.

    The checks and the arguments are those of `iter_kernel_checks`, whose
    results the report collects.

    Returns:
        A `ConformanceReport` whose ``cls`` is the `attnkit.Kernel`; ``report.ok``
        is true when no check failed.

    Raises:
        UnknownKernelError: No kernel has that name.
        TypeError: ``kernel`` is neither a name nor an `attnkit.Kernel`.
        ValueError: ``checks`` or ``skip`` names an unknown check.

    Examples:
        >>> from attnkit.testing import check_kernel
        >>> report = check_kernel("explicit", checks=["masked_rows", "weights"])
        >>> report.ok
        True
        >>> print(report.summary())
        2 passed, 0 failed, 0 skipped
    """
    resolved = resolve_kernel(kernel)
    results = tuple(iter_kernel_checks(resolved, checks=checks, skip=skip))
    return ConformanceReport(resolved.name, resolved, {}, results)
