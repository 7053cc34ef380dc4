"""The conformance kit: checks that an attention variant keeps the `attnkit.Attention` contract.

Run every check on one variant and read the report:

```python
from attnkit.testing import check_variant

report = check_variant("window", {"window": 3})
print(report)          # one line per check: passed, failed or skipped, and why
assert report.ok
```

take the results one at a time, as the ``attnkit check`` command does:

```python
from attnkit.testing import iter_checks

for result in iter_checks("window", {"window": 3}):
    print(result.format())
```

or make each check its own test in a plugin's test suite:

```python
from attnkit.testing import parametrize_with_checks

@parametrize_with_checks(["window", ("window", {"window": 1})])
def test_conformance(variant, check):
    check(variant)
```

Variants are built generically: each check builds fresh modules from small
standard sizes, keeping the arguments the constructor accepts, with the caller's
arguments on top (see `build_arguments`). Inputs are tiny (a batch of 2
sequences of 6 tokens, fewer if ``context_length`` is smaller), random but
seeded, and float32 unless a check is about another dtype. A check that does not
apply to a variant (causality for one that does not declare ``causal = True``,
say) is reported as skipped, with the reason. The global random state is left as
it was.

The checks, in the order they run, are listed in `CHECKS`; each has a name, used
in reports, test ids and the ``checks``/``skip`` arguments, and a rule. A variant
is held to the capabilities it declares (the weights, the KV cache, a padding
``attention_mask``, ``position_ids``); the checks of the others are skipped.

Kernels (`attnkit.Kernel`) have a kit of their own, with the same doors and the
same results: `iter_kernel_checks`, `check_kernel` and
`parametrize_with_kernel_checks` run the checks of `KERNEL_CHECKS`, which compare
a kernel with a float64 reference for every kind of mask, cached keys, grouped
heads, fully masked rows, bfloat16, the weights, dropout and gradients:

```python
from attnkit.testing import parametrize_with_kernel_checks

@parametrize_with_kernel_checks(["chunked"])
def test_kernel_conformance(kernel, check):
    check(kernel)
```

The kit's modules, each with one job: ``_common`` (what every check shares),
``_checks`` (the variant checks), ``_kernel_checks`` (the kernel checks and their
reference), ``_report`` (results and how they read), ``_run`` (running them),
``_pytest`` (the pytest integration) and ``_subject`` (building the variant and
its inputs). Import from ``attnkit.testing``; the modules are private.
"""

from attnkit.testing._checks import CHECKS, compile_support
from attnkit.testing._common import Check
from attnkit.testing._kernel_checks import KERNEL_CHECKS
from attnkit.testing._pytest import parametrize_with_checks, parametrize_with_kernel_checks
from attnkit.testing._report import CheckResult, ConformanceReport, Outcome
from attnkit.testing._run import check_kernel, check_variant, iter_checks, iter_kernel_checks
from attnkit.testing._subject import VariantBuildError, VariantSpec, build_arguments

__all__ = [
    "CHECKS",
    "KERNEL_CHECKS",
    "Check",
    "CheckResult",
    "ConformanceReport",
    "Outcome",
    "VariantBuildError",
    "VariantSpec",
    "build_arguments",
    "check_kernel",
    "check_variant",
    "compile_support",
    "iter_checks",
    "iter_kernel_checks",
    "parametrize_with_checks",
    "parametrize_with_kernel_checks",
]
