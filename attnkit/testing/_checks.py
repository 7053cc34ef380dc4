"""The conformance checks: each a rule an attention variant must keep, and the code that tests it.

A check's function takes the `Subject` (the variant, its arguments, and helpers
that build fresh modules and seeded inputs) and returns what it verified; it
raises `Failed`, saying which rule broke and by how much, or `Skipped`, saying
why the check does not apply. `CHECKS` lists them in the order they run.
"""

from __future__ import annotations

import copy
import io
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from attnkit import _arguments
from attnkit._suggest import did_you_mean
from attnkit.cache import KVCache
from attnkit.interface import Attention
from attnkit.testing._subject import BATCH, Subject

__all__ = ["CHECKS", "Check", "Failed", "Skipped", "compile_support", "require_backend"]

# Absolute and relative tolerances, per dtype, for outputs compared against a reference.
# bfloat16 keeps 8 bits of mantissa and its error compounds through several projections.
_TOLERANCE = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (5e-2, 5e-2),
}


@dataclass(frozen=True)
class Check:
    """One conformance check.

    Attributes:
        name: Used in reports, test ids, and `check_variant`'s ``checks`` and ``skip``.
        rule: The rule it holds variants to, in one sentence.
    """

    name: str
    rule: str
    function: Callable[[Subject], str] = field(repr=False, compare=False)


class Failed(Exception):
    """Raised inside a check: the rule was broken; the message says how."""


class Skipped(Exception):
    """Raised inside a check: it does not apply; the message says why."""


# --- The checks -----------------------------------------------------------------------------


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _expect_tensor(result: object, call: str) -> torch.Tensor:
    if not isinstance(result, torch.Tensor):
        raise Failed(f"{call} returned {type(result).__name__}; expected a tensor")
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


def _check_batched_shape(subject: Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    out = _expect_tensor(module(x), "forward(x)")
    batch, tokens, _ = x.shape
    if out.dim() != 3 or _shape(out)[:2] != (batch, tokens):
        raise Failed(
            f"forward(x) with x of shape {_shape(x)} returned shape {_shape(out)}; expected "
            f"({batch}, {tokens}, width): one context vector per token of each sequence"
        )
    declared = getattr(module, "output_dim", None)
    width = declared if declared is not None else x.shape[-1]
    if out.shape[-1] != width:
        source = "its output_dim" if declared is not None else "the input's (output_dim is None)"
        raise Failed(
            f"forward(x) returned context vectors of width {out.shape[-1]}; expected {width}, "
            f"{source}"
        )
    if out.dtype != x.dtype:
        raise Failed(f"forward(x) returned {out.dtype} for {x.dtype} input; expected {x.dtype}")
    lengths = sorted({1, module.context_length or tokens})
    for length in lengths:
        short = subject.inputs(module, tokens=length)
        result = _expect_tensor(module(short), "forward(x)")
        if _shape(result) != (batch, length, out.shape[-1]):
            raise Failed(
                f"forward(x) with x of shape {_shape(short)} returned shape {_shape(result)}; "
                f"expected {(batch, length, out.shape[-1])}"
            )
    also = " and ".join(str(length) for length in lengths)
    return f"{_shape(x)} -> {_shape(out)}; also {also} token(s)"


def _check_unbatched_shape(subject: Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    batched = _expect_tensor(module(x), "forward(x)")
    single = _expect_tensor(module(x[1]), "forward(x[1])")
    if _shape(single) != _shape(batched)[1:]:
        raise Failed(
            f"forward(x[1]) with x[1] of shape {_shape(x[1])} returned shape {_shape(single)}; "
            f"expected {_shape(batched)[1:]}, forward(x)[1] without the batch axis"
        )
    change = _largest_difference(single, batched[1])
    if change is not None:
        raise Failed(
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
        raise Failed(
            f"an input {problem} raised {type(error).__name__} ({error}); expected ValueError. "
            f"{rule}"
        ) from error
    raise Failed(f"forward accepted an input {problem}. {rule}")


def _check_rank_validation(subject: Subject) -> str:
    module = subject.build().eval()
    width = subject.width(module)
    rule = "Inputs must be (tokens, d_in) or (batch, tokens, d_in); other ranks raise ValueError."
    for shape in [(width,), (1, 2, 3, width)]:
        x = torch.randn(shape)
        _expect_value_error(module, x, f"of shape {shape} (rank {len(shape)})", rule)
    return "inputs of rank 1 and 4 raise ValueError"


def _check_d_in_validation(subject: Subject) -> str:
    module = subject.build().eval()
    if module.d_in is None:
        if "d_in" in subject.arguments:
            raise Failed(
                f"the variant takes d_in={subject.arguments['d_in']} but its d_in attribute is "
                f"None, so inputs of the wrong width are not caught; pass d_in to "
                f"attnkit.Attention.__init__"
            )
        raise Skipped("the variant accepts inputs of any width (its d_in is None)")
    wrong = module.d_in + 1
    x = torch.randn(BATCH, subject.tokens(module), wrong)
    rule = f"An input whose last axis is not d_in ({module.d_in}) must raise ValueError."
    _expect_value_error(module, x, f"of width {wrong} (shape {_shape(x)})", rule)
    return f"an input of width {wrong} raises ValueError (d_in is {module.d_in})"


def _check_need_weights(subject: Subject) -> str:
    module = subject.build().eval()
    x = subject.inputs(module)
    batch, tokens, _ = x.shape
    result = module(x, need_weights=True)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise Failed(
            f"forward(x, need_weights=True) returned {type(result).__name__}; expected a "
            f"(context, weights) pair"
        )
    context, weights = result
    _expect_tensor(context, "forward(x, need_weights=True)[0]")
    _expect_tensor(weights, "forward(x, need_weights=True)[1]")
    if weights.dim() != 4 or weights.shape[0] != batch or _shape(weights)[2:] != (tokens, tokens):
        raise Failed(
            f"weights have shape {_shape(weights)}; expected (batch, heads, tokens, tokens) = "
            f"({batch}, heads, {tokens}, {tokens})"
        )
    change = _largest_difference(context, module(x))
    if change is not None:
        raise Failed(
            f"the context returned with need_weights=True differs from forward(x) "
            f"(max abs difference {change:.3g}); need_weights must not change the result"
        )
    if (weights < 0).any() or weights.isnan().any():
        index = tuple(int(i) for i in ((weights < 0) | weights.isnan()).nonzero()[0])
        raise Failed(
            f"weight at (batch, head, query, key) = {index} is {float(weights[index]):.3g}; "
            f"attention weights must be non-negative"
        )
    sums = weights.double().sum(-1)
    bad = (sums - 1).abs() > 1e-4
    if bad.any():
        b, h, q = (int(i) for i in bad.nonzero()[0])
        raise Failed(
            f"weights of (batch {b}, head {h}, query {q}) sum to {float(sums[b, h, q]):.4g}; "
            f"each row of attention weights must sum to 1"
        )
    _, unbatched = module(x[0], need_weights=True)
    if _shape(unbatched) != _shape(weights)[1:]:
        raise Failed(
            f"unbatched weights have shape {_shape(unbatched)}; expected {_shape(weights)[1:]}"
        )
    return f"weights {_shape(weights)}, non-negative, rows sum to 1"


def _check_causality(subject: Subject) -> str:
    if not subject.cls.causal:
        raise Skipped("the variant does not declare causal = True")
    module = subject.build().eval()
    tokens = subject.tokens(module)
    if tokens < 2:
        raise Skipped(f"context_length {module.context_length} leaves no later token to perturb")
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
            raise Failed(
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
            raise Failed(
                f"the weight of query {q} on key {k}, a later token, is "
                f"{float(weights[b, h, q, k]):.3g} (batch {b}, head {h}); a causal variant's "
                f"weights must be 0 above the diagonal"
            )
    return f"outputs at positions 0 to t unchanged when tokens after t change ({tokens} tokens)"


def _check_kv_cache(subject: Subject) -> str:
    if not subject.cls.supports_kv_cache:
        raise Skipped("the variant does not declare supports_kv_cache = True")
    if not subject.cls.causal:
        raise Failed(
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
        raise Failed(
            f"fed through a KVCache ({chunks[0]} tokens, then one at a time), the output at "
            f"position {position} differs from the full sequence's by up to {change:.3g}; "
            f"forward(x, cache=...) must equal the matching rows of forward on all tokens"
        )
    if cache.length != tokens:
        raise Failed(f"after {tokens} tokens the cache reports length {cache.length}")
    return f"{tokens} tokens fed through a KVCache ({chunks[0]}, then 1 at a time) match"


def _check_determinism(subject: Subject) -> str:
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
        raise Failed(
            f"two forward passes in eval mode{with_dropout} differ (max abs difference "
            f"{change:.3g}); in eval mode, dropout and any other randomness must be off"
        )
    return "two forward passes in eval mode agree exactly" + (
        " (built with dropout=0.5)" if overrides else ""
    )


@torch.enable_grad()
def _check_gradients(subject: Subject) -> str:
    module = subject.build().train()
    x = subject.inputs(module).requires_grad_(True)
    out = _expect_tensor(module(x), "forward(x)")
    if not out.requires_grad:
        raise Failed("the output does not require grad; forward must not detach its result")
    out.square().sum().backward()
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    for name, parameter in trainable:
        if parameter.grad is None:
            raise Failed(
                f"parameter {name!r} got no gradient; every trainable parameter must take part "
                f"in forward (freeze it with requires_grad_(False) if that is intended)"
            )
        if not parameter.grad.isfinite().all():
            raise Failed(f"parameter {name!r} got a non-finite gradient")
    if x.grad is None or not x.grad.isfinite().all() or not x.grad.abs().sum() > 0:
        raise Failed("the input got no (finite, non-zero) gradient; the output must depend on it")
    if not trainable:
        return "gradients reach the input (the variant has no trainable parameters)"
    return f"gradients reach the input and all {len(trainable)} trainable parameters"


def _check_dtype(subject: Subject, dtype: torch.dtype) -> str:
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
        raise Failed(
            f"a module and input in {dtype} gave output in {out.dtype}; the output must keep "
            f"the input's dtype"
        )
    if not out.isfinite().all():
        raise Failed(f"the output in {dtype} has NaN or infinite values")
    # float64 is the reference: float32 must agree with it to float32's precision, and
    # bfloat16 to bfloat16's.
    precision = torch.float32 if dtype == torch.float64 else dtype
    change = _largest_difference(compared_with, reference, precision)
    if change is not None:
        what = "float32" if dtype == torch.float64 else str(dtype).removeprefix("torch.")
        atol, rtol = _TOLERANCE[precision]
        raise Failed(
            f"the {what} output differs from the float64 output of the same weights by up to "
            f"{change:.3g} (tolerance atol={atol:g}, rtol={rtol:g})"
        )
    atol, rtol = _TOLERANCE[precision]
    if dtype == torch.float64:
        return f"float64 output; float32 agrees with it within atol={atol:g}, rtol={rtol:g}"
    return f"bfloat16 output, within atol={atol:g}, rtol={rtol:g} of the float64 output"


def _check_float64(subject: Subject) -> str:
    return _check_dtype(subject, torch.float64)


def _check_bfloat16(subject: Subject) -> str:
    return _check_dtype(subject, torch.bfloat16)


def _check_state_dict(subject: Subject) -> str:
    original = subject.build(seed=0).eval()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = subject.build(seed=1).eval()
    try:
        restored.load_state_dict(torch.load(buffer, weights_only=True))
    except Exception as error:
        raise Failed(
            f"load_state_dict of a saved state_dict raised {type(error).__name__}: {error}"
        ) from error
    x = subject.inputs(original)
    before, after = original(x), restored(x)
    if not torch.equal(before, after):
        change = float((before - after).abs().max())
        raise Failed(
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


def require_backend(backend: str) -> None:
    """Raise `ValueError` if ``torch.compile`` knows no backend named ``backend``.

    Nothing is checked where `compile_support` says compiling cannot run here:
    the ``compile`` check is skipped there, saying why.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        if compile_support(backend) is not None:
            return
        import torch._dynamo

        backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        hint = did_you_mean(backend, backends)
        raise ValueError(
            f"unknown torch.compile backend {backend!r}{'; ' + hint if hint else ''}; the usual "
            f"ones are inductor (the default), aot_eager and eager; all: {', '.join(backends)}"
        )


def _check_compile(subject: Subject) -> str:
    backend = subject.compile_backend
    with warnings.catch_warnings():
        # torch's own modules warn about their deprecations as the compiler imports them.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        reason = compile_support(backend)
        if reason is not None:
            raise Skipped(reason)
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
                    raise Failed(
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
        raise Failed(f"the compiled module returned {_shape(out)}; eager gives {_shape(expected)}")
    change = _largest_difference(out, expected)
    if change is not None:
        raise Failed(
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


def _check_to_device(subject: Subject) -> str:
    module = subject.build().eval()
    for prefix, submodule in module.named_modules():
        for attribute, value in vars(submodule).items():
            if isinstance(value, torch.Tensor):
                name = f"{prefix}.{attribute}" if prefix else attribute
                raise Failed(
                    f"tensor attribute {name!r} is neither a parameter nor a buffer, so .to() "
                    f"leaves it behind; register it with register_buffer (or nn.Parameter)"
                )
    device = _target_device()
    x = subject.inputs(module)
    expected = module(x)
    moved = module.to(device)
    for name, tensor in [*moved.named_parameters(), *moved.named_buffers()]:
        if tensor.device.type != device.type:
            raise Failed(f"after .to({device.type!r}), {name!r} is still on {tensor.device}")
    try:
        out = moved(x.to(device))
    except Exception as error:
        raise Failed(
            f"after .to({device.type!r}), forward on a {device.type} input raised "
            f"{type(error).__name__}: {error}; forward must create its tensors on the input's "
            f"device"
        ) from error
    out = _expect_tensor(out, f"forward(x) on {device.type}")
    if out.device.type != device.type:
        raise Failed(f"after .to({device.type!r}), forward returned a tensor on {out.device}")
    if device.type == "meta":
        if _shape(out) != _shape(expected):
            raise Failed(
                f"on the meta device forward returned {_shape(out)}, not {_shape(expected)}"
            )
        return "parameters, buffers and forward all move to the 'meta' device (no accelerator here)"
    # Accelerator kernels (fused attention, another summation order) differ a little more.
    change = _largest_difference(out.cpu(), expected, tolerance=(1e-4, 1e-4))  # pragma: no cover
    if change is not None:  # pragma: no cover
        raise Failed(f"on {device} the output differs from the CPU's by up to {change:.3g}")
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
