"""Issue 12's benchmark scripts run on tiny settings and write the results the docs read.

``benchmarks/gpt2_speed.py`` (GPTModel against transformers' GPT2LMHeadModel) and
``benchmarks/transformers_overhead.py`` (attnkit_sdpa against sdpa inside a
transformers model) are loaded from their files. Only the structure of their
results and the checks they make before timing are tested, never a timing.
"""

from __future__ import annotations

import json

import pytest
from test_benchmarks_modern import ROOT, load

pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("fresh_registry", "one_thread")

GPT2_MEASUREMENTS = ("decode", "body", "train", "train_logits")


def check_gpt2_report(report: dict) -> None:
    assert set(report["results"]) == set(GPT2_MEASUREMENTS)
    for name, result in report["results"].items():
        for clock in ("wall", "cpu"):
            summary = result[clock]
            assert set(summary["rows"]) == {"attnkit", "transformers"}, name
            low, high = summary["speedup_range"]
            assert low <= summary["speedup"] <= high
    assert report["results"]["decode"]["same_tokens"] is True
    check = report["check"]
    assert check["tied"] is True and check["parameters"] == check["parameters_transformers"]
    assert check["train_loss_difference"] <= 1e-4
    assert check["train_logits_loss_difference"] <= 1e-4
    targets = {target["target"].split(",")[0] for target in report["targets"]}
    assert targets == {"train", "decode"}
    assert all(target["met"] in (True, False) for target in report["targets"])


def test_gpt2_speed_runs_tiny_and_writes_its_results(monkeypatch, tmp_path, capsys):
    speed = load("gpt2_speed.py", monkeypatch)
    path = tmp_path / "gpt2_speed.json"
    report = speed.measure(["--tiny", "--threads", "1", "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    check_gpt2_report(report)
    assert report["config"]["vocab_size"] == 1_000
    assert "train_logits" in capsys.readouterr().out


def test_the_committed_gpt2_results_are_at_the_issues_shape():
    report = json.loads((ROOT / "benchmarks/results/gpt2_speed.json").read_text())
    check_gpt2_report(report)
    config = report["config"]
    assert (config["n_layer"], config["n_embd"], config["n_head"]) == (6, 384, 6)
    assert (config["batch"], config["tokens"], config["new_tokens"]) == (8, 256, 200)
    assert config["vocab_size"] == 50_257


def check_overhead_report(report: dict) -> None:
    rows = report["rows"]
    assert {(row["model"], row["padded"]) for row in rows} == {
        (model, padded) for model in ("gpt2", "llama") for padded in (False, True)
    }
    for row in rows:
        assert row["ratio"] == pytest.approx(row["attnkit_sdpa_ms"] / row["sdpa_ms"], rel=0.02)
        assert row["met"] == (row["ratio"] <= 1.03)
    assert report["command"].startswith("python benchmarks/transformers_overhead.py")


def test_transformers_overhead_runs_quick_and_writes_its_results(monkeypatch, tmp_path):
    overhead = load("transformers_overhead.py", monkeypatch)
    path = tmp_path / "overhead.json"
    assert overhead.main(["--quick", "--rounds", "1", "--threads", "1", "--json", str(path)]) == 0
    check_overhead_report(json.loads(path.read_text()))


def test_the_committed_overhead_results_are_at_the_issues_shape():
    report = json.loads((ROOT / "benchmarks/results/transformers_overhead.json").read_text())
    check_overhead_report(report)
    assert (report["batch"], report["tokens"]) == (8, 256)
