"""Measure issue 10's padding targets: ``multihead`` padded against itself unpadded.

    python benchmarks/padding.py                  # the chapter's shape, 11 repeats
    python benchmarks/padding.py --side right     # the padding after the real tokens
    python benchmarks/padding.py --kernels        # and sdpa beside flex for three masks
    python benchmarks/padding.py --quick          # a small shape, to try the script

One ``attnkit bench --padding 0.25`` run at batch 8, 1,024 tokens, ``d_model``
768, 12 heads, float32, forward and forward+backward: ``multihead`` called as
is and with an ``attention_mask`` whose first quarter of every row is padding
(``--side right``: the last quarter), beside the two SDPA baselines, all timed in
turns, round after round; each row's time is the median of its runs. The mask
``causal() & padding(attention_mask)`` is built and materialised in the same
turns. The profiler names the attention kernel each row ran. The targets
(`targets.ISSUE_10`) are checked at the end. Only the built-in variants load
(``ATTNKIT_PLUGINS`` is set empty).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # targets.py, beside this file
# Only the built-ins: this must be set before attnkit loads its plugins.
os.environ["ATTNKIT_PLUGINS"] = ""

from harness import bench_report
from targets import ISSUE_10, TARGET_SHAPE, format_checks, targets

QUICK_SHAPE = "2x256x256x4"


def measure(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed runs of each row")
    parser.add_argument(
        "--side", choices=["left", "right"], default="left", help="where the padding goes"
    )
    parser.add_argument(
        "--kernels", action="store_true", help="also time sdpa and flex with three masks"
    )
    parser.add_argument("--mode", choices=["forward", "train", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help=f"measure at {QUICK_SHAPE}")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", metavar="PATH", help="also keep the attnkit bench report")
    args = parser.parse_args(argv)
    options = [
        "--shape",
        QUICK_SHAPE if args.quick else TARGET_SHAPE,
        "--variants",
        "multihead",
        "--baselines",
        "sdpa,sdpa_separate",
        "--padding",
        str(ISSUE_10["padding_fraction"]),
        "--padding-side",
        args.side,
        "--mode",
        args.mode,
        "--repeats",
        str(args.repeats),
        "--no-overhead",
        "--no-progress",
    ]
    if args.kernels:
        options.append("--kernels")
    if args.threads:
        options += ["--threads", str(args.threads)]
    report = bench_report(options, args.json)
    checks = [check for check in targets(report) if check["issue"] == 10]
    print()
    print(format_checks(checks) or f"issue 10's targets are set at {TARGET_SHAPE} only")
    return 0


if __name__ == "__main__":
    raise SystemExit(measure())
