"""The costs around the attention itself: `attnkit.create`, loading plugins, ``torch.compile``.

- `create_overhead`: what ``attnkit.create(name, ...)`` adds over calling the
  class directly, at small sizes so that building the weights does not drown
  the difference; the two are timed in turns and their medians subtracted.
- `plugin_load_time`: importing attnkit and loading every installed plugin, in
  fresh interpreters that have already imported torch.
- `compile_check`: every variant through ``torch.compile(fullgraph=True)``,
  compared with eager in evaluation and in training (outputs and gradients).
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

import torch

import attnkit
from attnkit._arguments import accepted_arguments

__all__ = ["SMALL_SIZES", "compile_check", "create_overhead", "plugin_load_time"]

SMALL_SIZES: dict[str, Any] = {
    "d_in": 16,
    "d_out": 16,
    "context_length": 8,
    "num_heads": 2,
    "dropout": 0.0,
}
"""Sizes the overhead and compile checks build variants with, filtered by each signature."""

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


def _small_arguments(name: str) -> dict[str, Any] | None:
    accepted = accepted_arguments(attnkit.get_variant(name))
    arguments = {key: value for key, value in SMALL_SIZES.items() if key in accepted}
    required = [a for a, p in accepted.items() if p.default is p.empty and a not in arguments]
    return None if required else arguments


def create_overhead(names: list[str], repeats: int = 200) -> list[dict[str, Any]]:
    """Median microseconds of ``attnkit.create(name, ...)`` and of ``cls(...)``, per variant.

    Returns:
        One ``{"variant", "create_us", "direct_us", "overhead_us", "arguments"}`` per
        variant that can be built from `SMALL_SIZES`.
    """
    results = []
    for name in names:
        arguments = _small_arguments(name)
        if arguments is None:
            continue
        cls = attnkit.get_variant(name)
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


def compile_check(
    names: list[str], backend: str = "inductor", seed: int = 0
) -> list[dict[str, Any]]:
    """Compile each variant with ``torch.compile(fullgraph=True)`` and compare it with eager.

    Each variant is built from `SMALL_SIZES` and run on ``(2, 8, 16)`` inputs in
    evaluation mode (outputs compared) and in training mode with dropout 0
    (outputs and the input's gradient compared), to float32 tolerance.

    Returns:
        One ``{"variant", "ok", "seconds", "max_abs_diff", "error"}`` per variant.
    """
    results = []
    for name in names:
        arguments = _small_arguments(name)
        if arguments is None:
            results.append({"variant": name, "ok": False, "error": "needs sizes not given"})
            continue
        torch.manual_seed(seed)
        module = attnkit.create(name, **arguments)
        x = torch.randn(2, SMALL_SIZES["context_length"], SMALL_SIZES["d_in"])
        start = time.perf_counter()
        try:
            torch._dynamo.reset()
            compiled = torch.compile(module, fullgraph=True, backend=backend)
            with torch.no_grad():
                module.eval()
                eager_eval, compiled_eval = module(x), compiled(x)
            module.train()
            differences = [(compiled_eval - eager_eval).abs().max().item()]
            gradients = []
            for run in (module, compiled):
                leaf = x.clone().requires_grad_(True)
                output = run(leaf)
                output.backward(torch.ones_like(output))
                gradients.append((output.detach(), leaf.grad))
            (eager_out, eager_grad), (compiled_out, compiled_grad) = gradients
            differences.append((compiled_out - eager_out).abs().max().item())
            differences.append((compiled_grad - eager_grad).abs().max().item())
            ok = (
                torch.allclose(compiled_eval, eager_eval, atol=1e-5, rtol=1e-5)
                and torch.allclose(compiled_out, eager_out, atol=1e-5, rtol=1e-5)
                and torch.allclose(compiled_grad, eager_grad, atol=1e-5, rtol=1e-5)
            )
            error = None if ok else "compiled output differs from eager"
            max_diff: float | None = max(differences)
        except Exception as exc:  # report every variant, whichever fails
            ok, error, max_diff = False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}", None
        results.append(
            {
                "variant": name,
                "ok": ok,
                "backend": backend,
                "seconds": time.perf_counter() - start,
                "max_abs_diff": max_diff,
                "error": error,
            }
        )
    return results
