"""The costs around the attention itself: `attnkit.create`, loading plugins, ``torch.compile``.

- `create_overhead`: what ``attnkit.create(name, ...)`` adds over calling the
  class directly, at small sizes so that building the weights does not drown
  the difference; the two are timed in turns and their medians subtracted.
- `plugin_load_time`: importing attnkit and loading every installed plugin, in
  fresh interpreters that have already imported torch.
- `compile_check`: the conformance kit's ``compile`` check on every variant.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attnkit
from attnkit._arguments import STANDARD_SIZES, filter_arguments, missing_arguments

__all__ = ["compile_check", "create_overhead", "plugin_load_time"]

_LOAD_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch
start = time.perf_counter()
import attnkit
imported = time.perf_counter()
attnkit.list_variants()
loaded = time.perf_counter()
print(json.dumps({{"import_ms": (imported - start) * 1e3, "load_ms": (loaded - imported) * 1e3,
                  "variants": len(attnkit.list_variants())}}))
"""


def create_overhead(names: list[str], repeats: int = 200) -> list[dict[str, Any]]:
    """Median microseconds of ``attnkit.create(name, ...)`` and of ``cls(...)``, per variant.

    Each variant is built at `attnkit._arguments.STANDARD_SIZES`, the sizes it accepts.

    Returns:
        One ``{"variant", "create_us", "direct_us", "overhead_us", "arguments"}`` per
        variant that those sizes build (one that requires more is left out).
    """
    results = []
    for name in names:
        cls = attnkit.get_variant(name)
        arguments = filter_arguments(cls, STANDARD_SIZES)
        if missing_arguments(cls, arguments):
            continue
        created, direct = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            attnkit.create(name, **arguments)
            middle = time.perf_counter()
            cls(**arguments)
            end = time.perf_counter()
            created.append(middle - start)
            direct.append(end - middle)
        create_us = statistics.median(created) * 1e6
        direct_us = statistics.median(direct) * 1e6
        results.append(
            {
                "variant": name,
                "create_us": create_us,
                "direct_us": direct_us,
                "overhead_us": create_us - direct_us,
                "arguments": arguments,
            }
        )
    return results


def plugin_load_time(runs: int = 5) -> dict[str, Any]:
    """Milliseconds to import attnkit and load all plugins, once torch is imported.

    Each run is a fresh interpreter (``sys.executable``) that imports torch first,
    then times ``import attnkit`` and the first `attnkit.list_variants`, which loads
    every installed plugin. Medians over ``runs``.
    """
    root = str(Path(attnkit.__file__).resolve().parent.parent)
    script = _LOAD_SCRIPT.format(root=root)
    samples = []
    for _ in range(runs):
        completed = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ.copy(),
        )
        if completed.returncode != 0:
            raise RuntimeError(
                "timing plugin loading failed in a fresh interpreter:\n" + completed.stderr
            )
        samples.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    import_ms = statistics.median(s["import_ms"] for s in samples)
    load_ms = statistics.median(s["load_ms"] for s in samples)
    total_ms = statistics.median(s["import_ms"] + s["load_ms"] for s in samples)
    return {
        "runs": runs,
        "import_ms": import_ms,
        "load_ms": load_ms,
        "total_ms": total_ms,
        "variants": samples[-1]["variants"],
    }


def compile_check(names: list[str], backend: str = "inductor") -> list[dict[str, Any]]:
    """Run the conformance kit's ``compile`` check on each variant: the one compile check.

    `attnkit.testing.check_variant` builds the variant at its standard sizes,
    compiles it with ``torch.compile(fullgraph=True)`` and compares the output
    with eager, to its per-dtype tolerance; where ``backend`` cannot run here (no
    C++ compiler for ``inductor``), the check is skipped and says why.

    Returns:
        One ``{"variant", "backend", "outcome", "ok", "message", "seconds"}`` per
        variant: ``outcome`` is ``"passed"``, ``"failed"`` or ``"skipped"``, ``ok``
        whether it passed, ``message`` the kit's.
    """
    from attnkit.testing import check_variant  # the kit, loaded only when asked for

    results = []
    for name in names:
        start = time.perf_counter()
        try:
            result = check_variant(name, checks=["compile"], compile_backend=backend)["compile"]
            outcome, message = str(result.outcome), result.message
        except Exception as error:  # it cannot be built at the kit's sizes; report, go on
            outcome = "failed"
            message = f"compile: {type(error).__name__}: {str(error).splitlines()[0]}"
        results.append(
            {
                "variant": name,
                "backend": backend,
                "outcome": outcome,
                "ok": outcome == "passed",
                "message": message,
                "seconds": time.perf_counter() - start,
            }
        )
    return results
