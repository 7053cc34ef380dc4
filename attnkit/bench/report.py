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
    "kernels_table",
    "load",
    "markdown_table",
    "padding_table",
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
    if row["kind"] == "padded":
        padding = row["padding"]
        return f"{row['name']}, {padding['fraction']:.0%} padded ({padding['side']})"
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


def _table(rows: list[list[str]]) -> list[str]:
    return _grid(_HEADERS, rows, _RIGHT)


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
            elif row.get("note") and row["kind"] != "padded":
                lines.append(f"  note: {row['name']}: {row['note']}")
        lines += _padding_lines(report, shape, mode, rows)
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
    lines += _kernel_lines(report)
    lines += _overhead_lines(report)
    elapsed = report.get("elapsed_s")
    if elapsed:
        lines.append(f"measured in {elapsed['total']:.1f} s")
    return "\n".join(lines)


def mask_cost(report: dict[str, Any], shape: dict[str, int], mode: str) -> dict[str, Any] | None:
    """The cost of the padding mask at ``shape`` and ``mode`` (``--padding``), if measured."""
    for entry in (report.get("padding") or {}).get("masks", []):
        if entry["shape"] == shape and entry["mode"] == mode:
            return entry
    return None


def _padding_lines(
    report: dict[str, Any], shape: dict[str, int], mode: str, rows: list[dict[str, Any]]
) -> list[str]:
    lines = []
    for row in rows:
        if row["kind"] == "padded" and row["status"] == "ok" and row.get("vs_unpadded"):
            lines.append(
                f"  padded: {row['name']}: {row['vs_unpadded']:.2f}x its unpadded time "
                f"({row['padding']['tokens']:,} of {shape['tokens']:,} tokens of every row "
                f"padding, {row['padding']['side']}), attention {row.get('attention') or '-'}"
            )
    cost = mask_cost(report, shape, mode)
    if cost is not None:
        shares = ", ".join(
            f"{row['mask_share']:.2%} of {row['name']}'s padded call"
            for row in rows
            if row.get("mask_share") is not None
        )
        lines.append(
            f"  mask {cost['mask']}: built and to_dense {_dims(cost['dense_shape'])} "
            f"({cost['dense_mb']:,.1f} MB): {cost['first_ms']:.2f} ms"
            + (f" ({shares})" if shares else "")
            + f"; to_dense cached: {cost['cached_us']:.1f} us"
        )
    return lines


def _dims(sizes: list[int]) -> str:
    return "x".join(str(size) for size in sizes)


def _kernel_lines(report: dict[str, Any]) -> list[str]:
    section = report.get("kernels")
    if not section:
        return []
    lines = []
    by_shape: dict[str, list[dict[str, Any]]] = {}
    for row in section["results"]:
        by_shape.setdefault(shape_name(row["shape"]), []).append(row)
    headers = ["mask", "kernel", "attention", "ms", "vs sdpa", "first call"]
    for rows in by_shape.values():
        first = rows[0]
        lines += [
            "",
            f"kernels called directly, forward (no_grad): (batch, heads, tokens, head_dim) = "
            f"({first['batch']}, {first['heads']}, {first['tokens']:,}, {first['head_dim']}), "
            f"{report['settings']['dtype']}, median of {report['settings']['repeats']} runs",
        ]
        cells = [_kernel_cells(row) for row in rows if row["status"] == "ok"]
        lines += _grid(headers, cells, right={3, 4, 5})
        lines += [
            f"  {row['status']}: {row['kernel']} with {row['mask']}: {row['reason']}"
            for row in rows
            if row["status"] != "ok"
        ]
    lines += [
        "vs sdpa: time / the sdpa kernel's with the same mask, in the same run. first call: "
        "left out of the timings;",
        "for a compiled kernel (flex) it compiles for the mask and shape and builds the "
        "block mask. Masks: " + _mask_densities(section["results"]) + ".",
    ]
    return lines


def _kernel_cells(row: dict[str, Any]) -> list[str]:
    ratio = row.get("ratio")
    return [
        row["mask"],
        row["kernel"],
        row.get("attention") or "-",
        _number(row.get("ms")),
        "-" if ratio is None else f"{ratio:.2f}x",
        f"{row['first_call_s']:.1f} s",
    ]


def _mask_densities(rows: list[dict[str, Any]]) -> str:
    seen: dict[str, str] = {}
    for row in rows:
        seen.setdefault(
            row["mask"],
            f"{row['mask']} = {row['mask_repr']}, {row['density']:.0%} of pairs allowed",
        )
    return "; ".join(seen.values())


def _grid(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return (
            "  "
            + "  ".join(
                cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()
        )

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


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


def padding_table(report: dict[str, Any]) -> str:
    """The padded rows (``--padding``) beside the unpadded ones, as a Markdown table.

    One line per padded variant, shape and mode: the unpadded and padded times,
    their ratio, the attention kernel each ran, and the share of the padded call
    that building and materialising the mask takes (measured in the same turns).
    """
    lines = [
        "| shape | mode | variant | padding | unpadded ms | padded ms | padded / unpadded "
        "| attention (unpadded, padded) | mask: built + to_dense | to_dense cached |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for shape, mode, rows in groups(report):
        cost = mask_cost(report, shape, mode)
        for row in rows:
            if row["kind"] != "padded" or row["status"] != "ok":
                continue
            unpadded = find_row(rows, row["name"])
            padding = row["padding"]
            mask = "-" if cost is None else (f"{cost['first_ms']:.2f} ms ({row['mask_share']:.2%})")
            cached = "-" if cost is None else f"{cost['cached_us']:.1f} µs"
            ratio = row.get("vs_unpadded")
            cells = [
                shape_name(shape),
                _MODE_LABELS.get(mode, mode),
                f"**{row['name']}**",
                f"{padding['tokens']:,} of {shape['tokens']:,} ({padding['side']})",
                _number(None if unpadded is None else unpadded["ms"]),
                _number(row["ms"]),
                "-" if ratio is None else f"{ratio:.2f}x",
                f"{(unpadded or {}).get('attention') or '-'}, {row.get('attention') or '-'}",
                mask,
                cached,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kernels_table(report: dict[str, Any]) -> str:
    """The kernels section (``--kernels``) as a Markdown table: one row per mask and kernel."""
    section = report.get("kernels") or {"results": []}
    lines = [
        "| shape (batch, heads, tokens, head_dim) | mask | allowed | kernel | attention | ms "
        "| vs sdpa | first call |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for row in section["results"]:
        if row["status"] != "ok":
            continue
        cells = _kernel_cells(row)
        size = f"{row['batch']}, {row['heads']}, {row['tokens']:,}, {row['head_dim']}"
        mask = f"`{row['mask_repr']}`"
        lines.append("| " + " | ".join([size, mask, f"{row['density']:.0%}", *cells[1:]]) + " |")
    return "\n".join(lines)
