"""Results: what one check found, every check's result for a variant or kernel, how both read.

`CheckResult.format` is the one way a result is written out: a report's `str`,
and the ``attnkit check`` command as each result arrives, both print its lines.
"""

from __future__ import annotations

import enum
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from attnkit.interface import Attention
from attnkit.kernel import Kernel
from attnkit.testing._checks import CHECKS
from attnkit.testing._kernel_checks import KERNEL_CHECKS
from attnkit.testing._subject import format_kwargs

__all__ = ["CheckResult", "ConformanceReport", "Outcome"]

_MARKS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
# Check names line up in a column, the same for variants' and kernels' reports.
_NAME_WIDTH = max(len(check.name) for check in (*CHECKS, *KERNEL_CHECKS))
_NARROWEST = 30  # the least room wrapping leaves for a result's detail


class Outcome(str, enum.Enum):
    """How a check ended."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CheckResult:
    """The result of one check on one variant or kernel.

    Attributes:
        check: The check's name, for example ``"causality"``.
        outcome: Passed, failed or skipped.
        message: Starts with the check's name. For a failure it names the rule
            broken and the numbers, for example ``"causality: output at position 2
            changed when tokens after it were perturbed (max abs change 0.31)..."``;
            for a skip, the reason; for a pass, what was verified.
        seconds: How long the check took.
    """

    check: str
    outcome: Outcome
    message: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASSED

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED

    @property
    def skipped(self) -> bool:
        return self.outcome is Outcome.SKIPPED

    @property
    def detail(self) -> str:
        """The message without the check's name in front."""
        return self.message.removeprefix(f"{self.check}: ")

    def format(self, width: int | None = None) -> str:
        """The result as a report shows it: mark, check name, then the detail.

        Args:
            width: Wrap the detail to lines at most this wide (or as wide as it
                takes to leave the detail 30 characters), continuing under its
                first line; by default the detail stays on one line.

        Examples:
            >>> result = CheckResult("causality", Outcome.FAILED, "causality: output at "
            ...                      "position 2 changed when tokens after it were perturbed")
            >>> print(result.format())
              FAIL  causality        output at position 2 changed when tokens after it were perturbed
            >>> print(result.format(width=60))
              FAIL  causality        output at position 2 changed when
                                     tokens after it were perturbed
        """  # noqa: E501
        prefix = f"  {_MARKS[self.outcome.value]}  {self.check:<{_NAME_WIDTH}}  "
        if width is None:
            return prefix + self.detail
        return textwrap.fill(
            self.detail,
            width=max(width, len(prefix) + _NARROWEST),
            initial_indent=prefix,
            subsequent_indent=" " * len(prefix),
        )


@dataclass(frozen=True)
class ConformanceReport:
    """Every check's result for one variant or kernel, from `check_variant` or `check_kernel`.

    Attributes:
        variant: The variant's name (its class name if it has none), or the kernel's.
        cls: The variant class that was checked, or the `attnkit.Kernel`.
        arguments: The keyword arguments the variant was built with; empty for a kernel.
        results: One `CheckResult` per check, in the order the checks ran.
    """

    variant: str
    cls: type[Attention] | Kernel
    arguments: dict[str, Any]
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """Whether no check failed (skipped checks do not count against it)."""
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if result.failed]

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.results)

    def __getitem__(self, check: str) -> CheckResult:
        """The result of the check named ``check``."""
        for result in self.results:
            if result.check == check:
                return result
        ran = ", ".join(result.check for result in self.results)
        raise KeyError(f"no result for check {check!r}; checks that ran: {ran}")

    def summary(self) -> str:
        """For example ``"11 passed, 1 failed, 1 skipped"``."""
        counts = dict.fromkeys(Outcome, 0)
        for result in self.results:
            counts[result.outcome] += 1
        return ", ".join(f"{count} {outcome}" for outcome, count in counts.items())

    def format(self, width: int | None = None) -> str:
        """The variant and its arguments (or the kernel), each result (see `CheckResult.format`),
        the summary."""
        if isinstance(self.cls, Kernel):
            lines = [f"{self.variant} (kernel): {self.cls.summary}".rstrip(": ")]
        else:
            lines = [f"{self.variant}: {format_kwargs(self.arguments) or 'no arguments'}"]
        lines += [result.format(width) for result in self.results]
        lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()
