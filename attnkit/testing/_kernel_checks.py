"""The kernel conformance checks: each a rule an attention kernel must keep, and its test.

A kernel (an `attnkit.Kernel`) is held to a float64 reference written here,
independently of every registered kernel: scores, mask, softmax and weighted
sum, with the key and value heads repeated for grouped-query attention and the
rows of queries that may attend to no key set to zero. Inputs are random but
seeded, of one shape wherever a check allows it (FlexAttention compiles once per
shape and mask), and arrive as a variant hands them over: views of
``(batch, tokens, heads, head_dim)`` tensors with the heads moved forward.

A check's function takes the `KernelSubject` and returns what it verified; it
raises `Failed` or `Skipped`. A kernel that raises `NotImplementedError` for a
case (FlexAttention's backward pass on the CPU, say) is skipped, with the
kernel's own message as the reason. `KERNEL_CHECKS` lists the checks in the
order they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from attnkit import masks
from attnkit.kernel import Kernel
from attnkit.masks import Mask
from attnkit.testing._common import Check, Failed, Skipped, first_wrong, shape_of

__all__ = ["KERNEL_CHECKS", "KernelSubject"]

# The one shape most checks use: 200 tokens span two of FlexAttention's 128-token
# blocks, the second one partial, so block masks have full, partial and empty blocks.
BATCH, HEADS, TOKENS, HEAD_DIM = 2, 4, 200, 16
CACHED_QUERIES = 72  # queries after cached keys: the last 72 of the 200 positions

# Absolute and relative tolerances of a kernel's outputs against the float64 reference.
TOLERANCE: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
}


@dataclass(frozen=True)
class KernelSubject:
    """What a kernel check works on: the kernel, and a call that checks what it returns."""

    kernel: Kernel

    def call(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **arguments: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``kernel(query, key, value, **arguments)``, its result checked against the contract.

        Raises:
            Skipped: The kernel raised `NotImplementedError`; its message is the reason.
            Failed: It returned something other than ``(context, weights_or_None)`` with
                ``context`` of shape ``(batch, heads, tokens_q, head_dim_v)`` in the
                query's dtype.
        """
        try:
            result = self.kernel(query, key, value, **arguments)
        except NotImplementedError as error:
            raise Skipped(str(error) or f"kernel {self.kernel.name!r}: not implemented") from error
        if not (isinstance(result, tuple) and len(result) == 2):
            raise Failed(
                f"the kernel returned {type(result).__name__}; a kernel returns the pair "
                f"(context, weights or None)"
            )
        context, weights = result
        batch, heads, tokens_q, _ = query.shape
        expected = (batch, heads, tokens_q, value.shape[-1])
        if not isinstance(context, torch.Tensor) or shape_of(context) != expected:
            got = shape_of(context) if isinstance(context, torch.Tensor) else type(context).__name__
            raise Failed(
                f"the kernel returned a context of shape {got}; expected (batch, heads, tokens_q, "
                f"head_dim_v) = {expected}"
            )
        if context.dtype != query.dtype:
            raise Failed(
                f"the kernel returned a {context.dtype} context for {query.dtype} inputs; the "
                f"context must keep the inputs' dtype"
            )
        if weights is not None and not isinstance(weights, torch.Tensor):
            raise Failed(f"the kernel returned weights of type {type(weights).__name__}")
        return context, weights


# --- Inputs, masks and the reference ---------------------------------------------------------


def _inputs(
    *,
    kv_heads: int = HEADS,
    tokens_q: int = TOKENS,
    head_dim_v: int = HEAD_DIM,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded query, key and value, drawn in float64 as ``(batch, tokens, heads, dim)`` views."""
    generator = torch.Generator().manual_seed(seed)

    def draw(heads: int, tokens: int, width: int) -> torch.Tensor:
        shape = (BATCH, tokens, heads, width)
        tensor = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
        return tensor.transpose(1, 2)  # as a variant's split into heads leaves it

    return (
        draw(HEADS, tokens_q, HEAD_DIM),
        draw(kv_heads, TOKENS, HEAD_DIM),
        draw(kv_heads, TOKENS, head_dim_v),
    )


def _keep(*, blind: bool = False) -> torch.Tensor:
    """A padding ``attention_mask`` ``(2, 200)``: sequence 0 left-padded by 70 tokens,
    sequence 1 right-padded from token 50 (a whole block of keys), or all padding."""
    keep = torch.ones(BATCH, TOKENS, dtype=torch.bool)
    keep[0, :70] = False
    keep[1, 50:] = False
    if blind:
        keep[1] = False
    return keep


def _document_ids() -> torch.Tensor:
    """Document ids ``(2, 200)``: three documents in sequence 0, two in sequence 1."""
    return torch.tensor([[0] * 60 + [1] * 80 + [2] * 60, [5] * 130 + [7] * 70])


def _combined(keep: torch.Tensor) -> Mask:
    return (masks.prefix_lm(20) | masks.sliding_window(48)) & masks.padding(keep)


MASK_KINDS: dict[str, tuple[str, Callable[[], Mask | None]]] = {
    "no_mask": ("no mask", lambda: None),
    "causal": ("causal()", masks.causal),
    "sliding_window": ("sliding_window(48)", lambda: masks.sliding_window(48)),
    "padding": (
        "padding (left by 70, right from 50)",
        lambda: masks.padding(_keep()),
    ),
    "document": ("document (3 and 2 documents)", lambda: masks.document(_document_ids())),
    "prefix_lm": ("prefix_lm(130)", lambda: masks.prefix_lm(130)),
    "combined": (
        "(prefix_lm(20) | sliding_window(48)) & padding",
        lambda: _combined(_keep()),
    ),
}


def _allowed(
    mask: Mask | None, batch: int, heads: int, tokens_q: int, tokens_k: int
) -> torch.Tensor:
    if mask is None:
        return torch.ones(batch, heads, tokens_q, tokens_k, dtype=torch.bool)
    return mask.to_dense(batch, heads, tokens_q, tokens_k).expand(batch, heads, tokens_q, tokens_k)


def reference(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: Mask | None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 reference ``(context, weights)``; differentiable.

    Each group of ``heads / kv_heads`` consecutive query heads shares one key and
    value head; a query that may attend to no key gets zero weights and context.
    """
    batch, heads, tokens_q, head_dim = query.shape
    kv_heads, tokens_k = key.shape[1], key.shape[2]
    scale = head_dim**-0.5 if scale is None else scale
    key = key.double().repeat_interleave(heads // kv_heads, dim=1)
    value = value.double().repeat_interleave(heads // kv_heads, dim=1)
    scores = (query.double() @ key.transpose(-2, -1)) * scale
    allowed = _allowed(mask, batch, heads, tokens_q, tokens_k)
    scores = scores.masked_fill(~allowed, float("-inf"))
    # A row with no allowed key: softmax over zeros (finite), then zeroed by `allowed`.
    scores = torch.where(allowed.any(-1, keepdim=True), scores, 0.0)
    weights = torch.softmax(scores, dim=-1) * allowed
    return weights @ value, weights


def _compare(
    what: str,
    actual: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype,
    axes: str = "batch, head, query",
) -> float:
    """Raise `Failed` unless ``actual`` is within the dtype's tolerance; the largest difference."""
    tolerance = TOLERANCE[dtype]
    wrong = first_wrong(actual, expected, tolerance)
    if wrong is not None:
        index, value, worst = wrong
        place = f"({axes}) = {index}"
        if value != value:  # NaN
            raise Failed(f"{what} at {place} is NaN; the float64 reference is finite there")
        raise Failed(
            f"{what} at {place} differs from the float64 reference by up to {worst:.3g} "
            f"(tolerance atol={tolerance[0]:g}, rtol={tolerance[1]:g})"
        )
    return float((actual.detach().double() - expected.detach().double()).abs().max())


def _agree(
    subject: KernelSubject,
    label: str,
    mask: Mask | None,
    *,
    dtype: torch.dtype = torch.float32,
    **sizes: int,
) -> float:
    """Check one case against the reference; return the largest difference."""
    query, key, value = _inputs(dtype=dtype, **sizes)
    context, _ = subject.call(query, key, value, mask=mask)
    expected, _ = reference(query, key, value, mask)
    return _compare(f"with {label}, the context", context, expected, dtype)


def _sizes(kv_heads: int = HEADS, tokens_q: int = TOKENS) -> str:
    heads = f"{HEADS} heads" if kv_heads == HEADS else f"{HEADS} heads on {kv_heads} kv_heads"
    tokens = f"{TOKENS} tokens" if tokens_q == TOKENS else f"{tokens_q} queries on {TOKENS} keys"
    return f"batch {BATCH}, {heads}, {tokens}, head_dim {HEAD_DIM}"


def _within(dtype: torch.dtype, largest: float) -> str:
    atol, rtol = TOLERANCE[dtype]
    return f"within atol={atol:g}, rtol={rtol:g} (largest difference {largest:.2g})"


# --- The checks ------------------------------------------------------------------------------


def _mask_kind(name: str) -> Callable[[KernelSubject], str]:
    label, make = MASK_KINDS[name]

    def check(subject: KernelSubject) -> str:
        largest = _agree(subject, label, make())
        return f"{label}: {_within(torch.float32, largest)}; {_sizes()}"

    return check


def _check_cache_offset(subject: KernelSubject) -> str:
    cases = [
        (1, "causal()", masks.causal()),
        (CACHED_QUERIES, "causal() & padding", masks.causal() & masks.padding(_keep())),
    ]
    largest = 0.0
    for tokens_q, label, mask in cases:
        what = f"{label} and {tokens_q} query(ies) after {TOKENS - tokens_q} cached keys"
        largest = max(largest, _agree(subject, what, mask, tokens_q=tokens_q))
    return (
        f"1 and {CACHED_QUERIES} queries that are the last of {TOKENS} positions, causal and "
        f"causal & padding: {_within(torch.float32, largest)}"
    )


def _check_grouped_heads(subject: KernelSubject) -> str:
    cases = [(2, "causal()", masks.causal()), (1, "combined", _combined(_keep()))]
    largest = 0.0
    for kv_heads, label, mask in cases:
        what = f"{label} and {HEADS} heads on {kv_heads} kv_heads"
        largest = max(largest, _agree(subject, what, mask, kv_heads=kv_heads))
    return (
        f"{HEADS} heads on 2 and on 1 kv_heads, no repeated copies needed: "
        f"{_within(torch.float32, largest)}"
    )


def _check_shape_and_scale(subject: KernelSubject) -> str:
    width, scale = 24, 0.3
    query, key, value = _inputs(head_dim_v=width)
    context, _ = subject.call(query, key, value, mask=masks.causal(), scale=scale)
    expected, _ = reference(query, key, value, masks.causal(), scale)
    what = f"with head_dim_v {width} (head_dim {HEAD_DIM}) and scale={scale}, the context"
    largest = _compare(what, context, expected, torch.float32)
    return (
        f"context (batch, heads, tokens_q, head_dim_v) = {shape_of(context)} for values wider "
        f"than the keys, scale={scale} honoured: {_within(torch.float32, largest)}"
    )


def _blind_rows(mask: Mask) -> torch.Tensor:
    """Bool ``(batch, heads, tokens, 1)``: the queries that may attend to no key."""
    return ~_allowed(mask, BATCH, HEADS, TOKENS, TOKENS).any(-1, keepdim=True)


def _check_masked_rows(subject: KernelSubject) -> str:
    mask = _combined(_keep(blind=True))  # sequence 1 all padding; 0's first queries see none
    blind = _blind_rows(mask)
    query, key, value = _inputs()
    context, weights = subject.call(query, key, value, mask=mask)
    rows = blind.expand_as(context)
    if context[rows].isnan().any():
        b, h, q, _ = (int(i) for i in (context.isnan() & rows).nonzero()[0])
        raise Failed(
            f"the context of query {q} (batch {b}, head {h}), which may attend to no key, is "
            f"NaN; a fully masked row must give zeros, as PyTorch's SDPA does"
        )
    atol = TOLERANCE[torch.float32][0]
    if (context[rows].abs() > atol).any():
        b, h, q, _ = (int(i) for i in ((context.abs() > atol) & rows).nonzero()[0])
        raise Failed(
            f"the context of query {q} (batch {b}, head {h}), which may attend to no key, is "
            f"{float(context[b, h, q].abs().max()):.3g} at most, not zero; a fully masked row "
            f"must give zeros (not, say, a uniform average of the masked values)"
        )
    expected, _ = reference(query, key, value, mask)
    _compare("the context of a query with keys to attend to", context, expected, torch.float32)
    if subject.kernel.returns_weights:
        _, weights = subject.call(query, key, value, mask=mask, need_weights=True)
        if weights is None:
            raise Failed("with need_weights=True the kernel returned no weights")
        sums = weights.double().sum(-1, keepdim=True)
        if (sums[blind] != 0).any():
            b, h, q, _ = (int(i) for i in ((sums != 0) & blind).nonzero()[0])
            raise Failed(
                f"the weights of query {q} (batch {b}, head {h}), which may attend to no key, "
                f"sum to {float(sums[b, h, q]):.3g}; they must all be 0"
            )
    count = int(blind.sum())
    return f"{count} fully masked rows (of {blind.numel()}) give zeros, never NaN; the rest agree"


def _check_bfloat16(subject: KernelSubject) -> str:
    largest = _agree(subject, "combined, in bfloat16", _combined(_keep()), dtype=torch.bfloat16)
    return f"bfloat16 inputs, the combined mask: {_within(torch.bfloat16, largest)}"


def _check_weights(subject: KernelSubject) -> str:
    if not subject.kernel.returns_weights:
        raise Skipped("the kernel does not declare returns_weights")
    mask = _combined(_keep(blind=True))
    query, key, value = _inputs()
    context, weights = subject.call(query, key, value, mask=mask, need_weights=True)
    if weights is None:
        raise Failed(
            "with need_weights=True the kernel returned None for the weights; a kernel that "
            "declares returns_weights must return them"
        )
    expected_shape = (BATCH, HEADS, TOKENS, TOKENS)
    if shape_of(weights) != expected_shape:
        raise Failed(
            f"the weights have shape {shape_of(weights)}; expected (batch, heads, tokens_q, "
            f"tokens_k) = {expected_shape}"
        )
    allowed = _allowed(mask, BATCH, HEADS, TOKENS, TOKENS)
    leak = (weights != 0) & ~allowed
    if leak.any():
        b, h, q, k = (int(i) for i in leak.nonzero()[0])
        raise Failed(
            f"query {q} (batch {b}, head {h}) gives key {k}, which the mask hides, the weight "
            f"{float(weights[b, h, q, k]):.3g}; masked keys must get no weight"
        )
    sums = weights.double().sum(-1)
    target = allowed.any(-1).double()  # 1, or 0 for a fully masked row
    bad = (sums - target).abs() > 1e-5
    if bad.any():
        b, h, q = (int(i) for i in bad.nonzero()[0])
        raise Failed(
            f"the weights of query {q} (batch {b}, head {h}) sum to {float(sums[b, h, q]):.6g}; "
            f"each row must sum to 1 (0 for a query that may attend to no key)"
        )
    expected_context, expected_weights = reference(query, key, value, mask)
    largest = _compare(
        "the weights", weights, expected_weights, torch.float32, "batch, head, query"
    )
    without, _ = subject.call(query, key, value, mask=mask)
    if not torch.allclose(context, without, atol=1e-6, rtol=1e-6):
        change = float((context - without).abs().max())
        raise Failed(
            f"the context returned with need_weights=True differs from the one without by up "
            f"to {change:.3g}; need_weights must not change the context"
        )
    _compare("with need_weights=True, the context", context, expected_context, torch.float32)
    return (
        f"weights {shape_of(weights)}: rows sum to 1 (0 when fully masked), none on masked keys, "
        f"{_within(torch.float32, largest)}"
    )


def _check_dropout(subject: KernelSubject) -> str:
    # With the values an identity matrix, the context *is* the (dropped) attention weights,
    # so every kernel shows what dropout did to each weight.
    p, batch, heads, tokens = 0.3, 64, 2, 16
    generator = torch.Generator().manual_seed(5)
    query, key = (
        torch.randn(batch, heads, tokens, tokens, generator=generator, dtype=torch.float64).float()
        for _ in range(2)
    )
    value = torch.eye(tokens).expand(batch, heads, tokens, tokens)
    mask = masks.causal()
    _, weights = reference(query, key, value, mask)
    evaluated, _ = subject.call(query, key, value, mask=mask, dropout_p=p, training=False)
    changed = first_wrong(evaluated, weights, TOLERANCE[torch.float32])
    if changed is not None:
        raise Failed(
            f"with training=False, dropout_p={p} changed the output by up to {changed[2]:.3g}; "
            f"dropout applies only in training"
        )
    torch.manual_seed(1234)
    first, _ = subject.call(query, key, value, mask=mask, dropout_p=p, training=True)
    second, _ = subject.call(query, key, value, mask=mask, dropout_p=p, training=True)
    if torch.equal(first, second):
        raise Failed(
            f"two calls with dropout_p={p} in training mode gave identical outputs; dropout must "
            f"draw new random numbers on every call"
        )
    weights = weights.float()
    attended = weights > 0
    if (first[~attended] != 0).any():
        raise Failed(
            f"with dropout_p={p}, a key the mask hides got weight; dropout must not change "
            f"which keys a query attends to"
        )
    dropped = first == 0
    scaled = weights / (1 - p)
    kept = (first - scaled).abs() <= 1e-6 + 1e-4 * scaled
    odd = attended & ~(dropped | kept)
    if odd.any():
        b, h, q, k = (int(i) for i in odd.nonzero()[0])
        raise Failed(
            f"with dropout_p={p}, the weight {float(weights[b, h, q, k]):.4g} of query {q} on key "
            f"{k} (batch {b}, head {h}) became {float(first[b, h, q, k]):.4g}; dropout must zero "
            f"a weight or scale it by 1 / (1 - p) = {1 / (1 - p):.4g}"
        )
    count = int(attended.sum())
    fraction = float((dropped & attended).sum()) / count
    spread = 6 * (p * (1 - p) / count) ** 0.5  # six standard deviations of the fraction
    if abs(fraction - p) > spread:
        raise Failed(
            f"dropout_p={p} zeroed {fraction:.4f} of {count} attention weights; expected {p} "
            f"(within {spread:.4f}, six standard deviations)"
        )
    return (
        f"dropout_p={p} in training zeroed {fraction:.3f} of {count} weights and scaled the rest "
        f"by 1/(1 - p); off when not training"
    )


@torch.enable_grad()
def _check_backward(subject: KernelSubject) -> str:
    mask = masks.causal() & masks.padding(_keep())  # sequence 0's padding queries see no key
    inputs = [t.detach().requires_grad_(True) for t in _inputs(kv_heads=2)]
    context, _ = subject.call(*inputs, mask=mask)
    if not context.requires_grad:
        raise Failed("the context does not require grad; the kernel must not detach its result")
    generator = torch.Generator().manual_seed(3)
    cotangent = torch.randn(context.shape, generator=generator, dtype=torch.float64)
    (context * cotangent.float()).sum().backward()
    doubles = [t.detach().double().requires_grad_(True) for t in inputs]
    expected, _ = reference(*doubles, mask)
    (expected * cotangent).sum().backward()
    largest = 0.0
    for name, tensor, double in zip(("query", "key", "value"), inputs, doubles, strict=True):
        if tensor.grad is None:
            raise Failed(f"the {name} got no gradient")
        what = f"the gradient of the {name}"
        largest = max(
            largest,
            _compare(what, tensor.grad, double.grad, torch.float32, "batch, head, token"),
        )
    return (
        f"gradients of query, key and value ({HEADS} heads on 2 kv_heads, causal & padding) "
        f"{_within(torch.float32, largest)}"
    )


KERNEL_CHECKS: tuple[Check, ...] = (
    *(
        Check(
            name,
            f"With {label}, the context agrees with a float64 reference (float32: atol and "
            f"rtol 1e-5).",
            _mask_kind(name),
        )
        for name, (label, _) in MASK_KINDS.items()
    ),
    Check(
        "cache_offset",
        "Queries that are the last tokens_q of tokens_k positions (after cached keys) agree "
        "with the reference, for 1 query and several.",
        _check_cache_offset,
    ),
    Check(
        "grouped_heads",
        "Grouped-query attention, heads a multiple of kv_heads (4 on 2, 4 on 1): each group of "
        "query heads shares one key and value head, as in the reference.",
        _check_grouped_heads,
    ),
    Check(
        "shape_and_scale",
        "The context is (batch, heads, tokens_q, head_dim_v) in the inputs' dtype, values may be "
        "wider than keys, and a given scale is used.",
        _check_shape_and_scale,
    ),
    Check(
        "masked_rows",
        "A query that may attend to no key gets a zero context (and zero weights), never NaN.",
        _check_masked_rows,
    ),
    Check(
        "bfloat16",
        "In bfloat16 the context is bfloat16 and agrees with the float64 reference within "
        "atol and rtol 2e-2.",
        _check_bfloat16,
    ),
    Check(
        "weights",
        "A kernel declaring returns_weights: need_weights=True returns the weights, rows "
        "summing to 1 (0 when fully masked), none on masked keys, the context unchanged.",
        _check_weights,
    ),
    Check(
        "dropout",
        "In training, dropout_p zeroes that fraction of the attention weights and scales the "
        "rest by 1/(1 - p), fresh each call; without training it changes nothing.",
        _check_dropout,
    ),
    Check(
        "backward",
        "Gradients of query, key and value agree with the float64 reference's (float32: atol "
        "and rtol 1e-5), finite for fully masked rows.",
        _check_backward,
    ),
)
