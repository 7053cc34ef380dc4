"""How things are measured: time, peak memory, the attention kernel PyTorch chose, the machine.

Time
    The median of repeated timed runs after warm-up. The cases of one shape and
    mode are timed in turns (every case once, then every case again, starting
    one further along each round), so that a slow spell of the machine lands on
    all of them alike and their ratios stay fair. A run is one call, or as many
    calls as make it last ``min_run_time``, for calls too short to time alone.

Peak memory
    CPU tensors have no allocator statistics in PyTorch, so one extra call per
    case runs under `torch.profiler` with ``profile_memory=True``, which records
    every allocation and free of PyTorch's CPU allocator, in order; the peak of
    their running sum is the most memory the call held on top of what was
    allocated before it (the module and its input are not counted; its output
    and, to train, the gradients are). It is exact for tensor memory and blind to
    what bypasses PyTorch's allocator (oneDNN and OpenMP scratch space, a few MB
    at most). As a cross-check, the same call's resident-set high-water mark is
    read from the kernel on Linux (``/proc/self/clear_refs`` resets it, then
    ``VmHWM - VmRSS``); it sees every page the process touches, to the page, but
    reads low when a call reuses memory the C library kept from an earlier one.

Kernel
    The same profiled call records which attention operators ran, with
    ``is_causal`` and whether an ``attn_mask`` was passed, for the fused ones:
    ``_scaled_dot_product_flash_attention_for_cpu`` is PyTorch's fused CPU kernel;
    with ``is_causal=True`` it skips the blocks above the diagonal, which is what
    halves the attention FLOP count, while with a mask (a padding mask, say) it
    computes every block and adds the mask to the scores.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

__all__ = [
    "FLASH",
    "KernelUse",
    "Progress",
    "available_memory",
    "machine_info",
    "matmul_gflops",
    "profile_call",
    "time_interleaved",
    "warm_up",
]

FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"
"""PyTorch's fused attention operator on CPU."""

# Attention operators by the label the report shows; backward operators are not listed,
# since they follow the forward choice.
_KERNELS = {
    FLASH: "flash",
    "aten::_scaled_dot_product_attention_math": "SDPA math",
    "aten::_native_multi_head_attention": "native MHA",
    "aten::_masked_softmax": "masked softmax",
    "aten::_softmax": "softmax",  # what aten::softmax runs; counted once per softmax
}
# What a call of a torch.compile'd function shows (FlexAttention, for one): its generated
# code runs inside this region, under no operator name of its own.
_COMPILED = "Torch-Compiled Region"


class Progress(Protocol):
    """What the harness needs of a progress bar (tqdm's interface)."""

    def update(self, n: float = 1) -> Any: ...

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> Any: ...


class NoProgress:
    """A progress bar that draws nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        pass


@dataclass
class KernelUse:
    """What one profiled call did: the attention operators it ran and the memory it took.

    Attributes:
        kernels: Each attention operator's label and how often it ran, in first-seen
            order, e.g. ``{"flash": 12}``.
        flash_calls: Calls of the fused CPU kernel, how many had ``is_causal=True``
            (``flash_causal_calls``) and how many an ``attn_mask`` (``flash_masked_calls``).
        peak_bytes: Peak of PyTorch's CPU allocations during the call, over what was
            allocated before it; ``None`` if the profiler did not report allocations.
        rss_peak_bytes: The resident-set high-water mark during the call, over the
            resident set before it; ``None`` where the kernel cannot reset it.
    """

    kernels: dict[str, int] = field(default_factory=dict)
    flash_calls: int = 0
    flash_causal_calls: int = 0
    flash_masked_calls: int = 0
    peak_bytes: int | None = None
    rss_peak_bytes: int | None = None

    @property
    def causal_halved(self) -> bool:
        """Whether every attention ran through the fused kernel with ``is_causal=True``."""
        others = any(label != "flash" for label in self.kernels)
        return self.flash_calls > 0 and self.flash_causal_calls == self.flash_calls and not others

    @property
    def label(self) -> str:
        """A short name for the attention computation: ``"flash causal"``, ``"softmax"``...

        ``"flash, masked"`` is the fused kernel given a mask: it ran fused, but
        computed every block.
        """
        if self.flash_calls and not any(label != "flash" for label in self.kernels):
            if self.flash_causal_calls == self.flash_calls:
                return "flash causal"
            if self.flash_causal_calls:
                return "flash, partly causal"
            return "flash, masked" if self.flash_masked_calls == self.flash_calls else "flash"
        if "SDPA math" in self.kernels:
            return "SDPA math"
        if "native MHA" in self.kernels:
            return "native MHA"
        if self.kernels:
            return " + ".join(label for label in self.kernels if label != "flash") or "flash"
        return "none seen"


def time_interleaved(
    steps: dict[str, Callable[[], object]],
    repeats: int,
    numbers: dict[str, int],
    progress: Progress | None = None,
) -> dict[str, list[float]]:
    """Time each step ``repeats`` times, in turns; return the seconds per call of every run.

    Args:
        steps: Zero-argument callables by name; each call is one forward (or forward
            and backward) pass.
        repeats: Timed runs per step.
        numbers: Calls per run, by name (see `calls_per_run`).
        progress: Advanced by one for every run.
    """
    progress = progress or NoProgress()
    names = list(steps)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for offset in range(len(names)):
            name = names[(round_ + offset) % len(names)]
            step, number = steps[name], numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                step()
            seconds[name].append((time.perf_counter() - start) / number)
            progress.update(1)
    return seconds


def warm_up(step: Callable[[], object], calls: int, min_time: float) -> float:
    """Call ``step`` ``calls`` times and for at least ``min_time`` seconds, at least once.

    Returns:
        The seconds a call takes, as the median of the later half of the calls.
    """
    seconds: list[float] = []
    began = time.perf_counter()
    while len(seconds) < max(calls, 1) or (
        time.perf_counter() - began < min_time and len(seconds) < 10_000
    ):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return median(seconds[len(seconds) // 2 :])


def calls_per_run(seconds_per_call: float, min_run_time: float) -> int:
    """How many calls make a run last at least ``min_run_time`` (one if a call already does).

    Examples:
        >>> calls_per_run(0.5, 0.05), calls_per_run(0.001, 0.05)
        (1, 50)
    """
    if seconds_per_call >= min_run_time:
        return 1
    return max(1, round(min_run_time / max(seconds_per_call, 1e-9)))


def median(values: list[float]) -> float:
    return statistics.median(values)


def profile_call(
    step: Callable[[], object], prepare: Callable[[], object] | None = None
) -> KernelUse:
    """Run ``step`` once under the profiler and report its attention kernels and peak memory.

    Args:
        step: The call to profile.
        prepare: Called just before, outside the profiled region (to free what the
            previous call left, such as gradients).
    """
    from torch.profiler import ProfilerActivity, profile

    # Without this, the profiler's backend prints a line on every start and stop.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    if prepare is not None:
        prepare()
    activities = [ProfilerActivity.CPU]
    with (
        _rss_high_water_mark() as rss,
        profile(activities=activities, profile_memory=True, record_shapes=True) as profiler,
    ):
        step()
    use = KernelUse(peak_bytes=_peak_allocated(profiler), rss_peak_bytes=rss.get("peak"))
    causal_index = _argument_index("is_causal", 4)
    mask_index = _argument_index("attn_mask", 5)
    for name, inputs, shapes in _operators(profiler):
        label = _KERNELS.get(name) or ("compiled" if name.startswith(_COMPILED) else None)
        if label is None:
            continue
        use.kernels[label] = use.kernels.get(label, 0) + 1
        if name == FLASH:
            use.flash_calls += 1
            if causal_index < len(inputs) and inputs[causal_index] is True:
                use.flash_causal_calls += 1
            if mask_index < len(shapes) and shapes[mask_index]:
                use.flash_masked_calls += 1
    return use


def _operators(profiler: Any) -> list[tuple[str, list[Any], list[Any]]]:
    """Every operator the profiler saw, in order, with its scalar arguments and input shapes."""
    try:
        events = profiler.profiler.kineto_results.events()
        return [(e.name(), list(e.concrete_inputs() or []), list(e.shapes() or [])) for e in events]
    except (AttributeError, RuntimeError):  # the private API moved: take the public, slower one
        return [
            (
                e.name,
                list(getattr(e, "concrete_inputs", None) or []),
                list(getattr(e, "input_shapes", None) or []),
            )
            for e in profiler.events()
        ]


def _argument_index(name: str, default: int) -> int:
    """Where the argument ``name`` sits among the fused CPU kernel's arguments."""
    try:
        schema = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default._schema
        return [argument.name for argument in schema.arguments].index(name)
    except (AttributeError, RuntimeError, ValueError):
        return default


def _peak_allocated(profiler: Any) -> int | None:
    """The peak of the running sum of the allocations and frees the profiler recorded."""
    try:
        events = profiler.profiler.kineto_results.events()
        changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except (AttributeError, RuntimeError):
        return None
    current = peak = 0
    for _, change in changes:
        current += change
        peak = max(peak, current)
    return peak


@contextlib.contextmanager
def _rss_high_water_mark() -> Iterator[dict[str, int]]:
    """Yield a dict that gets ``"peak"``: the resident-set peak over the start, in bytes."""
    result: dict[str, int] = {}
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # reset VmHWM to the current resident set
        before = _status_kb("VmRSS")
    except OSError:
        before = None
    yield result
    after = _status_kb("VmHWM") if before is not None else None
    if before is not None and after is not None:
        result["peak"] = max(0, after - before) * 1024


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def available_memory() -> int:
    """Bytes of memory available to start new work without swapping (``MemAvailable``)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: do not skip anything on its account


def total_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def matmul_gflops(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> dict:
    """The machine's dense matrix-product rate: a ``size x size`` product, median of ``repeats``.

    Returns:
        ``{"size", "dtype", "ms", "gflops"}``, counting ``2 * size**3`` operations per product.
    """
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.matmul(a, b, out=out)  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        runs.append(time.perf_counter() - start)
    seconds = median(runs)
    return {
        "size": size,
        "dtype": str(dtype).removeprefix("torch."),
        "ms": seconds * 1e3,
        "gflops": 2.0 * size**3 / seconds / 1e9,
    }


def cpu_model() -> str:
    """The CPU's model name, from ``/proc/cpuinfo`` where there is one."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(label: str | None = None) -> dict[str, Any]:
    """The machine and software a result was measured on."""
    import attnkit

    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cores = os.cpu_count()
    total = total_memory()
    return {
        "label": label,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "threads": torch.get_num_threads(),
        "memory_gb": None if total is None else round(total / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "attnkit": attnkit.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": load_average(),
    }


def load_average() -> float | None:
    """The one-minute load average: above the core count, other work competes for the CPU."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
