"""What is measured: shapes, the cases built for a shape, and how their work is counted.

A shape is ``batch x tokens x d_model x heads``. Every registered variant is
built for it from the sizes its constructor accepts (`attnkit._arguments.filter_arguments`):
``d_in = d_out = d_model``, ``context_length = tokens``, ``num_heads = heads`` and
``dropout = 0``. A variant whose output comes out ``heads`` times too wide takes
``d_out`` per head (``multihead_wrapper`` does): it is rebuilt with
``d_out = d_model // heads`` so that every row maps ``d_model`` to ``d_model``
with the same total query, key and value width. A variant that accepts neither
``d_in`` nor ``d_out`` has no projections to size and is skipped, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import attnkit
from attnkit._arguments import filter_arguments, missing_arguments
from attnkit._suggest import did_you_mean
from attnkit.bench.baselines import (
    BASELINES,
    FusedSDPA,
    SeparateSDPA,
    TextbookAttention,
    TorchMultiheadAttention,
)

__all__ = [
    "REFERENCES",
    "Case",
    "Shape",
    "attention_flops",
    "build_case",
    "case_flops",
    "minimum_bytes",
    "projection_flops",
    "worst_case_bytes",
]

REFERENCES = ("sdpa", "sdpa_separate")
"""The baselines ratios are taken against: of those measured, the faster, in each shape and mode."""

_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shape:
    """A benchmark shape: input ``(batch, tokens, d_model)``, attention with ``heads`` heads.

    Examples:
        >>> shape = Shape.parse("8x1024x768x12")
        >>> shape.head_dim, str(shape)
        (64, '8x1024x768x12')
        >>> Shape.parse("8x1024x768")
        Traceback (most recent call last):
        ...
        ValueError: expected a shape BATCHxTOKENSxD_MODELxHEADS such as 8x1024x768x12, got '8x1024x768'
    """  # noqa: E501

    batch: int
    tokens: int
    d_model: int
    heads: int

    def __post_init__(self) -> None:
        for name in ("batch", "tokens", "d_model", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"shape {name} must be a positive integer, got {value!r}")
        if self.d_model % self.heads:
            raise ValueError(
                f"shape {self}: d_model ({self.d_model}) must be divisible by heads ({self.heads})"
            )

    @classmethod
    def parse(cls, text: str) -> Shape:
        """Read ``"BATCHxTOKENSxD_MODELxHEADS"``, for example ``"8x1024x768x12"``."""
        match = _SHAPE.match(text)
        if match is None:
            raise ValueError(
                f"expected a shape BATCHxTOKENSxD_MODELxHEADS such as 8x1024x768x12, got {text!r}"
            )
        return cls(*(int(group) for group in match.groups()))

    def __str__(self) -> str:
        return f"{self.batch}x{self.tokens}x{self.d_model}x{self.heads}"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    def describe(self) -> str:
        return (
            f"batch {self.batch}, {self.tokens:,} tokens, d_model {self.d_model}, "
            f"{self.heads} heads"
        )

    def with_tokens(self, tokens: int) -> Shape:
        return Shape(self.batch, tokens, self.d_model, self.heads)

    def sizes(self) -> dict[str, Any]:
        """The constructor arguments a variant is offered, before filtering by its signature."""
        return {
            "d_in": self.d_model,
            "d_out": self.d_model,
            "context_length": self.tokens,
            "num_heads": self.heads,
            "dropout": 0.0,
        }

    def to_json(self) -> dict[str, int]:
        return {
            "batch": self.batch,
            "tokens": self.tokens,
            "d_model": self.d_model,
            "heads": self.heads,
        }


@dataclass
class Case:
    """One row of a benchmark: a module built for a shape, or the reason it was not.

    Attributes:
        name: The variant's registry name, or the baseline's (``sdpa``, ``mha``, ``textbook``).
        kind: ``"variant"`` or ``"baseline"``.
        module: The module, in the benchmark's dtype; ``None`` when skipped.
        heads: Attention heads as the module computes them (1 for single-head variants).
        head_dim: Width of each head; ``heads * head_dim`` is the shape's ``d_model``.
        causal: Whether the module masks the future.
        arguments: What the module was built with.
        note: How it was built, where that needs saying.
        skipped: Why it was not measured, or ``None``.
    """

    name: str
    kind: str
    module: nn.Module | None = None
    heads: int = 1
    head_dim: int = 0
    causal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    skipped: str | None = None

    @property
    def call(self) -> Callable[[torch.Tensor], torch.Tensor]:
        assert self.module is not None
        return self.module


def build_case(
    name: str, kind: str, shape: Shape, dtype: torch.dtype = torch.float32, seed: int = 0
) -> Case:
    """Build the variant or baseline ``name`` for ``shape``; a case that cannot be says why."""
    if kind == "baseline":
        return _build_baseline(name, shape, dtype, seed)
    return _build_variant(name, shape, dtype, seed)


def _build_baseline(name: str, shape: Shape, dtype: torch.dtype, seed: int) -> Case:
    if name not in BASELINES:
        hint = did_you_mean(name, BASELINES)
        raise ValueError(
            f"unknown baseline {name!r}{f' ({hint})' if hint else ''}; "
            f"baselines: {', '.join(BASELINES)}"
        )
    torch.manual_seed(seed)
    d, h, t = shape.d_model, shape.heads, shape.tokens
    modules: dict[str, Callable[[], nn.Module]] = {
        "sdpa": lambda: FusedSDPA(d, h),
        "sdpa_separate": lambda: SeparateSDPA(d, h),
        "mha": lambda: TorchMultiheadAttention(d, h, t),
        "mha_mask": lambda: TorchMultiheadAttention(d, h, t, causal_hint=False),
        "textbook": lambda: TextbookAttention(d, h, t),
    }
    module = modules[name]().to(dtype)
    arguments = {"d_model": d, "num_heads": h} | ({} if name in REFERENCES else {"tokens": t})
    return Case(name, "baseline", module, h, shape.head_dim, True, arguments)


def _build_variant(name: str, shape: Shape, dtype: torch.dtype, seed: int) -> Case:
    cls = attnkit.get_variant(name)
    case = Case(name, "variant", causal=bool(cls.causal))
    arguments = filter_arguments(cls, shape.sizes())
    if "d_in" not in arguments and "d_out" not in arguments:
        case.skipped = (
            "accepts neither d_in nor d_out: it has no projections for the shape to size, "
            "so it does not compute the attention the other rows do"
        )
        return case
    missing = missing_arguments(cls, arguments)
    if missing:
        case.skipped = f"requires {', '.join(missing)}, which a benchmark shape does not give"
        return case
    width = _probe_width(cls, arguments, shape)
    if isinstance(width, str):
        case.skipped = width
        return case
    if width == shape.d_model * shape.heads and "num_heads" in arguments and "d_out" in arguments:
        # d_out is per head here: size each head so that the heads together are d_model wide.
        arguments["d_out"] = shape.head_dim
        case.note = (
            f"d_out is per head: built with d_out={shape.head_dim} x {shape.heads} heads "
            f"= {shape.d_model}"
        )
        width = _probe_width(cls, arguments, shape)
        if isinstance(width, str):
            case.skipped = width
            return case
    if width != shape.d_model:
        case.skipped = f"its output is {width} wide, not d_model = {shape.d_model}"
        return case
    torch.manual_seed(seed)
    try:
        case.module = attnkit.create(name, **arguments).to(dtype)
    except Exception as error:  # a third-party variant may refuse these sizes
        case.skipped = f"cannot be built for this shape: {type(error).__name__}: {error}"
        return case
    case.heads = shape.heads if "num_heads" in arguments else 1
    case.head_dim = shape.d_model // case.heads
    case.arguments = arguments
    if case.heads == 1 and shape.heads > 1:
        case.note = f"single-head: one head {shape.d_model} wide"
    return case


def _probe_width(
    cls: type[attnkit.Attention], arguments: dict[str, Any], shape: Shape
) -> int | str:
    """The output width of ``cls(**arguments)`` on two tokens, or why it could not be built."""
    tokens = min(shape.tokens, 2)
    probe_arguments = dict(arguments)
    if "context_length" in probe_arguments:
        probe_arguments["context_length"] = tokens  # a small mask: the widths are what matter
    try:
        with torch.no_grad():
            module = cls(**probe_arguments).eval()
            output = module(torch.zeros(1, tokens, shape.d_model))
    except Exception as error:
        return f"cannot be built for this shape: {type(error).__name__}: {error}"
    if not isinstance(output, torch.Tensor) or output.dim() != 3:
        return "its forward does not return one (batch, tokens, width) tensor"
    return int(output.shape[-1])


def attention_flops(
    batch: int, heads: int, tokens: int, head_dim: int, causal_halved: bool = False
) -> float:
    """The standard count for ``softmax(Q K^T) V``: ``4 * B * H * T^2 * d``.

    Two matrix products of ``2 * T^2 * d`` each, per batch element and head;
    halved when a causal kernel skips the masked blocks.

    Examples:
        >>> attention_flops(8, 12, 1024, 64) / 1e9
        25.769803776
        >>> attention_flops(8, 12, 1024, 64, causal_halved=True) / 1e9
        12.884901888
    """
    flops = 4.0 * batch * heads * tokens**2 * head_dim
    return flops / 2 if causal_halved else flops


def projection_flops(module: nn.Module, batch: int, tokens: int) -> float:
    """``2 * B * T * d_in * d_out`` for each projection in ``module``, each applied once.

    Projections are the `torch.nn.Linear` layers and the input projection of a
    `torch.nn.MultiheadAttention` (which is a weight, not a layer).

    Examples:
        >>> from torch import nn
        >>> projection_flops(nn.Linear(768, 2304), batch=8, tokens=1024) / 1e9
        28.991029248
    """
    flops = 0.0
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            flops += 2.0 * batch * tokens * layer.in_features * layer.out_features
        elif isinstance(layer, nn.MultiheadAttention) and layer.in_proj_weight is not None:
            out_features, in_features = layer.in_proj_weight.shape
            flops += 2.0 * batch * tokens * in_features * out_features
    return flops


def case_flops(case: Case, shape: Shape, mode: str, causal_halved: bool) -> float:
    """Floating-point operations of one call of ``case``: forward, or three times that to train.

    The backward pass of a matrix product takes two products of the same size
    (one for each operand's gradient), hence forward plus backward is 3x forward.
    """
    assert case.module is not None
    forward = attention_flops(
        shape.batch, case.heads, shape.tokens, case.head_dim, causal_halved
    ) + projection_flops(case.module, shape.batch, shape.tokens)
    return 3 * forward if mode == "train" else forward


def minimum_bytes(shape: Shape, mode: str, dtype: torch.dtype) -> int:
    """Memory every case needs at ``shape``, however it computes attention: a floor.

    Six ``(batch, tokens, d_model)`` tensors live in a forward pass (the input, the
    queries, keys and values, the context and the output), twice as many to train
    (the gradients), and the four ``d_model x d_model`` projection weights.

    Examples:
        >>> minimum_bytes(Shape(8, 1024, 768, 12), "forward", torch.float32) / 2**20
        153.0
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    activations = (12 if mode == "train" else 6) * shape.batch * shape.tokens * shape.d_model
    return (activations + 4 * shape.d_model**2) * itemsize


def worst_case_bytes(shape: Shape, mode: str, dtype: torch.dtype) -> int:
    """Memory a call may need if it materialises the ``tokens x tokens`` matrices, as the
    textbook form does: three live per head in a forward pass (scores, scaled scores,
    weights), four with backward.

    Examples:
        >>> worst_case_bytes(Shape(1, 16384, 768, 12), "forward", torch.float32) / 1e9
        38.654705664
    """
    matrices = 4 if mode == "train" else 3
    itemsize = torch.empty((), dtype=dtype).element_size()
    return matrices * shape.batch * shape.heads * shape.tokens**2 * itemsize
