"""The targets past work items set for the benchmark, checked against its reports.

Bookkeeping of this repository, not of the installed library: ``attnkit bench``
measures; this module says which of its numbers issues 5, 9 and 10 asked for, and
whether a report meets them. `benchmarks/record.py`, `benchmarks/multihead_ratio.py`,
`benchmarks/padding.py` and the Performance page (docs/performance.md) read it:

    python benchmarks/targets.py benchmarks/results/*.json   # check committed reports

Every target is for ``multihead`` on the machine the report comes from.
"""

from __future__ import annotations

import argparse
from typing import Any

from attnkit.bench.report import find_row, groups, load, shape_name

__all__ = [
    "ISSUE_5",
    "ISSUE_9",
    "ISSUE_10",
    "LONG_SHAPES",
    "TARGET_SHAPE",
    "format_checks",
    "targets",
]

TARGET_SHAPE = "8x1024x768x12"
"""The shape the speed targets are set at: the reference chapter's (float32)."""

LONG_SHAPES = ("1x8192x768x12", "1x16384x768x12")
"""The shapes of issue 5's memory targets."""

ISSUE_5 = {
    "forward_vs_sdpa": 1.10,
    "train_vs_sdpa": 1.15,
    "train_speedup_vs_mha": 1.25,
    "long_forward_peak_mb": 512,
    "create_overhead_ms": 1.0,
    "plugin_load_ms": 50.0,
}
"""Issue 5: speed against the ``sdpa`` baseline and ``nn.MultiheadAttention``, memory, overheads."""

ISSUE_9 = {
    "forward_vs_fastest_sdpa": 1.04,
    "train_vs_fastest_sdpa": 1.05,
}
"""Issue 9: speed against the faster of the two hand-written SDPA modules (``sdpa``,
``sdpa_separate``) measured in the same run."""

ISSUE_10 = {
    "padding_fraction": 0.25,
    "padded_forward_vs_unpadded": 1.15,
    "mask_share": 0.02,
}
"""Issue 10: with a quarter of every row padding (``attnkit bench --padding 0.25``), the
forward pass still runs the fused SDPA kernel and takes at most 1.15x its unpadded time,
and building and materialising the mask takes under 2% of the padded forward."""

_SDPA_BASELINES = ("sdpa", "sdpa_separate")


def targets(report: dict[str, Any], variant: str = "multihead") -> list[dict[str, Any]]:
    """Check ``report`` against `ISSUE_5` and `ISSUE_9`, as far as it has the numbers.

    The speed targets are read at `TARGET_SHAPE`, the memory targets at
    `LONG_SHAPES`; what the report did not measure is left out.

    Returns:
        One ``{"issue", "target", "shape", "measured", "value", "met"}`` per check.
    """
    checks: list[dict[str, Any]] = []

    def check(issue: int, target: str, shape: str | None, value: float, measured: str, met: bool):
        checks.append(
            {
                "issue": issue,
                "target": target,
                "shape": shape,
                "value": value,
                "measured": measured,
                "met": met,
            }
        )

    def versus(row: dict[str, Any], other: dict[str, Any]) -> str:
        return f"{row['ms']:,.1f} ms vs {other['ms']:,.1f} ms"

    for shape, mode, rows in groups(report):
        name = shape_name(shape)
        row = find_row(rows, variant)
        label = "forward" if mode == "forward" else "forward+backward"
        padded = find_row(rows, variant, "padded")
        if name == TARGET_SHAPE and mode == "forward" and row is not None and padded is not None:
            _padding_checks(check, report, variant, shape, row, padded)
        if name == TARGET_SHAPE and row is not None:
            sdpa = find_row(rows, "sdpa", "baseline")
            if sdpa is not None:
                limit = ISSUE_5["forward_vs_sdpa" if mode == "forward" else "train_vs_sdpa"]
                ratio = row["ms"] / sdpa["ms"]
                check(
                    5,
                    f"{variant} {label} <= {limit:.2f}x the sdpa baseline",
                    name,
                    ratio,
                    f"{ratio:.3f}x ({versus(row, sdpa)})",
                    ratio <= limit,
                )
            found = [r for n in _SDPA_BASELINES if (r := find_row(rows, n, "baseline"))]
            if len(found) == len(_SDPA_BASELINES):
                fastest = min(found, key=lambda r: r["ms"])
                key = "forward_vs_fastest_sdpa" if mode == "forward" else "train_vs_fastest_sdpa"
                limit = ISSUE_9[key]
                ratio = row["ms"] / fastest["ms"]
                check(
                    9,
                    f"{variant} {label} <= {limit:.2f}x the faster of sdpa and sdpa_separate",
                    name,
                    ratio,
                    f"{ratio:.3f}x {fastest['name']} ({versus(row, fastest)})",
                    ratio <= limit,
                )
            for baseline, how in (
                ("mha", "with the is_causal hint"),
                ("mha_mask", "with the causal mask alone"),
            ):
                mha = find_row(rows, baseline, "baseline")
                if mode != "train" or mha is None:
                    continue
                speedup = mha["ms"] / row["ms"]
                limit = ISSUE_5["train_speedup_vs_mha"]
                check(
                    5,
                    f"{variant} forward+backward >= {limit:.2f}x faster than "
                    f"nn.MultiheadAttention ({how})",
                    name,
                    speedup,
                    f"{speedup:.2f}x ({versus(row, mha)})",
                    speedup >= limit,
                )
        if name == LONG_SHAPES[0] and mode == "forward" and row is not None:
            peak = row.get("peak_mb")
            limit = ISSUE_5["long_forward_peak_mb"]
            if peak is not None:
                check(
                    5,
                    f"{variant} forward at 8,192 tokens adds < {limit} MB peak memory",
                    name,
                    peak,
                    f"{peak:,.0f} MB",
                    peak < limit,
                )
        if name == LONG_SHAPES[1] and mode == "forward":
            tried = [r for r in rows if r["name"] == variant and r["kind"] == "variant"]
            if tried:
                check(
                    5,
                    f"{variant} forward at 16,384 tokens runs",
                    name,
                    row["ms"] if row else 0.0,
                    f"runs: {row['ms']:,.0f} ms, peak {row.get('peak_mb') or 0:,.0f} MB"
                    if row
                    else f"{tried[0]['status']}: {tried[0]['reason']}",
                    row is not None,
                )
    created = report.get("create_overhead")
    if created:
        worst = max(item["overhead_us"] for item in created) / 1e3
        limit = ISSUE_5["create_overhead_ms"]
        check(
            5,
            f"attnkit.create() adds < {limit:g} ms over the class",
            None,
            worst,
            f"{worst * 1e3:.1f} us at most",
            worst < limit,
        )
    loading = report.get("plugin_load")
    if loading:
        limit = ISSUE_5["plugin_load_ms"]
        check(
            5,
            f"import attnkit and load all plugins, after torch, < {limit:g} ms",
            None,
            loading["total_ms"],
            f"{loading['total_ms']:.1f} ms",
            loading["total_ms"] < limit,
        )
    compiled = report.get("compile")
    if compiled:
        failed = [item["variant"] for item in compiled if not item["ok"]]
        check(
            5,
            "every variant passes the compile check (fullgraph=True, equal to eager)",
            None,
            len(failed),
            "all passed" if not failed else "not passed: " + ", ".join(failed),
            not failed,
        )
    return checks


def _padding_checks(
    check: Any,
    report: dict[str, Any],
    variant: str,
    shape: dict[str, int],
    row: dict[str, Any],
    padded: dict[str, Any],
) -> None:
    """Issue 10's checks, where the padded row has the issue's quarter of padding."""
    if padded["padding"]["fraction"] != ISSUE_10["padding_fraction"]:
        return
    name = shape_name(shape)
    side = padded["padding"]["side"]
    attention = padded.get("attention") or "none seen"
    check(
        10,
        f"{variant} forward with a quarter of each row padding ({side}) runs a fused SDPA kernel",
        name,
        float(attention.startswith("flash")),
        attention,
        attention.startswith("flash"),
    )
    limit = ISSUE_10["padded_forward_vs_unpadded"]
    ratio = padded["ms"] / row["ms"]
    check(
        10,
        f"{variant} forward with a quarter of each row padding ({side}) <= {limit:.2f}x "
        "its unpadded time",
        name,
        ratio,
        f"{ratio:.3f}x ({padded['ms']:,.1f} ms vs {row['ms']:,.1f} ms)",
        ratio <= limit,
    )
    for cost in (report.get("padding") or {}).get("masks", []):
        if cost["shape"] == shape and cost["mode"] == "forward":
            limit = ISSUE_10["mask_share"]
            share = cost["first_ms"] / padded["ms"]
            check(
                10,
                f"building and materialising the mask takes < {limit:.0%} of {variant}'s "
                "padded forward",
                name,
                share,
                f"{share:.2%} ({cost['first_ms']:.2f} ms; cached {cost['cached_us']:.1f} us)",
                share < limit,
            )


def format_checks(checks: list[dict[str, Any]]) -> str:
    """One line per check: ``[met] issue 9: multihead forward <= 1.04x ...: 1.012x ...``."""
    lines = []
    for item in checks:
        mark = "met" if item["met"] else "NOT MET"
        where = f" ({item['shape']})" if item["shape"] else ""
        lines.append(f"[{mark}] issue {item['issue']}: {item['target']}{where}: {item['measured']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check attnkit bench reports against targets.")
    parser.add_argument("reports", nargs="+", help="files written by attnkit bench --json")
    args = parser.parse_args(argv)
    for path in args.reports:
        print(f"{path}:")
        print(format_checks(targets(load(path))) or "(no target applies)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
