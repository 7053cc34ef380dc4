"""Record the results the Performance page shows: a default, a ``--long`` and a masks run.

    python benchmarks/record.py [--label "2-core cloud VM"] [--only masks]

Each run is ``attnkit bench`` with ``--json``, written to
``benchmarks/results/<cpu>-<cores>cores_torch-<version>_<run>.json``; the
default run also runs the conformance kit's compile check. The masks run times
``multihead`` with a quarter of every row padding beside itself unpadded and the
SDPA baselines (issue 10), and the ``sdpa`` and ``flex`` kernels with three masks,
at the chapter's shape. Only the built-in
variants are measured (``ATTNKIT_PLUGINS`` is set empty, so no third-party plugin
loads). Each recorded report is then checked against the targets of past issues
(`targets.py`). Run it on a quiet machine: every other process competes for the
same cores.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

sys.path.insert(0, str(HERE))  # targets.py, beside this file
# Only the built-ins: this must be set before attnkit loads its plugins.
os.environ["ATTNKIT_PLUGINS"] = ""

import torch  # noqa: E402
from targets import format_checks, targets  # noqa: E402

from attnkit.bench import load, main  # noqa: E402
from attnkit.bench.measure import cpu_model  # noqa: E402

RUNS = {
    "default": ["--compile"],
    "long": ["--long", "--no-overhead"],
    "masks": [
        "--variants",
        "multihead",
        "--baselines",
        "sdpa,sdpa_separate",
        "--padding",
        "0.25",
        "--kernels",
        "--repeats",
        "11",
        "--no-overhead",
    ],
}


def result_name(preset: str) -> str:
    """``amd-epyc-2cores_torch-2.13.0_default``: the machine, torch's version and the run."""
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")
    version = torch.__version__.split("+")[0]
    return f"{cpu}-{os.cpu_count()}cores_torch-{version}_{preset}"


def record(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", help="a name for the machine, stored with the results")
    parser.add_argument("--only", choices=list(RUNS), help="record one of the runs (default: all)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    for preset, options in RUNS.items():
        if args.only and preset != args.only:
            continue
        path = RESULTS / f"{result_name(preset)}.json"
        label = ["--label", args.label] if args.label else []
        print(f"recording {path.relative_to(RESULTS.parent.parent)}", file=sys.stderr)
        status = main([*options, *label, "--json", os.path.relpath(path)])
        if status:
            return status
        print(format_checks(targets(load(path))), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(record())
