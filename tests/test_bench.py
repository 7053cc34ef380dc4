"""The benchmark harness, ``attnkit bench`` / ``python -m attnkit.bench``: behaviour, not speed.

Timings are never asserted: the machine running the tests may be busy. What is
checked is that every case is built and measured as documented, that the ratios
are to the faster SDPA baseline, that the fused kernel is recognised, and that
every mistake a user can make gets a one-line message naming it, before anything
is measured where it can be.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit._arguments import STANDARD_SIZES
from attnkit.bench import command as command_module
from attnkit.bench import load, main, markdown_table
from attnkit.bench import runner as runner_module
from attnkit.bench.baselines import (
    FusedSDPA,
    SeparateSDPA,
    TextbookAttention,
    TorchMultiheadAttention,
)
from attnkit.bench.cases import Case, Shape, build_case, projection_flops
from attnkit.bench.kernels import MaskSpec, measure_kernels
from attnkit.bench.measure import calls_per_run, profile_call
from attnkit.bench.overhead import compile_check, create_overhead, plugin_load_time
from attnkit.bench.padding import attention_mask as padding_attention_mask
from attnkit.bench.padding import padded_tokens
from attnkit.bench.report import format_report, kernels_table, padding_table
from attnkit.bench.runner import Config, benchmark, planned_steps

ROOT = Path(__file__).resolve().parent.parent

BATCH, TOKENS, D_MODEL, HEADS = 2, 16, 8, 2
TINY = [
    "--shape",
    f"{BATCH}x{TOKENS}x{D_MODEL}x{HEADS}",
    "--repeats",
    "2",
    "--warmup",
    "0",
    "--min-run-time",
    "0",
    "--matmul-size",
    "64",
    "--no-overhead",
    "--no-progress",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("bench") / "report.json"
    assert main([*TINY, "--json", str(path)]) == 0
    return load(path)


def rows_of(report: dict, mode: str) -> dict[str, dict]:
    return {row["name"]: row for row in report["results"] if row["mode"] == mode}


def test_a_run_has_every_variant_and_baseline_in_both_modes(report):
    baselines = {"sdpa", "sdpa_separate", "mha", "mha_mask", "textbook"}
    for mode in ("forward", "train"):
        assert set(rows_of(report, mode)) == {*attnkit.list_variants(), *baselines}
    assert report["schema"] == "attnkit-bench/2"


def test_the_report_names_the_machine_and_software(report):
    machine = report["machine"]
    assert machine["torch"] == torch.__version__
    assert machine["attnkit"] == attnkit.__version__
    assert machine["threads"] == torch.get_num_threads()
    assert machine["cores"] >= 1 and machine["cpu"]
    assert machine["date"].endswith("+00:00")
    assert report["matmul"]["gflops"] > 0 and report["matmul"]["dtype"] == "float32"
    assert "attnkit bench --shape 2x16x8x2" in report["command"]


def test_ratios_are_to_the_faster_sdpa_baseline(report):
    for mode in ("forward", "train"):
        rows = rows_of(report, mode)
        fused, separate = rows["sdpa"], rows["sdpa_separate"]
        faster, slower = sorted([fused, separate], key=lambda row: row["ms"])
        assert [row["name"] for row in rows.values() if row["reference"]] == [faster["name"]]
        assert faster["ratio"] == 1.0 and slower["ratio"] >= 1.0


def test_measured_rows_carry_time_rate_and_memory(report):
    for mode in ("forward", "train"):
        for row in rows_of(report, mode).values():
            if row["status"] != "ok":
                continue
            assert row["ms"] > 0 and len(row["runs_ms"]) == 2
            assert row["gflops"] > 0 and row["peak_mb"] > 0


def test_a_variant_without_widths_is_skipped_with_the_reason(report):
    row = rows_of(report, "forward")["simple"]
    assert row["status"] == "skipped"
    assert "accepts neither d_in nor d_out" in row["reason"]
    assert "skipped: simple: accepts neither d_in nor d_out" in format_report(report)


def test_variants_are_built_from_the_sizes_they_accept(report):
    rows = rows_of(report, "forward")
    assert rows["multihead"]["arguments"] == {
        "d_in": D_MODEL,
        "d_out": D_MODEL,
        "context_length": TOKENS,
        "num_heads": HEADS,
        "dropout": 0.0,
    }
    assert rows["self_attention"]["arguments"] == {"d_in": D_MODEL, "d_out": D_MODEL}
    assert (rows["causal"]["heads"], rows["causal"]["head_dim"]) == (1, D_MODEL)


def test_a_per_head_d_out_is_sized_so_the_output_matches(report):
    row = rows_of(report, "forward")["multihead_wrapper"]
    assert row["arguments"]["d_out"] == D_MODEL // HEADS
    assert row["arguments"]["num_heads"] == HEADS
    assert (row["heads"], row["head_dim"]) == (HEADS, D_MODEL // HEADS)
    assert "d_out is per head" in row["note"]


def test_the_kernel_each_row_ran_is_recorded(report):
    forward = rows_of(report, "forward")
    for name in ("sdpa", "sdpa_separate"):
        assert forward[name]["attention"] == "flash causal"
        assert forward[name]["causal_halved"] is True
    assert forward["textbook"]["attention"] == "softmax"
    assert forward["textbook"]["causal_halved"] is False
    assert forward["mha"]["attention"] == "native MHA"  # PyTorch's inference fast path
    assert rows_of(report, "train")["mha"]["attention"] == "flash causal"
    # Without the is_causal hint the mask is applied as any mask: no blocks skipped.
    assert rows_of(report, "train")["mha_mask"]["causal_halved"] is False


def test_the_console_table_marks_the_reference_and_explains_the_columns(report):
    text = format_report(report)
    assert "sdpa_separate (baseline)" in text and "1.00x (ref)" in text
    assert "vs ref: time / the reference's (ref): the faster of the sdpa baselines" in text
    assert "4*B*H*T^2*d" in text


def test_markdown_table_lists_the_measured_rows(report):
    table = markdown_table(report)
    assert table.splitlines()[0].startswith("| mode | name | attention |")  # one shape
    assert "| forward | **multihead** | flash causal |" in table
    assert "simple" not in table  # skipped rows stay out


def test_projection_flops_count_every_projection_once():
    b, t, d = 2, 5, 12
    projection = 2 * b * t * d * d
    assert projection_flops(FusedSDPA(d, 3), b, t) == 4 * projection  # qkv (3) + out (1)
    assert projection_flops(SeparateSDPA(d, 3), b, t) == 4 * projection
    assert projection_flops(TextbookAttention(d, 3, t), b, t) == 4 * projection
    assert projection_flops(TorchMultiheadAttention(d, 3, t), b, t) == 4 * projection


def test_the_sdpa_baselines_compute_what_multihead_computes():
    # Built under one seed, sdpa_separate has multihead's weights; sdpa gets them fused.
    torch.manual_seed(0)
    variant = attnkit.create("multihead", d_in=12, d_out=12, context_length=6, num_heads=3)
    torch.manual_seed(0)
    separate = SeparateSDPA(12, 3)
    fused = FusedSDPA(12, 3)
    with torch.no_grad():
        fused.qkv.weight.copy_(
            torch.cat([separate.W_query.weight, separate.W_key.weight, separate.W_value.weight])
        )
        fused.out_proj.load_state_dict(separate.out_proj.state_dict())
        x = torch.randn(2, 6, 12)
        expected = variant.eval()(x)
        for module in (separate, fused):
            torch.testing.assert_close(module.eval()(x), expected, atol=1e-5, rtol=1e-5)


def test_profiling_tells_the_fused_kernel_from_the_explicit_form():
    shape = Shape(1, 32, 16, 2)
    x = torch.randn(1, 32, 16)
    uses = {}
    for name in ("sdpa", "textbook"):
        module = build_case(name, "baseline", shape).module.eval()
        with torch.no_grad():
            uses[name] = profile_call(lambda: module(x))  # noqa: B023 (called at once)
    assert uses["sdpa"].kernels == {"flash": 1} and uses["sdpa"].causal_halved
    assert uses["sdpa"].label == "flash causal"
    assert uses["textbook"].kernels == {"softmax": 1} and not uses["textbook"].causal_halved


def test_profiling_measures_peak_memory_in_bytes():
    x = torch.randn(256, 256)

    def step():
        y = x @ x  # 256 KiB
        z = y + 1  # another 256 KiB while y lives
        del y, z

    use = profile_call(step)
    # Both matrices, plus the few bytes of the scalar 1 made a tensor.
    assert 2 * 256 * 256 * 4 <= use.peak_bytes <= 2 * 256 * 256 * 4 + 64
    assert use.kernels == {}


def test_calls_per_run_survives_a_call_too_short_to_time():
    assert calls_per_run(0.0, 0.0) == 1
    assert calls_per_run(0.0, 0.05) >= 1


def test_variants_and_baselines_can_be_chosen(tmp_path):
    path = tmp_path / "report.json"
    arguments = [*TINY, "--variants", "multi*", "--baselines", "sdpa", "--mode", "forward"]
    assert main([*arguments, "--json", str(path)]) == 0
    rows = load(path)["results"]
    assert [(row["name"], row["mode"]) for row in rows] == [
        ("sdpa", "forward"),
        ("multihead", "forward"),
        ("multihead_wrapper", "forward"),
    ]


def test_json_can_go_to_standard_output(capsys):
    assert main([*TINY, "--variants", "causal", "--baselines", "none", "--json", "-"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert {row["name"] for row in report["results"]} == {"causal"}
    assert all(row["ratio"] is None for row in report["results"])  # no reference to divide by
    assert "causal" in captured.err  # the table


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--variants", "mulithead"],
            "--variants: no registered variant matches 'mulithead' (did you mean 'multihead'?); "
            "available: causal,",
        ),
        (
            ["--baselines", "sdpa,sdpa_seperate"],
            "--baselines: unknown baseline 'sdpa_seperate' (did you mean 'sdpa_separate'?); "
            "choose from sdpa, sdpa_separate, mha, mha_mask, textbook or 'none'",
        ),
        (
            ["--variants", "none", "--baselines", "none"],
            "nothing to measure: --variants and --baselines select nothing",
        ),
        (["--min-run-time", "-1"], "--min-run-time must be >= 0 seconds, got -1.0"),
    ],
)
def test_bad_selections_are_named(arguments, message, capsys):
    assert main([*TINY, *arguments]) == 2
    assert f"attnkit bench: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--shape", "8x1024x768"],
            "argument --shape: expected a shape BATCHxTOKENSxD_MODELxHEADS such as "
            "8x1024x768x12, got '8x1024x768'",
        ),
        (
            ["--shape", "8x1024x768x5"],
            "argument --shape: shape 8x1024x768x5: d_model (768) must be divisible by heads (5)",
        ),
        (["--shape", "0x16x8x2"], "argument --shape: shape batch must be a positive integer"),
        (["--quick", "--long"], "argument --long: not allowed with argument --quick"),
        (["--repeats", "0"], "argument --repeats: expected a positive integer, got '0'"),
        (["--mode", "backward"], "argument --mode: invalid choice: 'backward'"),
    ],
)
def test_bad_options_are_named(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_progress_bar_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    arguments = [a for a in TINY if a != "--no-progress"]
    assert main(arguments) == 1
    error = capsys.readouterr().err
    assert "the progress bar needs tqdm" in error
    assert "pip install 'attnkit[bench]'" in error and "--no-progress" in error


def test_the_progress_bar_is_drawn_on_standard_error(capsys):
    pytest.importorskip("tqdm")
    arguments = [a for a in TINY if a != "--no-progress"]
    assert main([*arguments, "--variants", "causal", "--baselines", "sdpa"]) == 0
    captured = capsys.readouterr()
    assert "step" in captured.err and "step" not in captured.out


def test_a_case_too_big_for_memory_is_skipped_with_its_estimate(monkeypatch):
    # Pretend 48 MB is free. The textbook form's three 2,048 x 2,048 matrices per head
    # (2 heads) take 96 MB: it is measured at a quarter of the tokens and skipped.
    monkeypatch.setattr(runner_module, "available_memory", lambda: 48 * 2**20)
    config = Config(
        shapes=[Shape(1, 2048, 16, 2)],
        modes=["forward"],
        variants=[],
        baselines=["sdpa", "textbook"],
        repeats=1,
        warmup=0,
        min_run_time=0,
        matmul_size=64,
        overhead=False,
    )
    rows = {row["name"]: row for row in benchmark(config)["results"]}
    textbook = rows["textbook"]
    assert textbook["status"] == "skipped"
    assert "MB measured at 512 tokens, times 16" in textbook["reason"]
    assert "GB is available" in textbook["reason"]
    assert textbook["memory_estimate_mb"] >= 96
    # The fused kernel holds no tokens x tokens matrix: its estimate fits.
    assert rows["sdpa"]["status"] == "ok"
    assert rows["sdpa"]["memory_estimate_mb"] < 0.9 * 48


def load_targets():
    """benchmarks/targets.py: the repository's bookkeeping, not part of the installed package."""
    spec = importlib.util.spec_from_file_location(
        "benchmark_targets", ROOT / "benchmarks/targets.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wheel_carries_no_targets():
    import attnkit.bench.report

    assert not hasattr(attnkit.bench, "targets")
    assert not hasattr(attnkit.bench.report, "TARGETS")


def test_the_repositorys_targets_are_read_at_the_issues_shapes():
    def row(name, kind, ms, mode="train"):
        shape = {"batch": 8, "tokens": 1024, "d_model": 768, "heads": 12}
        return {"shape": shape, "mode": mode, "name": name, "kind": kind, "status": "ok", "ms": ms}

    report = {
        "results": [
            row("sdpa", "baseline", 100.0),
            row("sdpa_separate", "baseline", 104.0),
            row("multihead", "variant", 106.0),
            row("mha", "baseline", 120.0),
            row("mha_mask", "baseline", 150.0),
            row("multihead", "variant", 50.0, mode="forward"),  # no baseline: no check
        ],
        "create_overhead": [{"variant": "multihead", "overhead_us": 20.0}],
        "plugin_load": {"total_ms": 60.0},
    }
    checks = {check["target"]: check for check in load_targets().targets(report)}
    assert len(checks) == 6
    issue_9 = checks["multihead forward+backward <= 1.05x the faster of sdpa and sdpa_separate"]
    assert issue_9["issue"] == 9 and issue_9["value"] == pytest.approx(1.06)
    assert not issue_9["met"] and "sdpa (106.0 ms vs 100.0 ms)" in issue_9["measured"]
    assert checks["multihead forward+backward <= 1.15x the sdpa baseline"]["met"]
    target = "multihead forward+backward >= 1.25x faster than nn.MultiheadAttention"
    assert not checks[f"{target} (with the is_causal hint)"]["met"]
    assert checks[f"{target} (with the causal mask alone)"]["met"]
    assert checks["attnkit.create() adds < 1 ms over the class"]["met"]
    assert not checks["import attnkit and load all plugins, after torch, < 50 ms"]["met"]


def test_create_overhead_builds_at_the_standard_sizes_and_skips_what_they_cannot(
    fresh_registry,
):
    register_windowed()
    results = create_overhead(["multihead", "needs_window_bench"], repeats=2)
    assert [result["variant"] for result in results] == ["multihead"]
    arguments = results[0]["arguments"]
    assert arguments.items() <= STANDARD_SIZES.items() and "num_heads" in arguments


def test_plugin_loading_is_timed_in_a_fresh_interpreter():
    result = plugin_load_time(runs=1)
    assert result["variants"] == len(attnkit.list_variants())


def test_the_compile_check_is_the_kits():
    (result,) = compile_check(["causal"], backend="eager")
    assert result["outcome"] == "passed" and result["ok"], result["message"]
    assert result["message"].startswith("compile: compiled with fullgraph=True (backend 'eager')")


def test_a_variant_the_compile_check_cannot_build_is_reported_not_raised(fresh_registry):
    register_windowed()
    (result,) = compile_check(["needs_window_bench"], backend="eager")
    assert result["outcome"] == "failed" and not result["ok"]
    assert "window" in result["message"]


def test_a_baseline_name_is_checked():
    with pytest.raises(
        ValueError,
        match=r"unknown baseline 'spda' \(did you mean 'sdpa'\?\); baselines: sdpa, sdpa_separate",
    ):
        build_case("spda", "baseline", Shape(1, 4, 4, 1))


def register_windowed() -> None:
    @attnkit.register
    class Windowed(attnkit.Attention):
        """Needs a window size no shape carries."""

        name = "needs_window_bench"

        def __init__(self, d_in: int, window: int) -> None:
            super().__init__(d_in=d_in)

        def forward(self, x, need_weights=False):
            return x


def test_a_variant_that_needs_more_than_a_shape_gives_is_skipped(fresh_registry):
    register_windowed()
    case = build_case("needs_window_bench", "variant", Shape(1, 4, 4, 1))
    assert isinstance(case, Case) and case.module is None
    assert case.skipped == "requires window, which a benchmark shape does not give"


def test_python_dash_m_runs_the_harness():
    completed = subprocess.run(
        [sys.executable, "-m", "attnkit.bench", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0
    assert "--quick" in completed.stdout and "--long" in completed.stdout


# --- Command-line abuse: refused before measuring, in one line, without a traceback -------


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fail the test if the benchmark starts."""

    def benchmark(*args, **kwargs):
        raise AssertionError("the benchmark ran; the command should have refused first")

    monkeypatch.setattr(command_module, "benchmark", benchmark)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/report.json", "cannot write there: {root}/missing does not exist"),
        ("a-file/report.json", "cannot write there: {root}/a-file is not a directory"),
        (".", "is a directory; give a file name"),
    ],
    ids=["missing-folder", "under-a-file", "a-folder"],
)
def test_a_json_path_that_cannot_be_written_is_refused_at_once(
    where, message, tmp_path, nothing_runs, capsys
):
    (tmp_path / "a-file").write_text("")
    path = tmp_path / where
    assert main([*TINY, "--json", str(path)]) == 2
    error = capsys.readouterr().err
    expected = f"attnkit bench: error: --json {path}: {message.format(root=tmp_path)}"
    assert error == expected + "\n"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_a_json_path_without_permission_is_refused_at_once(tmp_path, nothing_runs, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main([*TINY, "--json", str(locked / "report.json")]) == 2
    assert "cannot write there: Permission denied" in capsys.readouterr().err


def test_a_json_path_that_can_be_written_is_left_as_it_was(tmp_path, nothing_runs):
    existing = tmp_path / "old.json"
    existing.write_text("kept")
    with pytest.raises(AssertionError, match="the benchmark ran"):
        main([*TINY, "--json", str(existing)])
    assert existing.read_text() == "kept"
    with pytest.raises(AssertionError, match="the benchmark ran"):
        main([*TINY, "--json", str(tmp_path / "new.json")])
    assert not (tmp_path / "new.json").exists()


def test_a_shape_too_big_for_memory_is_refused_with_its_estimate(nothing_runs, capsys):
    assert main([*TINY, "--shape", "100000x100000x768x12"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "attnkit bench: error: --shape 100000x100000x768x12: too big for this machine: a "
        "forward pass needs at least about 184,320.0 GB (the input, projections and output, "
        "6 x 100,000 x 100,000 x 768 float32 values, and the weights); about "
    )
    assert error.endswith(" GB is available\n") and "Traceback" not in error


def test_a_matmul_too_big_for_memory_is_refused(nothing_runs, capsys):
    assert main([*TINY, "--matmul-size", "100000000"]) == 2
    assert "--matmul-size 100000000: three 100,000,000 x 100,000,000 float32 matrices need" in (
        capsys.readouterr().err
    )


def test_a_run_that_fails_is_reported_in_one_line(monkeypatch, capsys):
    def benchmark(config, progress):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 1099511627776 bytes.\nException raised from ..."
        )

    monkeypatch.setattr(command_module, "benchmark", benchmark)
    assert main(TINY) == 1
    assert capsys.readouterr().err == (
        "attnkit bench: error: the run failed: RuntimeError: [enforce fail at alloc_cpu.cpp:117] "
        "data. DefaultCPUAllocator: not enough memory: you tried to allocate 1099511627776 "
        "bytes.\n"
    )


# --- Padding (--padding) and kernels (--kernels) ------------------------------------------

PADDED = [*TINY, "--variants", "multihead,self_attention", "--baselines", "sdpa"]


@pytest.fixture(scope="module")
def padded_report(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("bench") / "padded.json"
    assert main([*PADDED, "--padding", "0.25", "--json", str(path)]) == 0
    return load(path)


def padded_rows(report: dict, mode: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """The rows of ``mode`` by name: the unpadded ones (and baselines), and the padded ones."""
    rows = [row for row in report["results"] if row["mode"] == mode]
    unpadded = {row["name"]: row for row in rows if row["kind"] != "padded"}
    return unpadded, {row["name"]: row for row in rows if row["kind"] == "padded"}


def test_padding_adds_a_padded_row_beside_each_variant_that_takes_a_mask(padded_report):
    for mode in ("forward", "train"):
        rows = [
            (row["name"], row["kind"]) for row in padded_report["results"] if row["mode"] == mode
        ]
        assert rows == [
            ("sdpa", "baseline"),
            ("multihead", "variant"),
            ("multihead", "padded"),
            ("self_attention", "variant"),
            ("self_attention", "padded"),
        ]
        _, padded = padded_rows(padded_report, mode)
        for row in padded.values():
            assert row["status"] == "ok" and row["ms"] > 0 and len(row["runs_ms"]) == 2
            # A quarter of 16 tokens, on the left unless told otherwise.
            assert row["padding"] == {"fraction": 0.25, "side": "left", "tokens": 4}
    assert padded_report["padding"]["fraction"] == 0.25
    assert "--padding 0.25" in padded_report["command"]


def test_a_padded_row_is_compared_with_its_unpadded_row_of_the_same_run(padded_report):
    for mode in ("forward", "train"):
        unpadded, padded = padded_rows(padded_report, mode)
        for name, row in padded.items():
            ratio = row["ms"] / unpadded[name]["ms"]
            assert row["vs_unpadded"] == pytest.approx(ratio)
            assert row["ratio"] == pytest.approx(row["ms"] / unpadded["sdpa"]["ms"])


def test_a_padded_multihead_still_runs_the_fused_kernel_with_the_mask(padded_report):
    for mode in ("forward", "train"):
        unpadded, padded = padded_rows(padded_report, mode)
        assert unpadded["multihead"]["attention"] == "flash causal"
        # The fused CPU kernel, given the padding mask: every block computed, none halved.
        assert padded["multihead"]["attention"] == "flash, masked"
        assert padded["multihead"]["kernels"] == {"flash": 1}
        assert padded["multihead"]["causal_halved"] is False


def test_the_mask_is_timed_in_the_same_turns_first_and_cached(padded_report):
    costs = padded_report["padding"]["masks"]
    assert [cost["mode"] for cost in costs] == ["forward", "train"]
    for cost in costs:
        assert cost["mask"] == f"causal() & padding(<attention_mask {BATCH}x{TOKENS}>)"
        assert cost["dense_shape"] == [BATCH, 1, TOKENS, TOKENS]  # no heads dimension
        assert cost["first_ms"] > 0 and cost["cached_us"] > 0
        assert len(cost["runs_ms"]["first"]) == len(cost["runs_ms"]["cached"]) == 2
        _, padded = padded_rows(padded_report, cost["mode"])
        for row in padded.values():
            assert row["mask_share"] == pytest.approx(cost["first_ms"] / row["ms"])


def test_the_console_and_markdown_show_the_padded_rows(padded_report):
    text = format_report(padded_report)
    assert "multihead, 25% padded (left)" in text
    assert "padded: multihead: " in text and "x its unpadded time (4 of 16 tokens" in text
    assert (
        f"mask causal() & padding(<attention_mask {BATCH}x{TOKENS}>): built and to_dense "
        f"{BATCH}x1x{TOKENS}x{TOKENS}"
    ) in text
    table = padding_table(padded_report)
    assert len(table.splitlines()) == 2 + 2 * 2  # header, rule, two variants in two modes
    assert "| **multihead** | 4 of 16 (left) |" in table
    assert "| flash causal, flash, masked |" in table
    assert "| multihead, 25% padded (left) | flash, masked |" in markdown_table(padded_report)


def test_padding_goes_right_when_told(tmp_path):
    path = tmp_path / "right.json"
    options = ["--variants", "multihead", "--baselines", "none", "--mode", "forward"]
    assert (
        main([*TINY, *options, "--padding", "0.5", "--padding-side", "right", "--json", str(path)])
        == 0
    )
    report = load(path)
    (row,) = [row for row in report["results"] if row["kind"] == "padded"]
    assert row["padding"] == {"fraction": 0.5, "side": "right", "tokens": 8}
    assert row["ratio"] is None and row["vs_unpadded"] > 0  # no baseline: no reference
    assert "--padding 0.5 --padding-side right" in report["command"]


def test_padding_masks_are_as_documented():
    assert padded_tokens(1024, 0.25) == 256
    assert padded_tokens(3, 0.9) == 2  # one real token is left
    assert padded_tokens(16, 0.0) == 0
    left = padding_attention_mask(2, 4, 1)
    assert left.tolist() == [[0, 1, 1, 1], [0, 1, 1, 1]]
    assert padding_attention_mask(1, 4, 3, "right").tolist() == [[1, 0, 0, 0]]
    assert padding_attention_mask(1, 4, 0).tolist() == [[1, 1, 1, 1]]
    with pytest.raises(ValueError, match="padding side must be one of left, right, got 'up'"):
        padding_attention_mask(1, 4, 1, "up")


class Unmasked(attnkit.Attention):
    """A projection that takes no attention_mask."""

    name = "unmasked_bench"

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(d_in=d_in, d_out=d_out)
        self.proj = torch.nn.Linear(d_in, d_out)

    def forward(self, x, need_weights=False):
        return self.proj(x)


class Counter:
    def __init__(self):
        self.steps = 0

    def update(self, n=1):
        self.steps += n

    def set_description_str(self, desc=None, refresh=True):
        pass


def test_a_variant_that_takes_no_mask_gets_a_skipped_padded_row(fresh_registry):
    attnkit.register(Unmasked)
    config = Config(
        shapes=[Shape(BATCH, TOKENS, D_MODEL, HEADS)],
        modes=["forward"],
        variants=["unmasked_bench", "simple", "multihead"],
        baselines=[],
        repeats=1,
        warmup=0,
        min_run_time=0,
        matmul_size=64,
        overhead=False,
        padding=0.25,
        kernels=["sdpa"],
        kernel_masks=[MaskSpec.parse("causal")],
    )
    progress = Counter()
    report = benchmark(config, progress)
    rows = {(row["name"], row["kind"]): row for row in report["results"]}
    skipped = rows[("unmasked_bench", "padded")]
    assert skipped["status"] == "skipped"
    assert skipped["reason"] == (
        "takes no attention_mask: it does not declare the attention_mask capability "
        "(it declares: weights)"
    )
    assert rows[("unmasked_bench", "variant")]["status"] == "ok"
    # A variant skipped unpadded gets no padded row to skip again.
    assert ("simple", "padded") not in rows and rows[("simple", "variant")]["status"] == "skipped"
    assert rows[("multihead", "padded")]["status"] == "ok"
    assert "skipped: unmasked_bench, 25% padded (left): takes no attention_mask" in format_report(
        report
    )
    # The progress bar is sized for every step the run takes.
    assert progress.steps == planned_steps(config)


@pytest.fixture(scope="module")
def kernels_report(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("bench") / "kernels.json"
    masks = "causal,sliding_window:4,causal&document:2,padding:0.25"
    options = ["--variants", "none", "--baselines", "none", "--kernels", "sdpa,explicit"]
    assert main([*TINY, *options, "--kernel-masks", masks, "--json", str(path)]) == 0
    return load(path)


def test_kernels_are_timed_with_each_mask(kernels_report):
    assert kernels_report["results"] == []  # --variants none --baselines none: no main table
    section = kernels_report["kernels"]
    assert section["kernels"] == ["sdpa", "explicit"]
    assert section["masks"] == ["causal", "sliding_window:4", "causal&document:2", "padding:0.25"]
    rows = {(row["mask"], row["kernel"]): row for row in section["results"]}
    assert len(rows) == 8
    for row in rows.values():
        assert row["status"] == "ok" and row["ms"] > 0 and row["first_call_s"] > 0
        assert (row["batch"], row["heads"], row["tokens"], row["head_dim"]) == (2, 2, 16, 4)
    assert rows[("causal", "sdpa")]["ratio"] == 1.0
    explicit = rows[("causal", "explicit")]
    assert explicit["ratio"] == pytest.approx(explicit["ms"] / rows[("causal", "sdpa")]["ms"])


def test_each_kernel_row_names_its_mask_and_what_ran(kernels_report):
    rows = {(row["mask"], row["kernel"]): row for row in kernels_report["kernels"]["results"]}
    assert rows[("causal", "sdpa")]["attention"] == "flash causal"
    assert rows[("sliding_window:4", "sdpa")]["attention"] == "flash, masked"
    assert rows[("causal", "explicit")]["attention"] == "softmax"
    assert rows[("causal&document:2", "sdpa")]["mask_repr"] == (
        f"causal() & document(<ids {BATCH}x{TOKENS}>)"
    )
    # The share of query-key pairs each mask allows.
    assert rows[("causal", "sdpa")]["density"] == pytest.approx((TOKENS + 1) / (2 * TOKENS))
    window = sum(min(q + 1, 4) for q in range(TOKENS)) / TOKENS**2
    assert rows[("sliding_window:4", "sdpa")]["density"] == pytest.approx(window)
    half = TOKENS // 2
    assert rows[("causal&document:2", "sdpa")]["density"] == pytest.approx(
        (half + 1) / (2 * TOKENS)
    )
    assert rows[("padding:0.25", "sdpa")]["density"] == pytest.approx(0.75)


def test_the_kernels_section_is_printed_and_tabulated(kernels_report):
    text = format_report(kernels_report)
    assert "kernels called directly, forward (no_grad): (batch, heads, tokens, head_dim) = " in text
    assert "causal&document:2 = causal() & document(<ids 2x16>)" in text
    table = kernels_table(kernels_report)
    assert len(table.splitlines()) == 2 + 8
    assert "| 2, 2, 16, 4 | `causal()` | 53% | sdpa | flash causal |" in table
    assert (
        "--kernels sdpa,explicit --kernel-masks 'causal,sliding_window:4,"
        in (kernels_report["command"])
    )


def test_flex_is_compiled_before_it_is_timed(tmp_path):
    path = tmp_path / "flex.json"
    options = ["--variants", "none", "--baselines", "none", "--kernels"]
    assert main([*TINY, *options, "--kernel-masks", "causal", "--json", str(path)]) == 0
    rows = {row["kernel"]: row for row in load(path)["kernels"]["results"]}
    assert list(rows) == ["sdpa", "flex"]  # --kernels alone: the default pair
    flex = rows["flex"]
    assert flex["status"] == "ok", flex["reason"]
    assert flex["attention"] == "compiled" and flex["ratio"] > 0
    # The first call compiles; it is reported apart, not among the timed runs.
    assert flex["first_call_s"] > max(flex["runs_ms"]) / 1e3


def test_a_kernel_that_fails_is_reported_and_the_rest_run(fresh_registry):
    def broken(query, key, value, **kwargs):
        """Always fails."""
        raise RuntimeError("no such hardware\nmore detail")

    attnkit.register(attnkit.Kernel("broken_bench", broken))
    rows = measure_kernels(
        ["sdpa", "broken_bench"],
        [MaskSpec.parse("causal")],
        Shape(1, 8, 8, 2),
        repeats=1,
        warmup=0,
        min_run_time=0,
    )
    assert [(row["kernel"], row["status"]) for row in rows] == [
        ("sdpa", "ok"),
        ("broken_bench", "error"),
    ]
    assert rows[1]["reason"] == "RuntimeError: no such hardware"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--padding-side", "right"],
            "--padding-side right: give --padding FRACTION too, e.g. --padding 0.25",
        ),
        (
            ["--padding", "0.25", "--variants", "none"],
            "--padding: --variants selects no variant to pad",
        ),
        (
            ["--kernels", "flx"],
            "--kernels: no registered kernel matches 'flx' (did you mean 'flex'?); available: ",
        ),
        (
            ["--kernel-masks", "causal,sliding_windw:4"],
            "--kernel-masks: unknown mask 'sliding_windw:4' (did you mean 'sliding_window'?); "
            "masks: causal, sliding_window:W, prefix_lm:N, document:N, padding:F, joined with &",
        ),
        (
            ["--kernel-masks", "sliding_window"],
            "--kernel-masks: sliding_window needs a size, e.g. sliding_window:256",
        ),
        (["--kernel-masks", "causal:3"], "--kernel-masks: causal takes no size, got causal:3"),
        (
            ["--kernel-masks", "document:0"],
            "--kernel-masks: document:0: the size must be a positive integer",
        ),
        (
            ["--kernel-masks", "prefix_lm:-1"],
            "--kernel-masks: prefix_lm:-1: the size must be an integer >= 0",
        ),
        (
            ["--kernel-masks", "padding:1"],
            "--kernel-masks: padding:1: expected a fraction of each row, at least 0 and below 1",
        ),
        (["--kernel-masks", " , "], "--kernel-masks: no mask given; masks: causal, "),
    ],
)
def test_bad_padding_and_kernel_options_are_named(arguments, message, capsys, nothing_runs):
    assert main([*TINY, *arguments]) == 2
    assert f"attnkit bench: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--padding", "1"],
            "argument --padding: expected a fraction of each row, at least 0 and below 1, "
            "such as 0.25, got '1'",
        ),
        (["--padding", "a quarter"], "argument --padding: expected a fraction of each row"),
        (["--padding", "-0.1"], "argument --padding: expected a fraction of each row"),
        (["--padding", "nan"], "argument --padding: expected a fraction of each row"),
        (["--padding-side", "up"], "argument --padding-side: invalid choice: 'up'"),
    ],
)
def test_bad_padding_values_are_refused_by_the_parser(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*TINY, *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_repositorys_padding_targets_are_read_at_the_issues_shape():
    shape = {"batch": 8, "tokens": 1024, "d_model": 768, "heads": 12}

    def row(name, kind, ms, **extra):
        return {
            "shape": shape,
            "mode": "forward",
            "name": name,
            "kind": kind,
            "status": "ok",
            "ms": ms,
            **extra,
        }

    padding = {"fraction": 0.25, "side": "left", "tokens": 256}
    report = {
        "results": [
            row("multihead", "variant", 100.0),
            row("multihead", "padded", 118.0, padding=padding, attention="flash, masked"),
        ],
        "padding": {
            "masks": [{"shape": shape, "mode": "forward", "first_ms": 3.0, "cached_us": 1.0}]
        },
    }
    checks = {check["target"]: check for check in load_targets().targets(report)}
    assert len(checks) == 3
    fused = checks[
        "multihead forward with a quarter of each row padding (left) runs a fused SDPA kernel"
    ]
    assert fused["met"] and fused["measured"] == "flash, masked"
    ratio = checks[
        "multihead forward with a quarter of each row padding (left) <= 1.15x its unpadded time"
    ]
    assert ratio["issue"] == 10 and ratio["value"] == pytest.approx(1.18) and not ratio["met"]
    share = checks["building and materialising the mask takes < 2% of multihead's padded forward"]
    assert share["value"] == pytest.approx(3.0 / 118.0) and not share["met"]
    # Another amount of padding is not the issue's: no check.
    padding["fraction"] = 0.5
    assert load_targets().targets(report) == []
