"""Issue 11's benchmark scripts run on tiny settings and write the results the docs read.

``benchmarks/decode.py`` and ``benchmarks/options_overhead.py`` are the repository's
bookkeeping, not part of the package: they are loaded from their files. Only the
structure of their results is checked here, never a timing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

DECODE_ROW_KEYS = {
    "label": str,
    "attention": str,
    "options": dict,
    "cache_bytes_per_token": int,
    "tokens_per_second": float,
    "cache_bytes_at_end": int,
}
OVERHEAD_ROW_KEYS = {
    "label": str,
    "variant": str,
    "options": dict,
    "ms": float,
    "vs_multihead": float,
}

# fresh_registry: a script loads the built-ins alone, a registry that must not outlive the test.
pytestmark = pytest.mark.usefixtures("fresh_registry", "one_thread")


def load(script: str, monkeypatch):
    """The script as a module; the plugin selection it sets for itself is undone afterwards."""
    # The script sets ATTNKIT_PLUGINS itself; setting it here first records the
    # original state, so that the undo removes it again (delenv of an unset variable
    # would record nothing).
    monkeypatch.setenv("ATTNKIT_PLUGINS", "")
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{script}", ROOT / "benchmarks" / script
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_keys(row: dict, keys: dict) -> None:
    for key, kind in keys.items():
        assert isinstance(row[key], kind), f"{key}: {row[key]!r} is not a {kind.__name__}"


def check_decode_report(report: dict, new_tokens: int) -> None:
    assert {"machine", "torch", "threads", "config", "new_tokens", "rows", "window_growth"} <= set(
        report
    )
    assert report["new_tokens"] == new_tokens
    rows = {row["label"]: row for row in report["rows"]}
    window = report["window"]
    latent = next(
        row["options"]["kv_latent_dim"] for row in rows.values() if row["attention"] == "mla"
    )
    assert list(rows) == ["MHA", "GQA-8", "GQA-2", "MQA", f"MLA-{latent}", f"SWA-{window}"]
    for row in rows.values():
        check_keys(row, DECODE_ROW_KEYS)
    assert rows["MHA"]["cache_bytes_per_token"] == 4 * rows["GQA-2"]["cache_bytes_per_token"]
    assert rows[f"SWA-{window}"]["options"] == {"window": window}
    growth = report["window_growth"]
    assert all(isinstance(r["tokens"], int) and isinstance(r["cache_bytes"], int) for r in growth)
    flat = {r["cache_bytes"] for r in growth if r["tokens"] >= 2 * window}
    assert len(flat) == 1
    assert [r["tokens"] for r in growth if r["tokens"] >= 2 * window] == [
        2 * window,
        4 * window,
        8 * window,
    ]
    assert all(check["met"] in (True, False) for check in report["targets"])


def test_decode_runs_tiny_and_writes_its_results(monkeypatch, tmp_path, capsys):
    decode = load("decode.py", monkeypatch)
    path = tmp_path / "decode.json"
    report = decode.measure(["--tiny", "--threads", "1", "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    check_decode_report(report, new_tokens=12)
    rows = {row["label"]: row for row in report["rows"]}
    # The caches held what kv_cache_bytes said (the script checks it), for prompt + new tokens.
    assert rows["MHA"]["cache_tokens_at_end"] == 3 + 12
    assert rows["SWA-4"]["cache_tokens_held_at_end"] == 4
    assert "GQA-2 tokens/s over MHA's" in capsys.readouterr().out


def test_options_overhead_runs_tiny_and_writes_its_results(monkeypatch, tmp_path, capsys):
    overhead = load("options_overhead.py", monkeypatch)
    path = tmp_path / "options_overhead.json"
    report = overhead.measure(["--tiny", "--threads", "1", "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    labels = [row["label"] for row in report["rows"]]
    assert labels == ["multihead", "+ rope_base", "+ qk_norm", "+ softcap", "gqa, kv = heads"]
    for row in report["rows"]:
        check_keys(row, OVERHEAD_ROW_KEYS)
    assert report["rows"][0]["vs_multihead"] == 1.0
    assert report["gqa_max_abs_difference"] <= 1e-5
    # The targets are set at the chapter's shape only: at a tiny one they are not judged.
    assert [check["met"] for check in report["targets"]] == [None] * 4
    assert "n/a" in capsys.readouterr().out


def test_the_committed_decode_results_carry_the_keys_the_docs_read():
    report = json.loads((ROOT / "benchmarks/results/decode.json").read_text())
    check_decode_report(report, new_tokens=512)
    assert report["config"]["n_layers"] == 6 and report["config"]["emb_dim"] == 512


def test_the_committed_overhead_results_are_at_the_chapters_shape():
    report = json.loads((ROOT / "benchmarks/results/options_overhead.json").read_text())
    assert report["shape"] == {"batch": 8, "tokens": 1024, "d_model": 768, "heads": 12}
    for row in report["rows"]:
        check_keys(row, OVERHEAD_ROW_KEYS)
    assert all(check["met"] in (True, False) for check in report["targets"])
