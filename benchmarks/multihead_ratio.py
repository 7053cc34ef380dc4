"""Measure issue 9's speed target: ``multihead`` against the faster of two hand-written modules.

    python benchmarks/multihead_ratio.py                 # the chapter's shape, 11 repeats
    python benchmarks/multihead_ratio.py --repeats 5     # quicker, noisier
    python benchmarks/multihead_ratio.py --quick         # a small shape, to try the script

One ``attnkit bench`` run with three rows, forward and forward+backward, at
batch 8, 1,024 tokens, ``d_model`` 768, 12 heads, float32: ``multihead``, ``sdpa``
(one fused QKV projection into ``scaled_dot_product_attention(is_causal=True)``)
and ``sdpa_separate`` (three projections into the same call). The three are
timed in turns, round after round, so a slow spell of the machine lands on all
of them; each row's time is the median of its runs, and the ratio is to the
faster of the two baselines. The targets (`targets.ISSUE_9`) are checked at the end.
Only the built-in variants load (``ATTNKIT_PLUGINS`` is set empty).
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
from targets import TARGET_SHAPE, format_checks, targets

QUICK_SHAPE = "2x256x256x4"


def measure(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed runs of each row")
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
        "--repeats",
        str(args.repeats),
        "--no-overhead",
        "--no-progress",
    ]
    if args.threads:
        options += ["--threads", str(args.threads)]
    report = bench_report(options, args.json)
    checks = [check for check in targets(report) if check["issue"] == 9]
    print()
    print(format_checks(checks) or f"issue 9's targets are set at {TARGET_SHAPE} only")
    return 0


if __name__ == "__main__":
    raise SystemExit(measure())
