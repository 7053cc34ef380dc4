"""Run ``attnkit bench`` from a script and get its report: what the scripts here share.

    from harness import bench_report
    report = bench_report(["--shape", "2x256x256x4", "--variants", "multihead"])

The table goes to standard error as ``attnkit bench`` prints it; the report comes
back as a dictionary (and stays in ``json_path`` when one is given).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from attnkit.bench import main

__all__ = ["bench_report"]


def bench_report(options: list[str], json_path: str | None = None) -> dict[str, Any]:
    """``attnkit bench`` with ``options`` (and ``--json``); its report.

    Raises:
        SystemExit: The command failed, with its exit status; it has said why.
    """
    if json_path:
        status = main([*options, "--json", json_path])
        if status:
            raise SystemExit(status)
        return json.loads(Path(json_path).read_text(encoding="utf-8"))
    output = io.StringIO()  # the report as JSON on standard output, caught
    with contextlib.redirect_stdout(output):
        status = main([*options, "--json", "-"])
    if status:
        raise SystemExit(status)
    return json.loads(output.getvalue())
