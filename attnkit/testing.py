"""The conformance kit: checks that an attention variant keeps the `attnkit.Attention` contract.

Run every check on one variant and read the report:

```python
from attnkit.testing import check_variant

report = check_variant("window", {"window": 3})
print(report)          # one line per check: passed, failed or skipped, and why
assert report.ok
```

or make each check its own test in a plugin's test suite:

```python
from attnkit.testing import parametrize_with_checks

@parametrize_with_checks(["window", ("window", {"window": 1})])
def test_conformance(variant, check):
    check(variant)
```

Variants are built generically: each check builds fresh modules from
`DEFAULT_ARGUMENTS`, keeping the arguments the constructor accepts, with the
caller's arguments on top. Inputs are tiny (a batch of 2 sequences of 6 tokens,
fewer if ``context_length`` is smaller), random but seeded, and float32 unless a
check is about another dtype. A check that does not apply to a variant (causality
for one that does not declare ``causal = True``, say) is reported as skipped,
with the reason. The global random state is left as it was.

The checks, in the order they run, are listed in `CHECKS`; each has a name, used
in reports, test ids and the ``checks``/``skip`` arguments, and a rule.
"""

from __future__ import annotations

import copy
import difflib
import enum
import io
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from attnkit import _arguments, registry
from attnkit.cache import KVCache
from attnkit.errors import AttnkitError
from attnkit.interface import Attention

__all__ = [
    "CHECKS",
    "DEFAULT_ARGUMENTS",
    "Check",
    "CheckResult",
    "ConformanceReport",
    "Outcome",
    "VariantBuildError",
    "VariantSpec",
    "build_arguments",
    "check_variant",
    "compile_support",
    "parametrize_with_checks",
]

DEFAULT_ARGUMENTS: dict[str, Any] = {
    "d_in": 8,
    "d_out": 8,
    "context_length": 8,
    "num_heads": 2,
    "dropout": 0.0,
}
"""The sizes variants are built with; each variant takes the ones its constructor accepts."""

_BATCH = 2
_TOKENS = 6  # fewer when context_length is smaller
_ANY_WIDTH = DEFAULT_ARGUMENTS["d_in"]  # input width for variants that accept any

# Absolute and relative tolerances, per dtype, for outputs compared against a reference.
# bfloat16 keeps 8 bits of mantissa and its error compounds through several projections.
_TOLERANCE = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (5e-2, 5e-2),
}


class VariantBuildError(AttnkitError, ValueError):
    """The variant could not be built from the arguments given; no check ran.

    The constructor's own error is chained as ``__cause__``.
    """


class Outcome(str, enum.Enum):
    """How a check ended."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CheckResult:
    """The result of one check on one variant.

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


@dataclass(frozen=True)
class ConformanceReport:
    """Every check's result for one variant, as returned by `check_variant`.

    Attributes:
        variant: The variant's name (its class name if it has none).
        cls: The variant class that was checked.
        arguments: The keyword arguments it was built with.
        results: One `CheckResult` per check, in the order the checks ran.
    """

    variant: str
    cls: type[Attention]
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
        counts = {outcome: 0 for outcome in Outcome}
        for result in self.results:
            counts[result.outcome] += 1
        return ", ".join(f"{counts[outcome]} {outcome}" for outcome in Outcome)

    def __str__(self) -> str:
        marks = {Outcome.PASSED: "PASS", Outcome.FAILED: "FAIL", Outcome.SKIPPED: "SKIP"}
        lines = [f"{self.variant}: {_format_arguments(self.arguments) or 'no arguments'}"]
        lines += [f"  {marks[result.outcome]}  {result.message}" for result in self.results]
        lines.append(self.summary())
        return "\n".join(lines)


@dataclass(frozen=True)
class VariantSpec:
    """A variant to check, and the keyword arguments to build it with.

    Attributes:
        variant: A registered name, or an `attnkit.Attention` subclass (registered or not).
        kwargs: Constructor arguments, on top of `DEFAULT_ARGUMENTS`.
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
        if isinstance(self.variant, str):
            name = self.variant
        else:
            name = self.variant.__dict__.get("name") or self.variant.__qualname__
        arguments = _format_arguments(self.kwargs)
        return f"{name}({arguments})" if arguments else name

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Check:
    """One conformance check.

    Attributes:
        name: Used in reports, test ids, and `check_variant`'s ``checks`` and ``skip``.
        rule: The rule it holds variants to, in one sentence.
    """

    name: str
    rule: str
    function: Callable[[_Subject], str] = field(repr=False, compare=False)


class _Failed(Exception):
    """Raised inside a check: the rule was broken; the message says how."""


class _Skipped(Exception):
    """Raised inside a check: it does not apply; the message says why."""


# --- Building variants and inputs ----------------------------------------------------------


def _resolve(variant: str | type[Attention]) -> type[Attention]:
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

    `DEFAULT_ARGUMENTS` filtered to those the constructor accepts, then ``kwargs``
    on top.

    Raises:
        UnknownVariantError: ``variant`` is a name nobody registered.
        TypeError: ``kwargs`` names an argument the constructor does not take, or
            the constructor requires one that neither ``kwargs`` nor the defaults
            give. The message lists what it accepts.

    Examples:
        >>> build_arguments("multihead", {"num_heads": 4})
        {'d_in': 8, 'd_out': 8, 'context_length': 8, 'num_heads': 4, 'dropout': 0.0}
        >>> build_arguments("simple")
        {}
        >>> build_arguments("causal", {"heads": 2})
        Traceback (most recent call last):
        ...
        TypeError: causal does not take an argument 'heads'; it accepts: d_in, d_out, context_length, ...
    """  # noqa: E501
    cls = _resolve(variant)
    kwargs = dict(kwargs or {})
    accepted = _arguments.accepted_arguments(cls)
    takes_any = _arguments.accepts_any_argument(cls)
    label = VariantSpec(cls).label
    listing = _arguments.format_arguments(cls)
    for name in kwargs:
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"argument names must be identifiers, got {name!r}")
        if name not in accepted and not takes_any:
            close = difflib.get_close_matches(name, list(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"{label} does not take an argument {name!r}{hint}; "
                f"it accepts: {listing or 'no arguments'}"
            )
    arguments = {k: v for k, v in DEFAULT_ARGUMENTS.items() if k in accepted}
    arguments.update(kwargs)
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in arguments]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise TypeError(
            f"{label} requires {names}, which the kit has no default for; pass a value "
            f"(attnkit check: --arg {missing[0]}=VALUE). It accepts: {listing}"
        )
    return arguments


@dataclass(frozen=True)
class _Subject:
    """What a check works on: the class, its arguments, and helpers to build and feed it."""

    cls: type[Attention]
    arguments: dict[str, Any]
    user_arguments: dict[str, Any]
    compile_backend: str

    def build(self, seed: int = 0, **overrides: Any) -> Attention:
        torch.manual_seed(seed)
        return self.cls(**{**self.arguments, **overrides})

    def tokens(self, module: Attention, wanted: int = _TOKENS) -> int:
        limit = module.context_length
        return min(wanted, limit) if limit is not None else wanted

    def width(self, module: Attention) -> int:
        return module.d_in if module.d_in is not None else _ANY_WIDTH

    def inputs(
        self,
        module: Attention,
        batch: int = _BATCH,
        tokens: int | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = 1234,
    ) -> torch.Tensor:
        tokens = self.tokens(module) if tokens is None else tokens
        generator = torch.Generator().manual_seed(seed)
        shape = (batch, tokens, self.width(module))
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


# --- The checks -----------------------------------------------------------------------------


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _expect_tensor(result: object, call: str) -> torch.Tensor:
    if not isinstance(result, torch.Tensor):
        raise _Failed(f"{call} returned {type(result).__name__}; expected a tensor")
    return result


def _largest_difference(
    actual: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    tolerance: tuple[float, float] | None = None,
) -> float | None:
    """The largest absolute difference if it exceeds the tolerance (the dtype's), else None."""
    atol, rtol = tolerance or _TOLERANCE[dtype]
    actual, expected = actual.detach().double(), expected.detach().double()
    difference = (actual - expected).abs()
    nan_mismatch = actual.isnan() != expected.isnan()
    if nan_mismatch.any():
        return float("nan")
    difference = difference.nan_to_num(0.0)
    if (difference > atol + rtol * expected.abs().nan_to_num(0.0)).any():
        return float(difference.max())
    return None


def _check_batched_shape(subject: _Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    out = _expect_tensor(module(x), "forward(x)")
    batch, tokens, _ = x.shape
    if out.dim() != 3 or _shape(out)[:2] != (batch, tokens):
        raise _Failed(
            f"forward(x) with x of shape {_shape(x)} returned shape {_shape(out)}; expected "
            f"({batch}, {tokens}, width): one context vector per token of each sequence"
        )
    declared = getattr(module, "output_dim", None)
    width = declared if declared is not None else x.shape[-1]
    if out.shape[-1] != width:
        source = "its output_dim" if declared is not None else "the input's (output_dim is None)"
        raise _Failed(
            f"forward(x) returned context vectors of width {out.shape[-1]}; expected {width}, "
            f"{source}"
        )
    if out.dtype != x.dtype:
        raise _Failed(f"forward(x) returned {out.dtype} for {x.dtype} input; expected {x.dtype}")
    lengths = sorted({1, module.context_length or tokens})
    for length in lengths:
        short = subject.inputs(module, tokens=length)
        result = _expect_tensor(module(short), "forward(x)")
        if _shape(result) != (batch, length, out.shape[-1]):
            raise _Failed(
                f"forward(x) with x of shape {_shape(short)} returned shape {_shape(result)}; "
                f"expected {(batch, length, out.shape[-1])}"
            )
    also = " and ".join(str(length) for length in lengths)
    return f"{_shape(x)} -> {_shape(out)}; also {also} token(s)"


def _check_unbatched_shape(subject: _Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    batched = _expect_tensor(module(x), "forward(x)")
    single = _expect_tensor(module(x[1]), "forward(x[1])")
    if _shape(single) != _shape(batched)[1:]:
        raise _Failed(
            f"forward(x[1]) with x[1] of shape {_shape(x[1])} returned shape {_shape(single)}; "
            f"expected {_shape(batched)[1:]}, forward(x)[1] without the batch axis"
        )
    change = _largest_difference(single, batched[1])
    if change is not None:
        raise _Failed(
            f"forward(x[1]) differs from forward(x)[1] (max abs difference {change:.3g}); "
            f"each sequence of a batch must be processed independently of the others"
        )
    return f"{_shape(x[1])} -> {_shape(single)}, equal to forward(x)[1]"


def _expect_value_error(module: Attention, x: torch.Tensor, problem: str, rule: str) -> str:
    try:
        module(x)
    except ValueError as error:
        return str(error)
    except Exception as error:
        raise _Failed(
            f"an input {problem} raised {type(error).__name__} ({error}); expected ValueError. "
            f"{rule}"
        ) from error
    raise _Failed(f"forward accepted an input {problem}. {rule}")


def _check_rank_validation(subject: _Subject) -> str:
    module = subject.build().eval()
    width = subject.width(module)
    rule = "Inputs must be (tokens, d_in) or (batch, tokens, d_in); other ranks raise ValueError."
    for shape in [(width,), (1, 2, 3, width)]:
        x = torch.randn(shape)
        _expect_value_error(module, x, f"of shape {shape} (rank {len(shape)})", rule)
    return "inputs of rank 1 and 4 raise ValueError"


def _check_d_in_validation(subject: _Subject) -> str:
    module = subject.build().eval()
    if module.d_in is None:
        if "d_in" in subject.arguments:
            raise _Failed(
                f"the variant takes d_in={subject.arguments['d_in']} but its d_in attribute is "
                f"None, so inputs of the wrong width are not caught; pass d_in to "
                f"attnkit.Attention.__init__"
            )
        raise _Skipped("the variant accepts inputs of any width (its d_in is None)")
    wrong = module.d_in + 1
    x = torch.randn(_BATCH, subject.tokens(module), wrong)
    rule = f"An input whose last axis is not d_in ({module.d_in}) must raise ValueError."
    _expect_value_error(module, x, f"of width {wrong} (shape {_shape(x)})", rule)
    return f"an input of width {wrong} raises ValueError (d_in is {module.d_in})"


def _check_need_weights(subject: _Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    batch, tokens, _ = x.shape
    result = module(x, need_weights=True)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise _Failed(
            f"forward(x, need_weights=True) returned {type(result).__name__}; expected a "
            f"(context, weights) pair"
        )
    context, weights = result
    _expect_tensor(context, "forward(x, need_weights=True)[0]")
    _expect_tensor(weights, "forward(x, need_weights=True)[1]")
    if weights.dim() != 4 or weights.shape[0] != batch or _shape(weights)[2:] != (tokens, tokens):
        raise _Failed(
            f"weights have shape {_shape(weights)}; expected (batch, heads, tokens, tokens) = "
            f"({batch}, heads, {tokens}, {tokens})"
        )
    change = _largest_difference(context, module(x))
    if change is not None:
        raise _Failed(
            f"the context returned with need_weights=True differs from forward(x) "
            f"(max abs difference {change:.3g}); need_weights must not change the result"
        )
    if (weights < 0).any() or weights.isnan().any():
        index = tuple(int(i) for i in ((weights < 0) | weights.isnan()).nonzero()[0])
        raise _Failed(
            f"weight at (batch, head, query, key) = {index} is {float(weights[index]):.3g}; "
            f"attention weights must be non-negative"
        )
    sums = weights.double().sum(-1)
    bad = (sums - 1).abs() > 1e-4
    if bad.any():
        b, h, q = (int(i) for i in bad.nonzero()[0])
        raise _Failed(
            f"weights of (batch {b}, head {h}, query {q}) sum to {float(sums[b, h, q]):.4g}; "
            f"each row of attention weights must sum to 1"
        )
    _, unbatched = module(x[0], need_weights=True)
    if _shape(unbatched) != _shape(weights)[1:]:
        raise _Failed(
            f"unbatched weights have shape {_shape(unbatched)}; expected {_shape(weights)[1:]}"
        )
    return f"weights {_shape(weights)}, non-negative, rows sum to 1"


def _check_causality(subject: _Subject) -> str:
    if not subject.cls.causal:
        raise _Skipped("the variant does not declare causal = True")
    module = subject.build().eval()
    tokens = subject.tokens(module)
    if tokens < 2:
        raise _Skipped(f"context_length {module.context_length} leaves no later token to perturb")
    x = subject.inputs(module, batch=1, tokens=tokens)
    before = module(x)
    generator = torch.Generator().manual_seed(99)
    for t in range(tokens - 1):
        changed = x.clone()
        noise = torch.randn(changed[:, t + 1 :].shape, generator=generator, dtype=x.dtype)
        changed[:, t + 1 :] = noise * 10
        after = module(changed)
        kept = slice(0, t + 1)  # the positions whose outputs must not move
        atol, rtol = _TOLERANCE[torch.float32]
        moved = (after[0, kept] - before[0, kept]).abs() > atol + rtol * before[0, kept].abs()
        leak = moved.any(-1)  # per position
        if leak.any():
            position = int(leak.nonzero()[0])
            change = float((after[:, position] - before[:, position]).abs().max())
            raise _Failed(
                f"output at position {position} changed when tokens after it were perturbed "
                f"(tokens {t + 1} to {tokens - 1}; max abs change {change:.3g}); a causal "
                f"variant's output at position t may depend only on tokens 0 to t"
            )
    try:
        _, weights = module(x, need_weights=True)
        seen = isinstance(weights, torch.Tensor) and _shape(weights)[2:] == (tokens, tokens)
        seen = seen and weights.dim() == 4
    except Exception:
        seen = False  # need_weights is the need_weights check's business
    if seen:
        future = torch.ones(tokens, tokens, dtype=torch.bool).triu(1)
        ahead = (weights.abs() > 1e-6) & future
        if ahead.any():
            b, h, q, k = (int(i) for i in ahead.nonzero()[0])
            raise _Failed(
                f"the weight of query {q} on key {k}, a later token, is "
                f"{float(weights[b, h, q, k]):.3g} (batch {b}, head {h}); a causal variant's "
                f"weights must be 0 above the diagonal"
            )
    return f"outputs at positions 0 to t unchanged when tokens after t change ({tokens} tokens)"


def _check_kv_cache(subject: _Subject) -> str:
    if not subject.cls.supports_kv_cache:
        raise _Skipped("the variant does not declare supports_kv_cache = True")
    if not subject.cls.causal:
        raise _Failed(
            "the variant declares supports_kv_cache = True but not causal = True; a cache of "
            "earlier tokens' keys and values is only valid when earlier outputs ignore later tokens"
        )
    module = subject.build().eval()
    tokens = subject.tokens(module)
    x = subject.inputs(module, tokens=tokens)
    chunks = [min(2, tokens)] + [1] * (tokens - min(2, tokens))  # a prompt, then one at a time
    with torch.no_grad():
        full = module(x)
        cache = KVCache()
        pieces, start = [], 0
        for size in chunks:
            pieces.append(
                _expect_tensor(module(x[:, start : start + size], cache=cache), "forward")
            )
            start += size
    cached = torch.cat(pieces, dim=1)
    atol, rtol = _TOLERANCE[torch.float32]
    wrong = ((cached - full).abs() > atol + rtol * full.abs()).any(-1).any(0)
    if wrong.any():
        position = int(wrong.nonzero()[0])
        change = float((cached[:, position] - full[:, position]).abs().max())
        raise _Failed(
            f"fed through a KVCache ({chunks[0]} tokens, then one at a time), the output at "
            f"position {position} differs from the full sequence's by up to {change:.3g}; "
            f"forward(x, cache=...) must equal the matching rows of forward on all tokens"
        )
    if cache.length != tokens:
        raise _Failed(f"after {tokens} tokens the cache reports length {cache.length}")
    return f"{tokens} tokens fed through a KVCache ({chunks[0]}, then 1 at a time) match"


def _check_determinism(subject: _Subject) -> str:
    overrides = {}
    if "dropout" in _arguments.accepted_arguments(subject.cls) and (
        "dropout" not in subject.user_arguments
    ):
        overrides["dropout"] = 0.5  # eval mode must switch it off
    module = subject.build(**overrides).eval()
    x = subject.inputs(module)
    first, second = module(x), module(x)
    if not torch.equal(first, second):
        change = float((first - second).abs().max())
        with_dropout = " with dropout=0.5" if overrides else ""
        raise _Failed(
            f"two forward passes in eval mode{with_dropout} differ (max abs difference "
            f"{change:.3g}); in eval mode, dropout and any other randomness must be off"
        )
    return "two forward passes in eval mode agree exactly" + (
        " (built with dropout=0.5)" if overrides else ""
    )


@torch.enable_grad()
def _check_gradients(subject: _Subject) -> str:
    module = subject.build().train()
    x = subject.inputs(module).requires_grad_(True)
    out = _expect_tensor(module(x), "forward(x)")
    if not out.requires_grad:
        raise _Failed("the output does not require grad; forward must not detach its result")
    out.square().sum().backward()
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    for name, parameter in trainable:
        if parameter.grad is None:
            raise _Failed(
                f"parameter {name!r} got no gradient; every trainable parameter must take part "
                f"in forward (freeze it with requires_grad_(False) if that is intended)"
            )
        if not parameter.grad.isfinite().all():
            raise _Failed(f"parameter {name!r} got a non-finite gradient")
    if x.grad is None or not x.grad.isfinite().all() or not x.grad.abs().sum() > 0:
        raise _Failed("the input got no (finite, non-zero) gradient; the output must depend on it")
    if not trainable:
        return "gradients reach the input (the variant has no trainable parameters)"
    return f"gradients reach the input and all {len(trainable)} trainable parameters"


def _check_dtype(subject: _Subject, dtype: torch.dtype) -> str:
    module = subject.build().eval()
    reference_module = copy.deepcopy(module).to(torch.float64)
    x = subject.inputs(module, dtype=torch.float64)
    reference = _expect_tensor(reference_module(x), "forward(x) in float64")
    if dtype == torch.float64:
        out, compared_with = reference, _expect_tensor(module(x.float()), "forward(x)")
    else:
        converted = copy.deepcopy(module).to(dtype)
        out = _expect_tensor(converted(x.to(dtype)), f"forward(x) in {dtype}")
        compared_with = out
    if out.dtype != dtype:
        raise _Failed(
            f"a module and input in {dtype} gave output in {out.dtype}; the output must keep "
            f"the input's dtype"
        )
    if not out.isfinite().all():
        raise _Failed(f"the output in {dtype} has NaN or infinite values")
    # float64 is the reference: float32 must agree with it to float32's precision, and
    # bfloat16 to bfloat16's.
    precision = torch.float32 if dtype == torch.float64 else dtype
    change = _largest_difference(compared_with, reference, precision)
    if change is not None:
        what = "float32" if dtype == torch.float64 else str(dtype).removeprefix("torch.")
        atol, rtol = _TOLERANCE[precision]
        raise _Failed(
            f"the {what} output differs from the float64 output of the same weights by up to "
            f"{change:.3g} (tolerance atol={atol:g}, rtol={rtol:g})"
        )
    atol, rtol = _TOLERANCE[precision]
    if dtype == torch.float64:
        return f"float64 output; float32 agrees with it within atol={atol:g}, rtol={rtol:g}"
    return f"bfloat16 output, within atol={atol:g}, rtol={rtol:g} of the float64 output"


def _check_float64(subject: _Subject) -> str:
    return _check_dtype(subject, torch.float64)


def _check_bfloat16(subject: _Subject) -> str:
    return _check_dtype(subject, torch.bfloat16)


def _check_state_dict(subject: _Subject) -> str:
    original = subject.build(seed=0).eval()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = subject.build(seed=1).eval()
    try:
        restored.load_state_dict(torch.load(buffer, weights_only=True))
    except Exception as error:
        raise _Failed(
            f"load_state_dict of a saved state_dict raised {type(error).__name__}: {error}"
        ) from error
    x = subject.inputs(original)
    before, after = original(x), restored(x)
    if not torch.equal(before, after):
        change = float((before - after).abs().max())
        raise _Failed(
            f"a module built with another seed and loaded from the state_dict gives different "
            f"outputs (max abs difference {change:.3g}); everything forward depends on must be "
            f"a parameter or a persistent buffer"
        )
    return f"saved and loaded {len(original.state_dict())} tensor(s); outputs identical"


def compile_support(backend: str = "inductor") -> str | None:
    """Why ``torch.compile`` cannot run here with ``backend``, or ``None`` if it can.

    Checks that this Python and platform support ``torch.compile`` at all, and
    that the ``inductor`` backend finds the C++ compiler it needs on the CPU.
    """
    try:
        import torch._dynamo
    except Exception as error:  # pragma: no cover - depends on the platform
        return f"torch._dynamo cannot be imported here ({type(error).__name__}: {error})"
    is_supported = getattr(torch._dynamo, "is_dynamo_supported", None)
    if is_supported is not None and not is_supported():
        version = ".".join(map(str, sys.version_info[:3]))
        return (
            f"torch {torch.__version__} does not support torch.compile on Python {version} "
            f"({sys.platform})"
        )
    if backend == "inductor":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
        except ImportError:  # pragma: no cover - the helper moved; let compile decide
            return None
        try:
            get_cpp_compiler()
        except Exception as error:
            return (
                f"the inductor backend needs a C++ compiler on the CPU and found none "
                f"({type(error).__name__}: {error}); install one (gcc or clang), or use "
                f"another backend, such as 'aot_eager'"
            )
    return None


def _check_compile(subject: _Subject) -> str:
    backend = subject.compile_backend
    with warnings.catch_warnings():
        # torch's own modules warn about their deprecations as the compiler imports them.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        reason = compile_support(backend)
        if reason is not None:
            raise _Skipped(reason)
        import torch._dynamo

        module = subject.build().eval()
        x = subject.inputs(module)
        torch._dynamo.reset()
        try:
            with torch.no_grad():
                compiled = torch.compile(module, fullgraph=True, backend=backend)
                try:
                    out = compiled(x)
                except Exception as error:
                    lines = str(error).strip().splitlines()
                    raise _Failed(
                        f"torch.compile(fullgraph=True, backend={backend!r}) could not compile "
                        f"forward: {type(error).__name__}: {lines[0][:300] if lines else ''}; "
                        f"forward must trace as one graph (no data-dependent Python control "
                        f"flow, .item(), print or other graph breaks)"
                    ) from error
                expected = module(x)
        finally:
            torch._dynamo.reset()
    out = _expect_tensor(out, "the compiled forward(x)")
    if _shape(out) != _shape(expected):
        raise _Failed(f"the compiled module returned {_shape(out)}; eager gives {_shape(expected)}")
    change = _largest_difference(out, expected)
    if change is not None:
        raise _Failed(
            f"the compiled module's output differs from eager by up to {change:.3g} "
            f"(backend {backend!r}); compiled and eager forward must compute the same"
        )
    return f"compiled with fullgraph=True (backend {backend!r}); output equal to eager"


def _target_device() -> torch.device:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return torch.device(accelerator.current_accelerator())  # pragma: no cover
    if torch.cuda.is_available():  # pragma: no cover - torch < 2.6 with a GPU
        return torch.device("cuda")
    return torch.device("meta")


def _check_to_device(subject: _Subject) -> str:
    module = subject.build().eval()
    for prefix, submodule in module.named_modules():
        for attribute, value in vars(submodule).items():
            if isinstance(value, torch.Tensor):
                name = f"{prefix}.{attribute}" if prefix else attribute
                raise _Failed(
                    f"tensor attribute {name!r} is neither a parameter nor a buffer, so .to() "
                    f"leaves it behind; register it with register_buffer (or nn.Parameter)"
                )
    device = _target_device()
    x = subject.inputs(module)
    expected = module(x)
    moved = module.to(device)
    for name, tensor in [*moved.named_parameters(), *moved.named_buffers()]:
        if tensor.device.type != device.type:
            raise _Failed(f"after .to({device.type!r}), {name!r} is still on {tensor.device}")
    try:
        out = moved(x.to(device))
    except Exception as error:
        raise _Failed(
            f"after .to({device.type!r}), forward on a {device.type} input raised "
            f"{type(error).__name__}: {error}; forward must create its tensors on the input's "
            f"device"
        ) from error
    out = _expect_tensor(out, f"forward(x) on {device.type}")
    if out.device.type != device.type:
        raise _Failed(f"after .to({device.type!r}), forward returned a tensor on {out.device}")
    if device.type == "meta":
        if _shape(out) != _shape(expected):
            raise _Failed(
                f"on the meta device forward returned {_shape(out)}, not {_shape(expected)}"
            )
        return "parameters, buffers and forward all move to the 'meta' device (no accelerator here)"
    # Accelerator kernels (fused attention, another summation order) differ a little more.
    change = _largest_difference(out.cpu(), expected, tolerance=(1e-4, 1e-4))  # pragma: no cover
    if change is not None:  # pragma: no cover
        raise _Failed(f"on {device} the output differs from the CPU's by up to {change:.3g}")
    return f"parameters, buffers and forward all move to {device}"  # pragma: no cover


CHECKS: tuple[Check, ...] = (
    Check(
        "batched_shape",
        "forward((batch, tokens, d_in)) returns (batch, tokens, output_dim) in the input's dtype.",
        _check_batched_shape,
    ),
    Check(
        "unbatched_shape",
        "forward((tokens, d_in)) returns forward(x[None])[0]: sequences are independent.",
        _check_unbatched_shape,
    ),
    Check(
        "rank_validation",
        "Inputs of rank other than 2 or 3 raise ValueError.",
        _check_rank_validation,
    ),
    Check(
        "d_in_validation",
        "An input whose width is not d_in raises ValueError.",
        _check_d_in_validation,
    ),
    Check(
        "need_weights",
        "need_weights=True returns (context, weights (batch, heads, tokens, tokens)), weights "
        "non-negative with rows summing to 1, context unchanged.",
        _check_need_weights,
    ),
    Check(
        "causality",
        "A variant declaring causal = True: output at position t ignores tokens after t.",
        _check_causality,
    ),
    Check(
        "kv_cache",
        "A variant declaring supports_kv_cache = True: tokens fed through a KVCache give the "
        "outputs of the whole sequence at once.",
        _check_kv_cache,
    ),
    Check(
        "determinism", "In eval mode, forward is deterministic (dropout off).", _check_determinism
    ),
    Check(
        "gradients",
        "Gradients reach the input and every trainable parameter.",
        _check_gradients,
    ),
    Check(
        "float64",
        "In float64 the output is float64 and matches float32 to float32 precision.",
        _check_float64,
    ),
    Check(
        "bfloat16",
        "In bfloat16 the output is bfloat16, finite, and close to the float64 output.",
        _check_bfloat16,
    ),
    Check(
        "state_dict",
        "Loading a saved state_dict into a fresh module reproduces the outputs exactly.",
        _check_state_dict,
    ),
    Check(
        "compile",
        "torch.compile(fullgraph=True) compiles forward, and its output equals eager.",
        _check_compile,
    ),
    Check(
        "to_device",
        "The module moves with .to(): no stray tensor attributes; forward runs on the new device.",
        _check_to_device,
    ),
)
_BY_NAME = {check.name: check for check in CHECKS}


def _select(names: Iterable[str] | None, what: str) -> list[str]:
    if names is None:
        return list(_BY_NAME)
    if isinstance(names, str):
        names = [names]
    selected = list(dict.fromkeys(names))
    for name in selected:
        if name not in _BY_NAME:
            close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(
                f"unknown check {name!r} in {what}{hint} Checks: {', '.join(_BY_NAME)}"
            )
    return selected


def _run(check: Check, subject: _Subject, skip: frozenset[str] = frozenset()) -> CheckResult:
    started = time.perf_counter()
    if check.name in skip:
        outcome, detail = Outcome.SKIPPED, "skipped on request"
    else:
        try:
            # Gradients are off but where a check turns them on (the gradients check).
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                detail = check.function(subject)
            outcome = Outcome.PASSED
        except _Skipped as reason:
            outcome, detail = Outcome.SKIPPED, str(reason)
        except _Failed as failure:
            outcome, detail = Outcome.FAILED, str(failure)
        except Exception as error:
            outcome = Outcome.FAILED
            detail = f"raised {type(error).__name__}: {error} (rule: {check.rule})"
    seconds = time.perf_counter() - started
    return CheckResult(check.name, outcome, f"{check.name}: {detail}", seconds)


def _subject(
    spec: VariantSpec, compile_backend: str, arguments: dict[str, Any] | None = None
) -> _Subject:
    cls = _resolve(spec.variant)
    return _Subject(
        cls=cls,
        arguments=arguments if arguments is not None else build_arguments(cls, spec.kwargs),
        user_arguments=dict(spec.kwargs),
        compile_backend=compile_backend,
    )


def check_variant(
    variant: str | type[Attention],
    kwargs: Mapping[str, Any] | None = None,
    *,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    compile_backend: str = "inductor",
) -> ConformanceReport:
    """Run the conformance checks on one variant and return the report.

    Args:
        variant: A registered name, or an `attnkit.Attention` subclass (it need not
            be registered).
        kwargs: Constructor arguments, on top of `DEFAULT_ARGUMENTS` (see
            `build_arguments`).
        checks: The names of the checks to run, in `CHECKS` order; all by default.
        skip: Names of checks to report as skipped without running them.
        compile_backend: The ``torch.compile`` backend of the ``compile`` check.
            ``"inductor"`` (the default) is what users get; ``"aot_eager"`` checks
            that forward traces as one graph without generating code, much faster.

    Returns:
        A `ConformanceReport`; ``report.ok`` is true when no check failed.

    Raises:
        UnknownVariantError: No variant has that name.
        TypeError: ``kwargs`` do not fit the constructor (see `build_arguments`).
        ValueError: ``checks`` or ``skip`` names an unknown check.
        VariantBuildError: The constructor raised; no check ran.

    Examples:
        >>> from attnkit.testing import check_variant
        >>> report = check_variant("causal", checks=["causality", "d_in_validation"])
        >>> report.ok
        True
        >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
        causal: d_in=8, d_out=8, context_length=8, dropout=0.0
          PASS  d_in_validation: an input of width 9 raises ValueError (d_in is 8)
          PASS  causality: outputs at positions 0 to t unchanged when tokens after t change (6 tokens)
        2 passed, 0 failed, 0 skipped
        >>> check_variant("simple", checks=["d_in_validation"])["d_in_validation"].message
        'd_in_validation: the variant accepts inputs of any width (its d_in is None)'
    """  # noqa: E501
    spec = VariantSpec.of((variant, dict(kwargs or {})))
    selected = set(_select(checks, "checks"))
    skipped = frozenset(_select(skip, "skip"))
    cls = _resolve(spec.variant)
    arguments = build_arguments(cls, spec.kwargs)
    try:
        with torch.random.fork_rng(devices=[]):
            cls(**arguments)
    except Exception as error:
        raise VariantBuildError(
            f"cannot build {spec.label}: {cls.__name__}({_format_arguments(arguments)}) raised "
            f"{type(error).__name__}: {error}"
        ) from error
    subject = _subject(spec, compile_backend, arguments)
    results = tuple(_run(check, subject, skipped) for check in CHECKS if check.name in selected)
    label = cls.__dict__.get("name") or cls.__qualname__
    return ConformanceReport(label, cls, arguments, results)


class _PytestCheck:
    """One check, as the ``check`` argument `parametrize_with_checks` hands a test."""

    def __init__(self, check: Check, compile_backend: str, skip: frozenset[str]) -> None:
        self.check = check
        self.compile_backend = compile_backend
        self.skip = skip

    def __repr__(self) -> str:
        return self.check.name

    def __call__(self, variant: VariantSpec | str | type[Attention] | tuple) -> CheckResult:
        import pytest

        spec = VariantSpec.of(variant)
        result = _run(self.check, _subject(spec, self.compile_backend), self.skip)
        if result.failed:
            pytest.fail(f"{spec.label}: {result.message}", pytrace=False)
        if result.skipped:
            pytest.skip(result.message)
        return result


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
    selected = _select(checks, "checks")
    skipped = frozenset(_select(skip, "skip"))
    parameters = [
        pytest.param(
            spec,
            _PytestCheck(_BY_NAME[name], compile_backend, skipped),
            id=f"{spec.label}-{name}",
        )
        for spec in specs
        for name in selected
    ]
    return pytest.mark.parametrize(("variant", "check"), parameters)


def _format_arguments(arguments: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in arguments.items())
