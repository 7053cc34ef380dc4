"""The benchmark harness, ``attnkit bench`` / ``python -m attnkit.bench``: behaviour, not speed.

Timings are never asserted: the machine running the tests may be busy. What is
checked is that every case is built and measured as documented, that ratios and
FLOP counts follow from the measured numbers, that the fused kernel is recognised,
and that every mistake a user can make gets a message naming it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import attnkit
from attnkit.bench import load, main, markdown_table, targets
from attnkit.bench import runner as runner_module
from attnkit.bench.baselines import FusedSDPA, TextbookAttention, TorchMultiheadAttention
from attnkit.bench.cases import (
    Case,
    Shape,
    attention_flops,
    build_case,
    case_flops,
    projection_flops,
    worst_case_bytes,
)
from attnkit.bench.measure import calls_per_run, profile_call
from attnkit.bench.overhead import compile_check, create_overhead, plugin_load_time
from attnkit.bench.report import format_report
from attnkit.bench.runner import Config, benchmark

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
    expected = {*attnkit.list_variants(), "sdpa", "mha", "mha_mask", "textbook"}
    for mode in ("forward", "train"):
        assert set(rows_of(report, mode)) == expected
    assert report["schema"] == "attnkit-bench/1"
    assert report["modes"] == {
        "forward": "forward (eval, no_grad)",
        "train": "forward + backward (train, dropout 0)",
    }


def test_the_report_names_the_machine_and_software(report):
    machine = report["machine"]
    assert machine["torch"] == torch.__version__
    assert machine["attnkit"] == attnkit.__version__
    assert machine["threads"] == torch.get_num_threads()
    assert machine["cores"] >= 1 and machine["cpu"]
    assert machine["date"].endswith("+00:00")
    assert report["matmul"]["gflops"] > 0 and report["matmul"]["dtype"] == "float32"
    assert "attnkit bench --shape 2x16x8x2" in report["command"]


def test_measured_rows_carry_time_ratio_rate_and_memory(report):
    for mode in ("forward", "train"):
        rows = rows_of(report, mode)
        reference = rows["sdpa"]
        assert reference["reference"] and reference["ratio"] == 1.0
        for row in rows.values():
            if row["status"] != "ok":
                continue
            assert row["ms"] > 0 and len(row["runs_ms"]) == 2
            assert row["ratio"] == pytest.approx(row["ms"] / reference["ms"])
            assert row["gflops"] == pytest.approx(row["gflop"] / (row["ms"] / 1e3))
            assert row["matmul_fraction"] == pytest.approx(
                row["gflops"] / report["matmul"]["gflops"]
            )
            assert row["peak_mb"] > 0


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
    assert forward["sdpa"]["attention"] == "flash causal"
    assert forward["sdpa"]["causal_halved"] is True
    assert forward["textbook"]["attention"] == "softmax"
    assert forward["textbook"]["causal_halved"] is False
    assert forward["mha"]["attention"] == "native MHA"  # PyTorch's inference fast path
    assert rows_of(report, "train")["mha"]["attention"] == "flash causal"
    # Without the is_causal hint the mask is applied as any mask: no blocks skipped.
    assert rows_of(report, "train")["mha_mask"]["causal_halved"] is False


def test_the_console_table_marks_the_baseline_and_explains_the_columns(report):
    text = format_report(report)
    assert "sdpa (baseline)" in text and "1.00x (ref)" in text
    assert "vs sdpa: time / the sdpa baseline's time" in text
    assert "4*B*H*T^2*d" in text


def test_markdown_table_lists_the_measured_rows(report):
    table = markdown_table(report)
    assert table.splitlines()[0].startswith("| mode | name | attention |")  # one shape
    assert "| forward | **multihead** | flash causal |" in table
    assert "simple" not in table  # skipped rows stay out


def test_attention_flops_are_the_standard_count():
    assert attention_flops(8, 12, 1024, 64) == 4 * 8 * 12 * 1024**2 * 64
    assert attention_flops(8, 12, 1024, 64, causal_halved=True) == 2 * 8 * 12 * 1024**2 * 64


def test_projection_flops_count_every_projection_once():
    b, t, d = 2, 5, 12
    projection = 2 * b * t * d * d
    assert projection_flops(FusedSDPA(d, 3), b, t) == 4 * projection  # qkv (3) + out (1)
    assert projection_flops(TextbookAttention(d, 3, t), b, t) == 4 * projection
    assert projection_flops(TorchMultiheadAttention(d, 3, t), b, t) == 4 * projection


def test_training_counts_three_times_the_forward():
    shape = Shape(2, 16, 8, 2)
    case = build_case("sdpa", "baseline", shape)
    forward = case_flops(case, shape, "forward", causal_halved=True)
    assert forward == attention_flops(2, 2, 16, 4, True) + projection_flops(case.module, 2, 16)
    assert case_flops(case, shape, "train", causal_halved=True) == 3 * forward


def test_the_worst_case_memory_estimate_is_three_matrices_per_head():
    assert worst_case_bytes(Shape(1, 8192, 768, 12), "forward", torch.float32) == (
        3 * 12 * 8192**2 * 4
    )
    assert worst_case_bytes(Shape(1, 8192, 768, 12), "train", torch.float64) == (
        4 * 12 * 8192**2 * 8
    )


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


def test_calls_per_run_lengthens_short_calls():
    assert calls_per_run(1.0, 0.05) == 1
    assert calls_per_run(0.01, 0.05) == 5
    assert calls_per_run(0.0, 0.0) == 1


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
            "--variants: no registered variant matches 'mulithead'; available: causal,",
        ),
        (
            ["--baselines", "sdpa,flash"],
            "--baselines: unknown baseline 'flash'; choose from sdpa, mha, mha_mask, textbook "
            "or 'none'",
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


def test_targets_are_read_at_the_issues_shapes():
    def row(name, kind, ms, **extra):
        shape = {"batch": 8, "tokens": 1024, "d_model": 768, "heads": 12}
        return {"shape": shape, "mode": "train", "name": name, "kind": kind, "status": "ok"} | {
            "ms": ms,
            **extra,
        }

    report = {
        "results": [
            row("sdpa", "baseline", 100.0),
            row("multihead", "variant", 110.0),
            row("mha", "baseline", 120.0),
            row("mha_mask", "baseline", 150.0),
        ],
        "create_overhead": [{"variant": "multihead", "overhead_us": 20.0}],
        "plugin_load": {"total_ms": 60.0},
    }
    checks = {check["target"]: check for check in targets(report)}
    assert checks["multihead forward+backward <= 1.15x the sdpa baseline"]["met"]
    target = "multihead forward+backward >= 1.25x faster than nn.MultiheadAttention"
    hinted = checks[f"{target} (with the is_causal hint)"]
    assert hinted["value"] == pytest.approx(120 / 110) and not hinted["met"]
    masked = checks[f"{target} (with the causal mask alone)"]
    assert masked["value"] == pytest.approx(150 / 110) and masked["met"]
    assert checks["attnkit.create() adds < 1 ms over the class"]["met"]
    assert not checks["import attnkit and load all plugins, after torch, < 50 ms"]["met"]


def test_create_overhead_is_measured_against_the_class():
    (result,) = create_overhead(["multihead"], repeats=5)
    assert result["variant"] == "multihead"
    assert result["overhead_us"] == pytest.approx(result["create_us"] - result["direct_us"])
    assert result["arguments"]["num_heads"] == 2


def test_plugin_loading_is_timed_in_a_fresh_interpreter():
    result = plugin_load_time(runs=1)
    assert result["variants"] == len(attnkit.list_variants())
    assert result["total_ms"] == pytest.approx(result["import_ms"] + result["load_ms"])


def test_the_compile_check_compares_with_eager():
    (result,) = compile_check(["causal"], backend="eager")
    assert result["ok"], result["error"]
    assert result["max_abs_diff"] == 0.0


def test_a_baseline_name_is_checked():
    with pytest.raises(ValueError, match="unknown baseline 'flash'; baselines: sdpa, mha"):
        build_case("flash", "baseline", Shape(1, 4, 4, 1))


def test_a_variant_that_needs_more_than_a_shape_gives_is_skipped(fresh_registry):
    @attnkit.register
    class Windowed(attnkit.Attention):
        """Needs a window size no shape carries."""

        name = "needs_window_bench"

        def __init__(self, d_in: int, window: int) -> None:
            super().__init__(d_in=d_in)

        def forward(self, x, need_weights=False):
            return x

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
