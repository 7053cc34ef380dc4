"""Reading a benchmark report: the console table, a Markdown table, and the targets of issue 5.

These take the report `attnkit.bench.runner.benchmark` returns (or the same
loaded from a ``--json`` file with `load`), so a committed result can be shown
again without measuring anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "LONG_SHAPES",
    "TARGETS",
    "TARGET_SHAPE",
    "format_report",
    "groups",
    "load",
    "markdown_table",
    "targets",
]

TARGET_SHAPE = "8x1024x768x12"
"""The shape the speed targets are set at: the reference chapter's."""

LONG_SHAPES = ("1x8192x768x12", "1x16384x768x12")
"""The shapes of the memory targets."""

TARGETS = {
    "forward_vs_sdpa": 1.10,
    "train_vs_sdpa": 1.15,
    "train_speedup_vs_mha": 1.25,
    "long_forward_peak_mb": 512,
    "create_overhead_ms": 1.0,
    "plugin_load_ms": 50.0,
}
"""The measured targets of issue 5, for ``multihead`` on the machine the report comes from."""

_MODE_LABELS = {"forward": "forward", "train": "fwd+bwd"}


def load(path: str | Path) -> dict[str, Any]:
    """Read a report written with ``attnkit bench --json PATH``."""
    with open(path, encoding="utf-8") as file:
        report = json.load(file)
    if not str(report.get("schema", "")).startswith("attnkit-bench/"):
        raise ValueError(f"{path} is not an attnkit bench report (no 'schema' attnkit-bench/...)")
    return report


def shape_name(shape: dict[str, int]) -> str:
    """``"8x1024x768x12"`` for a row's shape."""
    return f"{shape['batch']}x{shape['tokens']}x{shape['d_model']}x{shape['heads']}"


def describe_shape(shape: dict[str, int]) -> str:
    return (
        f"batch {shape['batch']}, {shape['tokens']:,} tokens, d_model {shape['d_model']}, "
        f"{shape['heads']} heads"
    )


def groups(report: dict[str, Any]) -> Iterator[tuple[dict[str, int], str, list[dict[str, Any]]]]:
    """The report's rows by shape and mode, in the order they were measured."""
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    shapes: dict[str, dict[str, int]] = {}
    for row in report.get("results", []):
        key = (shape_name(row["shape"]), row["mode"])
        shapes[key[0]] = row["shape"]
        seen.setdefault(key, []).append(row)
    for (name, mode), rows in seen.items():
        yield shapes[name], mode, rows


def row_label(row: dict[str, Any]) -> str:
    if row["kind"] == "baseline":
        return f"{row['name']} (baseline)"
    return row["name"]


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _megabytes(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _cells(row: dict[str, Any]) -> list[str]:
    ratio = row.get("ratio")
    if row.get("reference"):
        ratio_cell = "1.00x (ref)"
    else:
        ratio_cell = "-" if ratio is None else f"{ratio:.2f}x"
    fraction = row.get("matmul_fraction")
    return [
        row_label(row),
        row.get("attention") or "-",
        _number(row.get("ms")),
        ratio_cell,
        _number(row.get("gflops")),
        "-" if fraction is None else f"{fraction:.0%}",
        _megabytes(row.get("peak_mb")),
    ]


_HEADERS = ["name", "attention", "ms", "vs sdpa", "GFLOP/s", "of matmul", "peak MB"]
_RIGHT = {2, 3, 4, 5, 6}


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [_HEADERS, *rows]) for i in range(len(_HEADERS))]

    def line(cells: list[str]) -> str:
        return (
            indent
            + "  ".join(
                cell.rjust(widths[i]) if i in _RIGHT else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()
        )

    return [line(_HEADERS), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_report(report: dict[str, Any]) -> str:
    """The report as console text: one table per shape and mode, then overheads and targets."""
    machine = report["machine"]
    settings = report["settings"]
    lines = [
        f"attnkit bench: {machine['cpu']}, {machine['usable_cores']} cores, "
        f"{machine['threads']} threads, torch {machine['torch']}, {settings['dtype']}, "
        f"{machine['date']}" + (f" [{machine['label']}]" if machine.get("label") else ""),
    ]
    load = machine.get("load_average")
    if load is not None and load > 0.5 * machine["usable_cores"]:
        lines.append(
            f"warning: load average {load:.1f} on {machine['usable_cores']} cores when the run "
            "began: other work competes for the CPU, so timings are noisy (ratios less so)"
        )
    matmul = report.get("matmul")
    if matmul:
        lines.append(
            f"dense matmul {matmul['size']}x{matmul['size']} {matmul['dtype']}: "
            f"{matmul['gflops']:,.1f} GFLOP/s (what the GFLOP/s columns compare with)"
        )
    for shape, mode, rows in groups(report):
        lines += [
            "",
            f"{describe_shape(shape)}: {report['modes'].get(mode, mode)}, "
            f"median of {settings['repeats']} runs",
        ]
        lines += _table([_cells(row) for row in rows if row["status"] == "ok"])
        for row in rows:
            if row["status"] != "ok":
                lines.append(f"  {row['status']}: {row_label(row)}: {row['reason']}")
            elif row.get("note"):
                lines.append(f"  note: {row['name']}: {row['note']}")
    if report.get("results"):
        lines += [""]
        lines += [f"{name} (baseline): {what}" for name, what in report["baselines"].items()]
        lines += [
            "vs sdpa: time / the sdpa baseline's time, same shape and mode (lower is faster).",
            "GFLOP/s: attention 4*B*H*T^2*d, halved where attention is 'flash causal' (the fused",
            "kernel skips masked blocks); 2*B*T*d_in*d_out per projection; fwd+bwd = 3x forward.",
            "peak MB: most memory PyTorch allocated during one call, over what was allocated "
            "before it.",
        ]
    lines += _overhead_lines(report)
    elapsed = report.get("elapsed_s")
    if elapsed:
        lines.append(f"measured in {elapsed['total']:.1f} s")
    checks = targets(report)
    if checks:
        lines += ["", "targets (issue 5):"]
        for check in checks:
            mark = "met" if check["met"] else "NOT MET"
            where = f" ({check['shape']})" if check["shape"] else ""
            lines.append(f"  [{mark}] {check['target']}{where}: {check['measured']}")
    return "\n".join(lines)


def _overhead_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    created = report.get("create_overhead")
    if created:
        worst = max(created, key=lambda item: item["overhead_us"])
        lines += [
            "",
            "attnkit.create() over calling the class, median (small sizes): "
            + ", ".join(f"{item['variant']} {item['overhead_us']:+.1f} us" for item in created),
        ]
        lines.append(f"  largest: {worst['variant']}, {worst['overhead_us']:.1f} us")
    load = report.get("plugin_load")
    if load:
        lines.append(
            f"import attnkit + load all plugins, after torch, median of {load['runs']} fresh "
            f"interpreters: {load['total_ms']:.1f} ms (import {load['import_ms']:.1f} ms, "
            f"plugins {load['load_ms']:.1f} ms, {load['variants']} variants)"
        )
    compiled = report.get("compile")
    if compiled:
        lines.append("torch.compile(fullgraph=True) vs eager:")
        for item in compiled:
            status = "equal" if item["ok"] else f"FAILED ({item['error']})"
            diff = item.get("max_abs_diff")
            detail = "" if diff is None else f", max |diff| {diff:.1e}"
            seconds = item.get("seconds")
            timing = "" if seconds is None else f", {seconds:.1f} s"
            lines.append(f"  {item['variant']}: {status}{detail}{timing}")
    return lines


def _find(rows: list[dict[str, Any]], name: str, kind: str) -> dict[str, Any] | None:
    for row in rows:
        if row["name"] == name and row["kind"] == kind and row["status"] == "ok":
            return row
    return None


def targets(report: dict[str, Any], variant: str = "multihead") -> list[dict[str, Any]]:
    """Check the report against `TARGETS`, as far as it has the numbers.

    The speed targets are read at `TARGET_SHAPE`, the memory targets at
    `LONG_SHAPES`; shapes the report did not measure are left out.

    Returns:
        One ``{"target", "shape", "measured", "value", "met"}`` per check.
    """
    checks: list[dict[str, Any]] = []

    def check(target: str, shape: str | None, value: float, measured: str, met: bool) -> None:
        checks.append(
            {"target": target, "shape": shape, "value": value, "measured": measured, "met": met}
        )

    for shape, mode, rows in groups(report):
        name = shape_name(shape)
        row = _find(rows, variant, "variant")
        reference = _find(rows, "sdpa", "baseline")
        against_mha = [
            (label, found)
            for name, label in (
                ("mha", "with the is_causal hint"),
                ("mha_mask", "with the causal mask alone"),
            )
            if (found := _find(rows, name, "baseline")) is not None
        ]
        if name == TARGET_SHAPE and row is not None and reference is not None:
            limit = TARGETS["forward_vs_sdpa" if mode == "forward" else "train_vs_sdpa"]
            label = "forward" if mode == "forward" else "forward+backward"
            ratio = row["ms"] / reference["ms"]
            check(
                f"{variant} {label} <= {limit:.2f}x the sdpa baseline",
                name,
                ratio,
                f"{ratio:.2f}x ({row['ms']:,.1f} ms vs {reference['ms']:,.1f} ms)",
                ratio <= limit,
            )
        for how, mha in against_mha if name == TARGET_SHAPE and mode == "train" else []:
            if row is None:
                continue
            speedup = mha["ms"] / row["ms"]
            limit = TARGETS["train_speedup_vs_mha"]
            check(
                f"{variant} forward+backward >= {limit:.2f}x faster than nn.MultiheadAttention "
                f"({how})",
                name,
                speedup,
                f"{speedup:.2f}x ({row['ms']:,.1f} ms vs {mha['ms']:,.1f} ms)",
                speedup >= limit,
            )
        if name == LONG_SHAPES[0] and mode == "forward" and row is not None:
            peak = row.get("peak_mb")
            limit = TARGETS["long_forward_peak_mb"]
            if peak is not None:
                check(
                    f"{variant} forward at 8,192 tokens adds < {limit} MB peak memory",
                    name,
                    peak,
                    f"{peak:,.0f} MB",
                    peak < limit,
                )
        if name == LONG_SHAPES[1] and mode == "forward":
            tried = [r for r in rows if r["name"] == variant and r["kind"] == "variant"]
            if tried:
                ran = row is not None
                check(
                    f"{variant} forward at 16,384 tokens runs",
                    name,
                    row["ms"] if ran else 0.0,
                    f"runs: {row['ms']:,.0f} ms, peak {row.get('peak_mb') or 0:,.0f} MB"
                    if ran
                    else f"{tried[0]['status']}: {tried[0]['reason']}",
                    ran,
                )
    created = report.get("create_overhead")
    if created:
        worst = max(item["overhead_us"] for item in created) / 1e3
        limit = TARGETS["create_overhead_ms"]
        check(
            f"attnkit.create() adds < {limit:g} ms over the class",
            None,
            worst,
            f"{worst * 1e3:.1f} us at most",
            worst < limit,
        )
    load = report.get("plugin_load")
    if load:
        limit = TARGETS["plugin_load_ms"]
        check(
            f"import attnkit and load all plugins, after torch, < {limit:g} ms",
            None,
            load["total_ms"],
            f"{load['total_ms']:.1f} ms",
            load["total_ms"] < limit,
        )
    compiled = report.get("compile")
    if compiled:
        failed = [item["variant"] for item in compiled if not item["ok"]]
        check(
            "every variant compiles with fullgraph=True and equals eager",
            None,
            len(failed),
            "all equal" if not failed else "failed: " + ", ".join(failed),
            not failed,
        )
    return checks


def markdown_table(report: dict[str, Any], shape: str | None = None) -> str:
    """The measured rows as a Markdown table (for the docs), optionally for one shape.

    The shape column is left out when the table has one shape only.

    Args:
        report: A benchmark report.
        shape: Only rows of this shape, e.g. ``"8x1024x768x12"``.
    """
    selected = [
        (shape_name(row_shape), mode, row)
        for row_shape, mode, rows in groups(report)
        for row in rows
        if row["status"] == "ok" and shape in (None, shape_name(row_shape))
    ]
    several = len({name for name, _, _ in selected}) > 1
    headers = ["mode", "name", "attention", "ms", "vs sdpa", "GFLOP/s", "peak MB"]
    align = ["---", "---", "---", "---:", "---:", "---:", "---:"]
    if several:
        headers, align = ["shape", *headers], ["---", *align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for name, mode, row in selected:
        cells = _cells(row)
        label = f"**{cells[0]}**" if row["kind"] == "variant" else cells[0]
        values = [_MODE_LABELS.get(mode, mode), label, cells[1], *cells[2:5], cells[6]]
        if several:
            values.insert(0, name)
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)
