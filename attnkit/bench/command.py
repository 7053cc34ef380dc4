"""The ``attnkit bench`` command: its options, and running it.

`add_arguments` and `run` are what ``attnkit bench`` is made of; `main` runs the
same on its own, as ``python -m attnkit.bench``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import attnkit
from attnkit._loader import PLUGINS_ENV
from attnkit._suggest import did_you_mean
from attnkit.bench.baselines import BASELINES
from attnkit.bench.cases import REFERENCES, Shape, minimum_bytes
from attnkit.bench.kernels import KERNEL_MASKS, KERNELS, MaskSpec, parse_masks
from attnkit.bench.measure import NoProgress, available_memory
from attnkit.bench.padding import SIDES, parse_fraction
from attnkit.bench.report import format_report
from attnkit.bench.runner import MODES, Config, benchmark, planned_steps

__all__ = ["PRESETS", "Preset", "add_arguments", "main", "run"]

INSTALL_HINT = "pip install 'attnkit[bench]'"

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Preset:
    """A named set of shapes and settings."""

    shapes: tuple[str, ...]
    modes: tuple[str, ...]
    repeats: int
    warmup: int
    matmul_size: int
    overhead_runs: int
    description: str


PRESETS = {
    "default": Preset(
        ("8x1024x768x12",), ("forward", "train"), 5, 1, 2048, 5,
        "the reference chapter's shape, forward and forward+backward",
    ),
    "quick": Preset(
        ("4x256x256x4",), ("forward", "train"), 5, 1, 1024, 3,
        "a small shape; under a minute on two cores",
    ),
    "long": Preset(
        ("1x8192x768x12", "1x16384x768x12"), ("forward",), 3, 1, 2048, 3,
        "8,192 and 16,384 tokens, batch 1, forward: peak memory",
    ),
}  # fmt: skip
"""The presets: the default run, ``--quick`` and ``--long``."""


def _shape(text: str) -> Shape:
    try:
        return Shape.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        return parse_fraction(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``attnkit bench``'s options to ``parser``."""
    presets = parser.add_argument_group("what to measure")
    choice = presets.add_mutually_exclusive_group()
    choice.add_argument(
        "--quick",
        action="store_true",
        help=f"{PRESETS['quick'].description} ({', '.join(PRESETS['quick'].shapes)})",
    )
    choice.add_argument(
        "--long",
        action="store_true",
        help=f"{PRESETS['long'].description} ({', '.join(PRESETS['long'].shapes)})",
    )
    presets.add_argument(
        "--shape",
        action="append",
        type=_shape,
        metavar="BxTxDxH",
        help="batch x tokens x d_model x heads, e.g. 8x1024x768x12; repeat for several "
        f"(replaces the preset's shapes; default {PRESETS['default'].shapes[0]})",
    )
    presets.add_argument(
        "--mode",
        choices=[*MODES, "both"],
        help="forward (eval, no_grad), train (forward+backward, dropout 0) or both "
        "(default: both; --long: forward)",
    )
    presets.add_argument(
        "--variants",
        default="*",
        metavar="PATTERNS",
        help="comma-separated names or fnmatch patterns of registered variants, or 'none' "
        "(default: all)",
    )
    presets.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        metavar="NAMES",
        help=f"comma-separated, from {', '.join(BASELINES)}, or 'none' (default: all); "
        f"ratios are to the faster of {' and '.join(REFERENCES)}",
    )
    presets.add_argument("--dtype", choices=list(DTYPES), default="float32")
    presets.add_argument(
        "--no-overhead",
        action="store_true",
        help="skip timing attnkit.create() and plugin loading",
    )
    presets.add_argument(
        "--compile",
        action="store_true",
        help="also run the conformance kit's compile check on every selected variant: "
        "torch.compile(fullgraph=True) compiles it and its output equals eager",
    )
    presets.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (default: inductor)"
    )
    masked = parser.add_argument_group("padding and kernels")
    masked.add_argument(
        "--padding",
        type=_fraction,
        metavar="FRACTION",
        help="also time every selected variant that takes an attention_mask with FRACTION of "
        "each row padding (e.g. 0.25), in turns with the unpadded rows, and the cost of "
        "building and materialising the mask",
    )
    masked.add_argument(
        "--padding-side",
        choices=SIDES,
        help="where the padding goes: left (before the real tokens; the default) or right",
    )
    masked.add_argument(
        "--kernels",
        nargs="?",
        const=",".join(KERNELS),
        metavar="NAMES",
        help="also time registered kernels called directly on (batch, heads, tokens, "
        "head_dim) tensors, forward under no_grad, with each of --kernel-masks: "
        f"comma-separated names or patterns (default: {','.join(KERNELS)}); ratios are to "
        "sdpa with the same mask; a compiling kernel's first call is reported apart",
    )
    masked.add_argument(
        "--kernel-masks",
        metavar="MASKS",
        help="comma-separated masks for --kernels, each attnkit.masks factories joined with "
        "&: causal, sliding_window:W, prefix_lm:N, document:N (N equal documents per row), "
        f"padding:F (default: {','.join(KERNEL_MASKS)}); implies --kernels",
    )
    how = parser.add_argument_group("how to measure")
    how.add_argument(
        "--repeats",
        type=_positive,
        help="timed runs per case; the median is reported (default 5; --long 3)",
    )
    how.add_argument(
        "--warmup",
        type=_count,
        help="untimed calls per case first, continued for at least twice --min-run-time "
        "(default 1)",
    )
    how.add_argument(
        "--min-run-time",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="a timed run repeats a short call until it lasts this long (default 0.05)",
    )
    how.add_argument(
        "--matmul-size",
        type=_positive,
        metavar="N",
        help="side of the square float32 matmul that measures the machine's rate "
        "(default 2048; --quick 1024)",
    )
    how.add_argument("--threads", type=_positive, help="torch threads (default: torch's choice)")
    how.add_argument("--seed", type=int, default=0, help="seed for weights and inputs")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--json",
        metavar="PATH",
        help="write the results as JSON to PATH ('-' for standard output; the table then "
        "goes to standard error)",
    )
    output.add_argument("--label", help="a name for the machine, stored with the results")
    output.add_argument(
        "--no-progress", action="store_true", help="draw no progress bar (needs no tqdm)"
    )


def _fail(message: str, status: int = 2) -> int:
    print(f"attnkit bench: error: {message}", file=sys.stderr)
    return status


def _hint(word: str, choices: Sequence[str]) -> str:
    hint = did_you_mean(word, choices)
    return f" ({hint})" if hint else ""


def _select(option: str, what: str, patterns: str, available: list[str]) -> list[str]:
    """The names of ``available`` that comma-separated ``patterns`` match, or none for 'none'."""
    if patterns.strip().lower() == "none":
        return []
    selected: list[str] = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        matches = [name for name in available if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise ValueError(
                f"{option}: no registered {what} matches {pattern!r}"
                f"{_hint(pattern, available)}; available: {', '.join(available) or 'none'}"
            )
        selected += [name for name in matches if name not in selected]
    return selected


def _select_variants(patterns: str) -> list[str]:
    return _select("--variants", "variant", patterns, attnkit.list_variants())


def _select_kernels(patterns: str | None, masks: str | None) -> list[str]:
    if patterns is None and masks is None:
        return []
    return _select("--kernels", "kernel", patterns or ",".join(KERNELS), attnkit.list_kernels())


def _select_baselines(names: str) -> list[str]:
    if names.strip().lower() == "none":
        return []
    selected = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in selected if name not in BASELINES]
    if unknown:
        raise ValueError(
            f"--baselines: unknown baseline {unknown[0]!r}{_hint(unknown[0], list(BASELINES))}; "
            f"choose from {', '.join(BASELINES)} or 'none'"
        )
    return [name for name in BASELINES if name in selected]


def _command(args: argparse.Namespace, preset: str) -> str:
    """The command line that repeats this run."""
    words = ["attnkit", "bench"]
    plugins = os.environ.get(PLUGINS_ENV)
    if plugins is not None:  # which plugins loaded decides which variants were measured
        words.insert(0, f"{PLUGINS_ENV}={plugins}")
    if preset != "default":
        words.append(f"--{preset}")
    for shape in args.shape or []:
        words += ["--shape", str(shape)]
    options = {
        "--mode": args.mode,
        "--variants": None if args.variants == "*" else args.variants,
        "--baselines": None if args.baselines == ",".join(BASELINES) else args.baselines,
        "--dtype": None if args.dtype == "float32" else args.dtype,
        "--repeats": args.repeats,
        "--warmup": args.warmup,
        "--min-run-time": None if args.min_run_time == 0.05 else args.min_run_time,
        "--matmul-size": args.matmul_size,
        "--threads": args.threads,
        "--seed": args.seed or None,
        "--padding": args.padding,
        "--padding-side": args.padding_side,
        "--kernels": args.kernels,
        "--kernel-masks": args.kernel_masks,
        "--label": args.label,
        "--json": args.json,
    }
    for option, value in options.items():
        if value is not None:
            words += [option, str(value)]
    for flag in ("no_overhead", "compile"):
        if getattr(args, flag):
            words.append("--" + flag.replace("_", "-"))
    return shlex.join(words)


def config_from_arguments(args: argparse.Namespace) -> Config:
    """Turn parsed options into a `Config`; a bad option raises `ValueError` naming it."""
    preset_name = "quick" if args.quick else "long" if args.long else "default"
    preset = PRESETS[preset_name]
    shapes = list(args.shape) if args.shape else [Shape.parse(s) for s in preset.shapes]
    if args.mode is None:
        modes = list(preset.modes)
    else:
        modes = list(MODES) if args.mode == "both" else [args.mode]
    if not args.min_run_time >= 0:
        raise ValueError(f"--min-run-time must be >= 0 seconds, got {args.min_run_time}")
    variants = _select_variants(args.variants)
    baselines = _select_baselines(args.baselines)
    kernels = _select_kernels(args.kernels, args.kernel_masks)
    if not variants and not baselines and not kernels:
        raise ValueError("nothing to measure: --variants and --baselines select nothing")
    if args.padding is None and args.padding_side is not None:
        raise ValueError(
            f"--padding-side {args.padding_side}: give --padding FRACTION too, e.g. --padding 0.25"
        )
    if args.padding is not None and not variants:
        raise ValueError("--padding: --variants selects no variant to pad")
    kernel_masks = [MaskSpec.parse(text) for text in KERNEL_MASKS]
    if args.kernel_masks is not None:
        kernel_masks = parse_masks(args.kernel_masks)
    dtype = DTYPES[args.dtype]
    matmul_size = args.matmul_size or preset.matmul_size
    _check_memory(shapes, modes, dtype, matmul_size)
    return Config(
        shapes=shapes,
        modes=modes,
        variants=variants,
        baselines=baselines,
        dtype=dtype,
        repeats=args.repeats if args.repeats is not None else preset.repeats,
        warmup=args.warmup if args.warmup is not None else preset.warmup,
        min_run_time=args.min_run_time,
        matmul_size=matmul_size,
        overhead=not args.no_overhead,
        overhead_runs=preset.overhead_runs,
        compile=args.compile,
        compile_backend=args.compile_backend,
        seed=args.seed,
        label=args.label,
        preset=preset_name,
        command=_command(args, preset_name),
        padding=args.padding,
        padding_side=args.padding_side or "left",
        kernels=kernels,
        kernel_masks=kernel_masks,
    )


def _check_memory(
    shapes: list[Shape], modes: list[str], dtype: torch.dtype, matmul_size: int
) -> None:
    """Refuse, before anything runs, sizes whose smallest tensors exceed the available memory.

    A case whose attention matrices would not fit is measured at fewer tokens and
    skipped with its estimate while the run goes on; this catches what no case
    can avoid: the input, the projections and the output (`minimum_bytes`).
    """
    available = available_memory()
    dtype_name = str(dtype).removeprefix("torch.")
    for shape in shapes:
        for mode in modes:
            needed = minimum_bytes(shape, mode, dtype)
            if needed > available:
                raise ValueError(
                    f"--shape {shape}: too big for this machine: a {mode} pass needs at least "
                    f"{_gigabytes(needed)} (the input, projections and output, "
                    f"{12 if mode == 'train' else 6} x {shape.batch:,} x {shape.tokens:,} x "
                    f"{shape.d_model:,} {dtype_name} values, and the weights); "
                    f"{_gigabytes(available)} is available"
                )
    needed = 3 * matmul_size**2 * 4  # measured in float32
    if needed > available:
        raise ValueError(
            f"--matmul-size {matmul_size}: three {matmul_size:,} x {matmul_size:,} float32 "
            f"matrices need {_gigabytes(needed)}; {_gigabytes(available)} is available"
        )


def _gigabytes(size: float) -> str:
    return f"about {size / 1e9:,.1f} GB" if size >= 1e8 else f"about {size / 1e6:,.1f} MB"


def _check_output(path: str | None) -> None:
    """Refuse a ``--json`` path that cannot be written, before anything is measured.

    The file is opened for appending (so it is created if missing, and left as it
    was if present) and, if it was new, removed again: what the run would hit at
    its end, it hits now.
    """
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"--json {path}: is a directory; give a file name")
    parent = target.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ValueError(f"--json {path}: cannot write there: {parent} {what}")
    existed = target.exists()
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise ValueError(f"--json {path}: cannot write there: {error.strerror or error}") from None
    if not existed:
        target.unlink(missing_ok=True)


def _progress_bar(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)


def run(args: argparse.Namespace) -> int:
    """Run ``attnkit bench`` with parsed options; return the exit status.

    Prints the tables and, with ``--json``, writes the report. Exit status 0 on
    success; 2 for a bad option, before anything is measured (an output path that
    cannot be written, sizes too big for the machine's memory); 1 when the progress
    bar cannot be drawn (tqdm missing) or the run itself fails, said in one line.
    """
    try:
        config = config_from_arguments(args)
        _check_output(args.json)
    except ValueError as error:
        return _fail(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    bar: Any = NoProgress()
    if not args.no_progress:
        bar = _progress_bar(planned_steps(config))
        if bar is None:
            print(
                "attnkit bench: error: the progress bar needs tqdm, which is not installed. "
                f"Install it with: {INSTALL_HINT} (or pass --no-progress)",
                file=sys.stderr,
            )
            return 1
    try:
        report = benchmark(config, bar)
    except (RuntimeError, MemoryError) as error:  # out of memory, mostly: one line, no traceback
        first = str(error).strip().splitlines()
        return _fail(f"the run failed: {type(error).__name__}: {first[0] if first else ''}", 1)
    finally:
        if hasattr(bar, "close"):
            bar.close()
    text = format_report(report)
    print(text, file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
        print()
    elif args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as file:
                json.dump(report, file, indent=1)
                file.write("\n")
        except OSError as error:
            return _fail(f"--json {args.json}: cannot write the results: {error}", 1)
        print(f"results written to {args.json}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m attnkit.bench``: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    parser = argparse.ArgumentParser(
        prog="attnkit bench",
        description="Time every registered attention variant against PyTorch baselines "
        "(fused SDPA, nn.MultiheadAttention, the textbook form) at the same shape.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
