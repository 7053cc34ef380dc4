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
from typing import Any

import torch

import attnkit
from attnkit.bench.baselines import BASELINES
from attnkit.bench.cases import REFERENCE, Shape
from attnkit.bench.measure import NoProgress
from attnkit.bench.report import format_report
from attnkit.bench.runner import MODES, Config, benchmark, planned_steps
from attnkit.loader import PLUGINS_ENV

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
        "8,192 and 16,384 tokens, batch 1, forward: the memory targets",
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
        f"ratios are to {REFERENCE}",
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
        help="also check that every selected variant compiles with torch.compile(fullgraph=True) "
        "and equals eager",
    )
    presets.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (default: inductor)"
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


def _fail(message: str) -> int:
    print(f"attnkit bench: error: {message}", file=sys.stderr)
    return 2


def _select_variants(patterns: str) -> list[str]:
    available = attnkit.list_variants()
    if patterns.strip().lower() == "none":
        return []
    selected: list[str] = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        matches = [name for name in available if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise ValueError(
                f"--variants: no registered variant matches {pattern!r}; "
                f"available: {', '.join(available) or 'none'}"
            )
        selected += [name for name in matches if name not in selected]
    return selected


def _select_baselines(names: str) -> list[str]:
    if names.strip().lower() == "none":
        return []
    selected = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in selected if name not in BASELINES]
    if unknown:
        raise ValueError(
            f"--baselines: unknown baseline {unknown[0]!r}; choose from "
            f"{', '.join(BASELINES)} or 'none'"
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
    if not variants and not baselines:
        raise ValueError("nothing to measure: --variants and --baselines select nothing")
    return Config(
        shapes=shapes,
        modes=modes,
        variants=variants,
        baselines=baselines,
        dtype=DTYPES[args.dtype],
        repeats=args.repeats if args.repeats is not None else preset.repeats,
        warmup=args.warmup if args.warmup is not None else preset.warmup,
        min_run_time=args.min_run_time,
        matmul_size=args.matmul_size or preset.matmul_size,
        overhead=not args.no_overhead,
        overhead_runs=preset.overhead_runs,
        compile=args.compile,
        compile_backend=args.compile_backend,
        seed=args.seed,
        label=args.label,
        preset=preset_name,
        command=_command(args, preset_name),
    )


def _progress_bar(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)


def run(args: argparse.Namespace) -> int:
    """Run ``attnkit bench`` with parsed options; return the exit status.

    Prints the tables (and the targets the results can be checked against) and,
    with ``--json``, writes the report. Exit status 0 on success, 1 when the
    progress bar cannot be drawn (tqdm missing), 2 for a bad option.
    """
    try:
        config = config_from_arguments(args)
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
    finally:
        if hasattr(bar, "close"):
            bar.close()
    text = format_report(report)
    print(text, file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
        print()
    elif args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)
            file.write("\n")
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
