"""The pytest integration: `parametrize_with_checks` and `parametrize_with_kernel_checks`
make every check its own test."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attnkit.interface import Attention
from attnkit.kernel import Kernel
from attnkit.testing._kernel_checks import KERNEL_CHECKS
from attnkit.testing._report import CheckResult
from attnkit.testing._run import iter_checks, iter_kernel_checks, select
from attnkit.testing._subject import VariantSpec

__all__ = ["parametrize_with_checks", "parametrize_with_kernel_checks"]


def _outcome(label: str, result: CheckResult) -> CheckResult:
    """Fail or skip the running test as ``result`` says; return it if it passed."""
    import pytest

    if result.failed:
        pytest.fail(f"{label}: {result.message}", pytrace=False)
    if result.skipped:
        pytest.skip(result.message)
    return result


class _PytestCheck:
    """One check, as the ``check`` argument `parametrize_with_checks` hands a test."""

    def __init__(self, name: str, compile_backend: str, skip: frozenset[str]) -> None:
        self.name = name
        self.compile_backend = compile_backend
        self.skip = skip

    def __repr__(self) -> str:
        return self.name

    def __call__(self, variant: VariantSpec | str | type[Attention] | tuple) -> CheckResult:
        spec = VariantSpec.of(variant)
        [result] = iter_checks(
            spec.variant,
            spec.kwargs,
            checks=[self.name],
            skip=self.skip,
            compile_backend=self.compile_backend,
        )
        return _outcome(spec.label, result)


def parametrize_with_checks(
    variants: Sequence[VariantSpec | str | type[Attention] | tuple[Any, Mapping[str, Any]]],
    *,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    compile_backend: str = "inductor",
) -> Any:
    """A ``pytest.mark.parametrize`` decorator that makes every check its own test.

    The decorated test takes two arguments, ``variant`` and ``check``, and calls
    ``check(variant)``, which fails the test with the check's message if the rule
    is broken and skips it, with the reason, if the check does not apply. Test ids
    read ``<variant>-<check>``, for example ``window(window=1)-causality``, so
    ``pytest -k causality`` selects one check.

    Args:
        variants: Each a registered name, an `attnkit.Attention` subclass, or a
            ``(name_or_class, kwargs)`` pair. Names are looked up when the test
            runs, not when it is collected.
        checks: The names of the checks to generate tests for; all by default.
        skip: Names of checks whose tests are generated but skip, saying so.
        compile_backend: The ``torch.compile`` backend of the ``compile`` check.

    Examples:
        In a plugin's ``tests/test_conformance.py``:

        ```python
        from attnkit.testing import parametrize_with_checks

        @parametrize_with_checks(["window", ("window", {"window": 1})])
        def test_conformance(variant, check):
            check(variant)
        ```
    """
    import pytest

    specs = [VariantSpec.of(variant) for variant in variants]
    selected = select(checks, "checks")
    skipped = frozenset(select(skip, "skip"))
    parameters = [
        pytest.param(spec, _PytestCheck(name, compile_backend, skipped), id=f"{spec.label}-{name}")
        for spec in specs
        for name in selected
    ]
    return pytest.mark.parametrize(("variant", "check"), parameters)


class _PytestKernelCheck:
    """One kernel check, as the ``check`` argument `parametrize_with_kernel_checks` hands a test."""

    def __init__(self, name: str, skip: frozenset[str]) -> None:
        self.name = name
        self.skip = skip

    def __repr__(self) -> str:
        return self.name

    def __call__(self, kernel: str | Kernel) -> CheckResult:
        [result] = iter_kernel_checks(kernel, checks=[self.name], skip=self.skip)
        return _outcome(kernel.name if isinstance(kernel, Kernel) else kernel, result)


def parametrize_with_kernel_checks(
    kernels: Sequence[str | Kernel],
    *,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> Any:
    """A ``pytest.mark.parametrize`` decorator that makes every kernel check its own test.

    The decorated test takes two arguments, ``kernel`` and ``check``, and calls
    ``check(kernel)``, which fails the test with the check's message if the rule
    is broken and skips it, with the reason, if the check does not apply (or the
    kernel raised `NotImplementedError` for it). Test ids read ``<kernel>-<check>``,
    for example ``sdpa-masked_rows``.

    Args:
        kernels: Each a registered kernel's name or an `attnkit.Kernel`. Names are
            looked up when the test runs, not when it is collected.
        checks: The names of the checks to generate tests for; all by default.
        skip: Names of checks whose tests are generated but skip, saying so.

    Examples:
        In a plugin's ``tests/test_conformance.py``:

        ```python
        import attnkit
        from attnkit.testing import parametrize_with_kernel_checks

        @parametrize_with_kernel_checks(["chunked", attnkit.Kernel("mine", my_function)])
        def test_kernel_conformance(kernel, check):
            check(kernel)
        ```
    """
    import pytest

    selected = select(checks, "checks", KERNEL_CHECKS)
    skipped = frozenset(select(skip, "skip", KERNEL_CHECKS))
    parameters = [
        pytest.param(
            kernel,
            _PytestKernelCheck(name, skipped),
            id=f"{kernel.name if isinstance(kernel, Kernel) else kernel}-{name}",
        )
        for kernel in kernels
        for name in selected
    ]
    return pytest.mark.parametrize(("kernel", "check"), parameters)
