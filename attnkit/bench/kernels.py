"""Kernels: the registered attention kernels called directly, one mask at a time.

With ``attnkit bench --kernels``, each selected kernel (by default ``sdpa`` and
``flex``) is called at every shape on random queries, keys and values of shape
``(batch, heads, tokens, head_dim)``, under `torch.no_grad`, with each mask of
``--kernel-masks`` (by default causal, a sliding window of 256 and four causal
documents per row). The calls are timed in turns, as the variants are; each
row's ``ratio`` is its time over ``sdpa``'s with the same mask.

The first call of each kernel with each mask is timed on its own and left out
of the timings (``first_call_s``): there ``flex`` builds the block mask and
compiles FlexAttention with `torch.compile` for that mask and shape. The dense
mask ``sdpa`` and ``explicit`` use is built before, to count the fraction of
query-key pairs the mask allows (``density``), so their first call is an
ordinary one.

A mask is written as terms joined by ``&``, each a factory of `attnkit.masks`
with its size after a colon: ``causal``, ``sliding_window:W``, ``prefix_lm:N``,
``document:N`` (``N`` documents of equal length in every row; combine it with
``causal`` for a decoder's packed sequences), ``padding:F`` (the first ``F`` of
every row padding, as with ``--padding``).
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import attnkit
from attnkit import masks
from attnkit._suggest import did_you_mean
from attnkit.bench.cases import Shape
from attnkit.bench.measure import (
    Progress,
    calls_per_run,
    median,
    profile_call,
    time_interleaved,
    warm_up,
)
from attnkit.bench.padding import attention_mask, padded_tokens, parse_fraction

__all__ = ["KERNELS", "KERNEL_MASKS", "MaskSpec", "measure_kernels", "parse_masks"]

KERNELS = ("sdpa", "flex")
"""The kernels ``--kernels`` times when given no names."""

KERNEL_MASKS = ("causal", "sliding_window:256", "causal&document:4")
"""The masks ``--kernels`` uses unless ``--kernel-masks`` says otherwise."""

REFERENCE = "sdpa"
"""The kernel every ratio is to, with the same mask."""

# Each factory: what its size means, and whether it needs one.
_TERMS = {
    "causal": None,
    "sliding_window": "W",
    "prefix_lm": "N",
    "document": "N",
    "padding": "F",
}
_TERM = re.compile(r"^([a-z_]+)(?::(.*))?$")


@dataclass(frozen=True)
class MaskSpec:
    """A mask as ``--kernel-masks`` writes it, to be built for a batch and a length.

    Examples:
        >>> spec = MaskSpec.parse("causal & document:2")
        >>> spec
        MaskSpec('causal&document:2')
        >>> spec.build(1, 4).to_dense(1, 1, 4, 4).long()
        tensor([[[[1, 0, 0, 0],
                  [1, 1, 0, 0],
                  [0, 0, 1, 0],
                  [0, 0, 1, 1]]]])
    """

    terms: tuple[tuple[str, float | int | None], ...]

    @classmethod
    def parse(cls, text: str) -> MaskSpec:
        """Read one mask: ``causal``, ``sliding_window:256``, ``causal&document:4``..."""
        terms = []
        for word in (part.strip() for part in text.split("&")):
            match = _TERM.match(word)
            name = match.group(1) if match else word
            if name not in _TERMS:
                hint = did_you_mean(name, list(_TERMS))
                raise ValueError(
                    f"--kernel-masks: unknown mask {word!r}{f' ({hint})' if hint else ''}; "
                    f"masks: {_listing()}, joined with &"
                )
            value = match.group(2) if match else None
            terms.append((name, _size(name, value)))
        return cls(tuple(terms))

    def __str__(self) -> str:
        return "&".join(name if value is None else f"{name}:{value}" for name, value in self.terms)

    def __repr__(self) -> str:
        return f"MaskSpec({str(self)!r})"

    def build(self, batch: int, tokens: int) -> masks.Mask:
        """The `attnkit.masks.Mask` for sequences of ``tokens`` in a batch of ``batch``."""
        built = [_build(name, value, batch, tokens) for name, value in self.terms]
        mask = built[0]
        for other in built[1:]:
            mask = mask & other
        return mask


def _listing() -> str:
    return ", ".join(name if size is None else f"{name}:{size}" for name, size in _TERMS.items())


def _size(name: str, value: str | None) -> float | int | None:
    unit = _TERMS[name]
    if unit is None:
        if value is not None:
            raise ValueError(f"--kernel-masks: {name} takes no size, got {name}:{value}")
        return None
    if value is None:
        example = "0.25" if unit == "F" else "256"
        raise ValueError(f"--kernel-masks: {name} needs a size, e.g. {name}:{example}")
    if unit == "F":
        try:
            return parse_fraction(value)
        except ValueError as error:
            raise ValueError(f"--kernel-masks: {name}:{value}: {error}") from None
    minimum = 0 if name == "prefix_lm" else 1
    if not value.isdigit() or int(value) < minimum:
        what = "an integer >= 0" if minimum == 0 else "a positive integer"
        raise ValueError(f"--kernel-masks: {name}:{value}: the size must be {what}")
    return int(value)


def _build(name: str, value: Any, batch: int, tokens: int) -> masks.Mask:
    if name == "causal":
        return masks.causal()
    if name == "sliding_window":
        return masks.sliding_window(value)
    if name == "prefix_lm":
        return masks.prefix_lm(value)
    if name == "document":
        ids = (torch.arange(tokens) * value // tokens).expand(batch, tokens)
        return masks.document(ids)
    return masks.padding(attention_mask(batch, tokens, padded_tokens(tokens, value)))


def parse_masks(text: str) -> list[MaskSpec]:
    """Read ``--kernel-masks``: masks separated by commas.

    Examples:
        >>> parse_masks("causal, sliding_window:256")
        [MaskSpec('causal'), MaskSpec('sliding_window:256')]
    """
    specs = [MaskSpec.parse(part) for part in text.split(",") if part.strip()]
    if not specs:
        raise ValueError(f"--kernel-masks: no mask given; masks: {_listing()}, joined with &")
    return specs


def measure_kernels(
    kernels: list[str],
    specs: list[MaskSpec],
    shape: Shape,
    *,
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    warmup: int = 1,
    min_run_time: float = 0.05,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Time each kernel with each mask at ``shape``, in turns; one row per pair.

    A pair that fails (``flex`` where ``torch.compile`` cannot run, say) gets
    ``status`` ``"error"`` and the reason, and the others still run.
    """
    from attnkit.bench.measure import NoProgress

    progress = progress or NoProgress()
    torch.manual_seed(seed)
    size = (shape.batch, shape.heads, shape.tokens, shape.head_dim)
    query, key, value = (torch.randn(size, dtype=dtype) for _ in range(3))
    rows: dict[str, dict[str, Any]] = {}
    steps: dict[str, Callable[[], object]] = {}
    numbers: dict[str, int] = {}
    for spec in specs:
        mask = spec.build(shape.batch, shape.tokens)
        dense = mask.to_dense(shape.batch, shape.heads, shape.tokens, shape.tokens)
        density = dense.sum().item() / dense.numel()
        for name in kernels:
            progress.set_description_str(f"{shape} kernels: {name} with {spec}")
            kernel = attnkit.get_kernel(name)
            row: dict[str, Any] = {
                "shape": shape.to_json(),
                "batch": shape.batch,
                "heads": shape.heads,
                "tokens": shape.tokens,
                "head_dim": shape.head_dim,
                "mask": str(spec),
                "mask_repr": repr(mask),
                "density": density,
                "kernel": name,
                "status": None,
                "reason": None,
            }
            rows[f"{spec}|{name}"] = row

            def step(kernel: attnkit.Kernel = kernel, mask: masks.Mask = mask) -> None:
                with torch.no_grad():
                    kernel(query, key, value, mask=mask)

            try:
                start = time.perf_counter()
                step()
                row["first_call_s"] = time.perf_counter() - start
                progress.update(1)
                seconds = warm_up(step, warmup, 2 * min_run_time)
                progress.update(warmup)
                use = profile_call(step)
                progress.update(1)
            except Exception as error:  # reported in the row; the other pairs still run
                row["status"] = "error"
                row["reason"] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
                progress.update(2 + warmup + repeats)
                gc.collect()
                continue
            row["attention"] = use.label
            row["kernels"] = use.kernels
            steps[f"{spec}|{name}"] = step
            numbers[f"{spec}|{name}"] = calls_per_run(seconds, min_run_time)
    progress.set_description_str(f"{shape} kernels: timing {len(steps)} in turns")
    for key_, runs in time_interleaved(steps, repeats, numbers, progress).items():
        row = rows[key_]
        row["status"] = "ok"
        row["calls_per_run"] = numbers[key_]
        row["runs_ms"] = [seconds * 1e3 for seconds in runs]
        row["ms"] = median(runs) * 1e3
    for row in rows.values():
        reference = rows.get(f"{row['mask']}|{REFERENCE}")
        measured = reference is not None and reference["status"] == "ok"
        if row["status"] == "ok":
            row["ratio"] = row["ms"] / reference["ms"] if measured else None
    del steps
    gc.collect()
    return list(rows.values())
