"""The benchmark run: build every case for each shape, measure it, and collect the report.

`benchmark` returns a plain dictionary (the ``--json`` output); its layout is
described in the `attnkit.bench` module docstring.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from attnkit.bench.baselines import BASELINES
from attnkit.bench.cases import (
    REFERENCES,
    Case,
    Shape,
    build_case,
    case_flops,
    worst_case_bytes,
)
from attnkit.bench.kernels import KERNEL_MASKS, MaskSpec, measure_kernels
from attnkit.bench.kernels import REFERENCE as REFERENCE_KERNEL
from attnkit.bench.measure import (
    NoProgress,
    Progress,
    available_memory,
    calls_per_run,
    load_average,
    machine_info,
    matmul_gflops,
    median,
    profile_call,
    time_interleaved,
    warm_up,
)
from attnkit.bench.overhead import compile_check, create_overhead, plugin_load_time
from attnkit.bench.padding import attention_mask, mask_entry, mask_steps, padded_tokens

__all__ = ["MODES", "SCHEMA", "Config", "benchmark", "planned_steps"]

SCHEMA = "attnkit-bench/2"
"""Version 2: ratios are to the faster of `REFERENCES` (version 1: to ``sdpa`` alone)."""

MODES = {
    "forward": "forward (eval, no_grad)",
    "train": "forward + backward (train, dropout 0)",
}
"""The two measurements, by the name ``--mode`` and the JSON use."""

FLOP_COUNT = {
    "attention": "4*B*H*T^2*d per call; halved where every attention ran through the fused CPU "
    "kernel with is_causal=True (_scaled_dot_product_flash_attention_for_cpu), which "
    "skips the blocks above the diagonal",
    "projection": "2*B*T*d_in*d_out per projection (nn.Linear layers, and "
    "nn.MultiheadAttention's input projection); biases, softmax and masking not counted",
    "train": "3x forward: the backward pass of each product takes two of the same size",
}

# Above this share of the available memory, a case's memory is measured at fewer tokens first.
_PROBE_ABOVE = 0.5
# A case whose estimate exceeds this share of the available memory is skipped.
_SKIP_ABOVE = 0.9


@dataclass
class Config:
    """What to measure. The command line fills this in; see ``attnkit bench --help``."""

    shapes: list[Shape]
    modes: list[str] = field(default_factory=lambda: list(MODES))
    variants: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    dtype: torch.dtype = torch.float32
    repeats: int = 5
    warmup: int = 1
    min_run_time: float = 0.05
    matmul_size: int = 2048
    overhead: bool = True
    overhead_runs: int = 5
    compile: bool = False
    compile_backend: str = "inductor"
    seed: int = 0
    label: str | None = None
    preset: str | None = None
    command: str | None = None
    padding: float | None = None
    """A fraction of every row: also time each variant with that much padding."""
    padding_side: str = "left"
    kernels: list[str] = field(default_factory=list)
    """Kernels to time directly with each of ``kernel_masks`` (none: no kernels section)."""
    kernel_masks: list[MaskSpec] = field(
        default_factory=lambda: [MaskSpec.parse(text) for text in KERNEL_MASKS]
    )


def planned_steps(config: Config) -> int:
    """How many progress steps `benchmark` takes, for sizing the bar."""
    per_case = config.warmup + 1 + config.repeats
    cases = len(config.variants) + len(config.baselines)
    groups = len(config.shapes) * len(config.modes) if cases else 0
    steps = groups * cases * per_case + 1  # + the matmul
    if config.padding is not None:  # the padded rows, and the mask timed twice per round
        steps += groups * (len(config.variants) * per_case + 2 * config.repeats)
    kernel_rows = len(config.kernels) * len(config.kernel_masks) * len(config.shapes)
    steps += kernel_rows * (config.warmup + 2 + config.repeats)
    if config.overhead:
        steps += 1 + config.overhead_runs
    if config.compile:
        steps += len(config.variants)
    return steps


def benchmark(config: Config, progress: Progress | None = None) -> dict[str, Any]:
    """Run every measurement ``config`` asks for and return the report."""
    progress = progress or NoProgress()
    began = time.perf_counter()
    elapsed: dict[str, float] = {}
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "command": config.command,
        "preset": config.preset,
        "machine": machine_info(config.label),
        "settings": {
            "dtype": str(config.dtype).removeprefix("torch."),
            "repeats": config.repeats,
            "warmup": config.warmup,
            "min_run_time_s": config.min_run_time,
            "seed": config.seed,
            "statistic": "median",
            "reference": "the faster of " + ", ".join(REFERENCES),
        },
        "flop_count": FLOP_COUNT,
        "modes": {mode: MODES[mode] for mode in config.modes},
        "baselines": {name: BASELINES[name] for name in config.baselines},
    }
    progress.set_description_str("dense matmul")
    profile_call(lambda: torch.ones(1) + 1)  # the profiler's first start is slow and allocates
    report["matmul"] = matmul_gflops(config.matmul_size)
    progress.update(1)
    elapsed["matmul"] = time.perf_counter() - began
    results: list[dict[str, Any]] = []
    mask_costs: list[dict[str, Any]] = []
    for shape in config.shapes:
        for mode in config.modes:
            if not config.variants and not config.baselines:
                continue
            start = time.perf_counter()
            rows, mask_cost = _measure_group(config, shape, mode, report["matmul"], progress)
            results.extend(rows)
            if mask_cost is not None:
                mask_costs.append(mask_cost)
            elapsed[f"{shape} {mode}"] = time.perf_counter() - start
    report["results"] = results
    if config.padding is not None:
        report["padding"] = {
            "fraction": config.padding,
            "side": config.padding_side,
            "masks": mask_costs,
        }
    if config.kernels:
        report["kernels"] = _measure_kernels(config, progress, elapsed)
    report["machine"]["load_average_after"] = load_average()
    if config.overhead:
        start = time.perf_counter()
        progress.set_description_str("create() overhead")
        report["create_overhead"] = create_overhead(config.variants)
        progress.update(1)
        progress.set_description_str("plugin loading (fresh interpreters)")
        report["plugin_load"] = plugin_load_time(config.overhead_runs)
        progress.update(config.overhead_runs)
        elapsed["overhead"] = time.perf_counter() - start
    if config.compile:
        start = time.perf_counter()
        report["compile"] = []
        for name in config.variants:
            progress.set_description_str(f"torch.compile {name}")
            report["compile"].extend(compile_check([name], config.compile_backend))
            progress.update(1)
        elapsed["compile"] = time.perf_counter() - start
    elapsed["total"] = time.perf_counter() - began
    report["elapsed_s"] = elapsed
    return report


def _measure_kernels(
    config: Config, progress: Progress, elapsed: dict[str, float]
) -> dict[str, Any]:
    """The kernels section: every kernel with every mask, at each shape (`measure_kernels`)."""
    rows: list[dict[str, Any]] = []
    for shape in config.shapes:
        start = time.perf_counter()
        rows += measure_kernels(
            config.kernels,
            config.kernel_masks,
            shape,
            dtype=config.dtype,
            repeats=config.repeats,
            warmup=config.warmup,
            min_run_time=config.min_run_time,
            seed=config.seed,
            progress=progress,
        )
        elapsed[f"{shape} kernels"] = time.perf_counter() - start
    return {
        "kernels": list(config.kernels),
        "masks": [str(spec) for spec in config.kernel_masks],
        "reference": REFERENCE_KERNEL,
        "results": rows,
    }


def _measure_group(
    config: Config, shape: Shape, mode: str, matmul: dict[str, Any], progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Measure every case at one shape and mode, timed in turns.

    Returns:
        The rows, and with ``config.padding`` the cost of the padding mask (see
        `attnkit.bench.padding`), timed in the same turns.
    """
    per_case = config.warmup + 1 + config.repeats  # warm-up, one profiled call, timed runs
    names = [(name, "baseline") for name in config.baselines if name in REFERENCES]
    names += [(name, "variant") for name in config.variants]
    names += [(name, "baseline") for name in config.baselines if name not in REFERENCES]
    torch.manual_seed(config.seed)
    x = torch.randn(shape.batch, shape.tokens, shape.d_model, dtype=config.dtype)
    padding, padded = None, 0
    if config.padding is not None:
        padded = padded_tokens(shape.tokens, config.padding)
        padding = attention_mask(shape.batch, shape.tokens, padded, config.padding_side)
    cases: list[Case] = []
    rows: dict[str, dict[str, Any]] = {}
    for name, kind in names:
        progress.set_description_str(f"{shape} {mode}: building {name}")
        case = build_case(name, kind, shape, config.dtype, config.seed)
        row = _row(case, shape, mode)
        if case.skipped is None:
            _check_memory(config, case, shape, mode, row)
        if case.skipped is not None:
            row["status"], row["reason"] = "skipped", case.skipped
            case.module = None
            progress.update(per_case * (2 if padding is not None and kind == "variant" else 1))
        cases.append(case)
        rows[_key(case)] = row
        if padding is not None and kind == "variant" and case.module is not None:
            padded_case = _padded_case(case)
            padded_row = _row(padded_case, shape, mode)
            padded_row["padding"] = {
                "fraction": config.padding,
                "side": config.padding_side,
                "tokens": padded,
            }
            if padded_case.skipped is not None:
                padded_row["status"], padded_row["reason"] = "skipped", padded_case.skipped
                progress.update(per_case)
            cases.append(padded_case)
            rows[_key(padded_case)] = padded_row
    steps: dict[str, Callable[[], object]] = {}
    numbers: dict[str, int] = {}
    for case in cases:
        if case.module is None:
            continue
        progress.set_description_str(f"{shape} {mode}: warming up {case.name}")
        row = rows[_key(case)]
        done = 0
        try:
            step, reset = _step(case, x, mode, padding if case.kind == "padded" else None)
            seconds = warm_up(step, config.warmup, 2 * config.min_run_time)
            progress.update(config.warmup)
            done += config.warmup
            progress.set_description_str(f"{shape} {mode}: profiling {case.name}")
            row.update(_use_fields(profile_call(step, reset)))
        except Exception as error:  # a case that fails is reported, the rest still run
            row["status"] = "error"
            row["reason"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            case.module = None
            gc.collect()
            progress.update(per_case - done)
            continue
        progress.update(1)
        steps[_key(case)] = step
        numbers[_key(case)] = calls_per_run(seconds, config.min_run_time)
    mask = None
    if padding is not None:
        mask, mask_calls = mask_steps(shape, padding)
        for name, step in mask_calls.items():
            steps[f"mask:{name}"] = step
            numbers[f"mask:{name}"] = calls_per_run(
                warm_up(step, config.warmup, 2 * config.min_run_time), config.min_run_time
            )
    progress.set_description_str(f"{shape} {mode}: timing {len(steps)} cases in turns")
    timings = time_interleaved(steps, config.repeats, numbers, progress)
    mask_cost = None
    if mask is not None:
        runs = {name: timings.pop(f"mask:{name}") for name in ("first", "cached")}
        mask_cost = mask_entry(shape, mode, mask, config.padding_side, runs)
    for key, runs in timings.items():
        row = rows[key]
        row["status"] = "ok"
        row["calls_per_run"] = numbers[key]
        row["runs_ms"] = [seconds * 1e3 for seconds in runs]
        row["ms"] = median(runs) * 1e3
    _derive(rows, cases, shape, mode, matmul)
    if mask_cost is not None:
        for row in rows.values():
            if row["kind"] == "padded" and row["status"] == "ok":
                row["mask_share"] = mask_cost["first_ms"] / row["ms"]
    del steps, cases
    gc.collect()
    return list(rows.values()), mask_cost


def _key(case: Case) -> str:
    # A third-party variant may share a baseline's name; the kind tells them apart.
    return f"{case.kind}:{case.name}"


def _padded_case(case: Case) -> Case:
    """``case`` again, to be called with a padding mask: the same module, kind ``"padded"``."""
    padded = Case(
        case.name,
        "padded",
        case.module,
        case.heads,
        case.head_dim,
        case.causal,
        case.arguments,
        case.note,
    )
    capabilities = getattr(type(case.module), "capabilities", frozenset())
    if "attention_mask" not in capabilities:
        declared = ", ".join(sorted(capabilities)) or "none"
        padded.skipped = (
            f"takes no attention_mask: it does not declare the attention_mask capability "
            f"(it declares: {declared})"
        )
        padded.module = None
    return padded


def _row(case: Case, shape: Shape, mode: str) -> dict[str, Any]:
    return {
        "shape": shape.to_json(),
        "mode": mode,
        "name": case.name,
        "kind": case.kind,
        "reference": False,  # set by _derive on the faster of REFERENCES
        "status": None,
        "reason": None,
        "arguments": case.arguments,
        "heads": case.heads,
        "head_dim": case.head_dim,
        "causal": case.causal,
        "note": case.note,
    }


def _step(
    case: Case, x: torch.Tensor, mode: str, attention_mask: torch.Tensor | None = None
) -> tuple[Callable[[], None], Callable[[], None]]:
    """One call of ``case`` in ``mode``, and what clears the previous call's gradients.

    The step clears them itself (as a training loop's ``zero_grad`` does); the
    profiled call clears them first too, so that freeing them is not counted.
    With ``attention_mask``, every call passes it.
    """
    module = case.module
    assert module is not None
    arguments = {} if attention_mask is None else {"attention_mask": attention_mask}
    if mode == "forward":
        module.eval()

        def forward() -> None:
            with torch.no_grad():
                module(x, **arguments)

        return forward, lambda: None
    module.train()
    leaf = x.detach().clone().requires_grad_(True)
    with torch.no_grad():
        grad = torch.randn_like(module(leaf))

    def reset() -> None:
        module.zero_grad(set_to_none=True)
        leaf.grad = None

    def forward_backward() -> None:
        reset()
        module(leaf, **arguments).backward(grad)

    return forward_backward, reset


def _use_fields(use: Any) -> dict[str, Any]:
    return {
        "attention": use.label,
        "kernels": use.kernels,
        "causal_halved": use.causal_halved,
        "peak_mb": None if use.peak_bytes is None else use.peak_bytes / 2**20,
        "rss_peak_mb": None if use.rss_peak_bytes is None else use.rss_peak_bytes / 2**20,
    }


def _check_memory(config: Config, case: Case, shape: Shape, mode: str, row: dict) -> None:
    """Skip ``case`` if it would not fit in memory, judged from a run at fewer tokens.

    Only when the worst case (three or four ``tokens x tokens`` matrices per head)
    could take more than half the available memory: the case then runs once at
    ``tokens / k`` tokens and its measured peak, times ``k**2``, is the estimate. As
    attention memory grows at most with the square of the tokens, this errs high.
    """
    available = available_memory()
    if worst_case_bytes(shape, mode, config.dtype) <= _PROBE_ABOVE * available:
        return
    factor = 4
    while (
        shape.tokens // factor > 1
        and worst_case_bytes(shape.with_tokens(shape.tokens // factor), mode, config.dtype)
        > _PROBE_ABOVE * available
    ):
        factor *= 2
    probe_shape = shape.with_tokens(max(1, shape.tokens // factor))
    try:
        probe = build_case(case.name, case.kind, probe_shape, config.dtype, config.seed)
        if probe.module is None:
            return
        x = torch.randn(
            probe_shape.batch, probe_shape.tokens, probe_shape.d_model, dtype=config.dtype
        )
        use = profile_call(*_step(probe, x, mode))
    except Exception:  # the case itself will fail the same way, and be reported then
        return
    finally:
        probe = x = None
        gc.collect()
    measured = use.peak_bytes if use.peak_bytes is not None else use.rss_peak_bytes
    if measured is None:
        return
    scale = (shape.tokens / probe_shape.tokens) ** 2
    estimate = measured * scale
    row["memory_estimate_mb"] = estimate / 2**20
    if estimate > _SKIP_ABOVE * available:
        case.skipped = (
            f"would need about {estimate / 1e9:.1f} GB ({measured / 1e6:,.0f} MB measured at "
            f"{probe_shape.tokens:,} tokens, times {scale:,.0f}); "
            f"{available / 1e9:.1f} GB is available"
        )


def _derive(
    rows: dict[str, dict[str, Any]],
    cases: list[Case],
    shape: Shape,
    mode: str,
    matmul: dict[str, Any],
) -> None:
    """Add FLOPs, GFLOP/s and the ratio to the reference to every measured row.

    The reference is the faster of the `REFERENCES` measured at this shape and mode.
    """
    measured = [
        row
        for name in REFERENCES
        if (row := rows.get(f"baseline:{name}")) is not None and row["status"] == "ok"
    ]
    reference = min(measured, key=lambda row: row["ms"], default=None)
    reference_ms = None if reference is None else reference["ms"]
    if reference is not None:
        reference["reference"] = True
    for case in cases:
        row = rows[_key(case)]
        if row["status"] != "ok" or case.module is None:
            continue
        flops = case_flops(case, shape, mode, bool(row.get("causal_halved")))
        row["gflop"] = flops / 1e9
        row["gflops"] = flops / (row["ms"] / 1e3) / 1e9
        row["matmul_fraction"] = row["gflops"] / matmul["gflops"]
        row["ratio"] = None if reference_ms is None else row["ms"] / reference_ms
        if case.kind == "padded":
            unpadded = rows.get(f"variant:{case.name}")
            measured = unpadded is not None and unpadded["status"] == "ok"
            row["vs_unpadded"] = row["ms"] / unpadded["ms"] if measured else None
