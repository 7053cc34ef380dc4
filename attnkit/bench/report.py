"""Reading a benchmark report: the console table and a Markdown table.

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
    "describe_shape",
    "find_row",
    "format_report",
    "groups",
    "load",
    "markdown_table",
    "shape_name",
]

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


_HEADERS = ["name", "attention", "ms", "vs ref", "GFLOP/s", "of matmul", "peak MB"]
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
    """The report as console text: one table per shape and mode, then the overheads."""
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
            "vs ref: time / the reference's (ref): the faster of the sdpa baselines measured at",
            "the same shape and mode in the same run. Lower is faster.",
            "GFLOP/s: attention 4*B*H*T^2*d, halved where attention is 'flash causal' (the fused",
            "kernel skips masked blocks); 2*B*T*d_in*d_out per projection; fwd+bwd = 3x forward.",
            "peak MB: most memory PyTorch allocated during one call, over what was allocated "
            "before it.",
        ]
    lines += _overhead_lines(report)
    elapsed = report.get("elapsed_s")
    if elapsed:
        lines.append(f"measured in {elapsed['total']:.1f} s")
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
        lines.append("torch.compile(fullgraph=True), the conformance kit's compile check:")
        for item in compiled:
            outcome = item.get("outcome") or ("passed" if item["ok"] else "failed")
            detail = item.get("message") or item.get("error") or ""
            seconds = item.get("seconds")
            timing = "" if seconds is None else f" ({seconds:.1f} s)"
            lines.append(f"  {item['variant']}: {outcome.upper()}{timing}: {detail}")
    return lines


def find_row(rows: list[dict[str, Any]], name: str, kind: str = "variant") -> dict[str, Any] | None:
    """The measured row of ``name`` (a ``"variant"`` or a ``"baseline"``) among ``rows``."""
    for row in rows:
        if row["name"] == name and row["kind"] == kind and row["status"] == "ok":
            return row
    return None


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
    headers = ["mode", "name", "attention", "ms", "vs ref", "GFLOP/s", "peak MB"]
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
