"""The ``attnkit`` command: each command, its help, its errors, exit codes.

Exit status: 0 success, 1 a failed check (or a plugin failing in strict mode),
2 bad usage. The command runs in-process, through `attnkit.cli.main`, as a fresh
process would run it: 80 columns, no ``ATTNKIT_*`` variables, and plugins loaded
anew, the test process's registry put back afterwards. Plugins that fail are
installed from ``tests/distributions/`` by putting their folder on ``sys.path``.
A few smoke tests at the end run the real thing, ``python -m attnkit`` and the
console script, as subprocesses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

import attnkit
from attnkit import registry
from attnkit._arguments import STANDARD_SIZES
from attnkit.cli import _CAPABILITY_HEADERS, _parse_value, main
from attnkit.interface import CAPABILITIES
from attnkit.testing import CHECKS
from tests.helpers import BUILTIN_VARIANTS

DISTRIBUTIONS = Path(__file__).parent / "distributions"
FIXTURE_MODULES = ("attnkit_test_", "attnkit_missing_dependency")


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def attnkit_command(monkeypatch, capsys):
    """``attnkit_command(*args, folders=(), **env)`` runs ``attnkit ARGS`` in-process.

    Each call starts from an unloaded registry, so that plugins load (and report
    their failures) inside the command, as in a fresh process; ``folders`` from
    ``tests/distributions/`` are installed and ``env`` set first. Everything is
    undone afterwards.
    """
    for name in [name for name in os.environ if name.startswith("ATTNKIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "80")

    def run(*args: str, folders: tuple[str, ...] = (), **env: str) -> Result:
        for folder in folders:
            monkeypatch.syspath_prepend(str(DISTRIBUTIONS / folder))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(registry, "_registry", None)  # as in a fresh process
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return Result(status, out, err)

    yield run
    for module in [m for m in sys.modules if m.startswith(FIXTURE_MODULES)]:
        del sys.modules[module]


def assert_fits_80_columns(text: str) -> None:
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, f"lines wider than 80 columns: {long}"


def standard_sizes(*names: str) -> str:
    return ", ".join(f"{name}={STANDARD_SIZES[name]!r}" for name in names)


def parse_table(text: str) -> list[dict[str, str]]:
    """The rows of a table the command printed, as ``{header: cell}``.

    Columns start where their one-word headers do; a line whose first column is
    blank continues the row above (a wrapped cell), and its words are joined on.
    """
    header, *lines = text.rstrip("\n").splitlines()
    names = header.split()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    rows: list[dict[str, str]] = []
    for line in lines:
        bounds = zip(starts, [*starts[1:], None], strict=True)
        cells = [line[start:end].strip() for start, end in bounds]
        if cells[0]:
            rows.append(dict(zip(names, cells, strict=True)))
        else:
            for name, cell in zip(names, cells, strict=True):
                rows[-1][name] = f"{rows[-1][name]} {cell}".strip()
    return rows


def local_registry(monkeypatch, capsys):
    """A fresh registry for in-process registrations (put back after), output cleared."""
    for name in [name for name in os.environ if name.startswith("ATTNKIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(registry, "_registry", None)
    attnkit.list_variants()  # load the installed plugins before registering beside them
    capsys.readouterr()


# --- Help and usage ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        ([], "usage: attnkit [-h] [--version] COMMAND ..."),
        (["list"], "usage: attnkit list [-h] [PATTERN]"),
        (["kernels"], "usage: attnkit kernels [-h] [PATTERN]"),
        (["show"], "usage: attnkit show [-h] NAME"),
        (["plugins"], "usage: attnkit plugins [-h]"),
        (["check"], "usage: attnkit check [-h] [--arg KEY=VALUE] [--skip CHECK]"),
        (["bench"], "usage: attnkit bench [-h]"),
    ],
    ids=["attnkit", "list", "kernels", "show", "plugins", "check", "bench"],
)
def test_help(attnkit_command, args, usage):
    result = attnkit_command(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(usage)
    assert result.stderr == ""
    if args != ["bench"]:  # attnkit.bench writes its own help
        assert_fits_80_columns(result.stdout)
    if not args:
        for command in ["list", "kernels", "show", "plugins", "check", "bench"]:
            assert re.search(rf"^    {command} +\w", result.stdout, flags=re.MULTILINE)
        assert "exit status: 0 success, 1 a check failed, 2 bad usage." in result.stdout
        assert "ATTNKIT_PLUGINS" in result.stdout and "ATTNKIT_STRICT_PLUGINS=1" in result.stdout
    if args == ["list"]:  # every capability's column is explained, with its meaning
        text = " ".join(result.stdout.split())
        for name, meaning in CAPABILITIES.items():
            assert f"{_CAPABILITY_HEADERS[name]} {name}: {meaning}" in text
    if args == ["check"]:
        for check in CHECKS:  # every check is listed with its rule
            assert re.search(rf"^  {check.name} +\S", result.stdout, flags=re.MULTILINE)
        sizes = standard_sizes(*STANDARD_SIZES)  # the sizes variants are built with
        assert sizes in " ".join(result.stdout.split())


def test_version(attnkit_command):
    result = attnkit_command("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"attnkit {attnkit.__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "attnkit: error: the following arguments are required: COMMAND"),
        (["frobnicate"], "attnkit: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (
            ["show", "casual"],
            "attnkit show: error: unknown attention variant 'casual'; did you mean 'causal'? "
            "Available: causal, ",
        ),
        (
            ["show", "spda"],  # close to a kernel, not to a variant: the kernel's error
            "attnkit show: error: unknown attention kernel 'spda'; did you mean 'sdpa'? "
            "Available: ",
        ),
        (
            ["show", "xyz"],  # close to nothing: both lists
            "attnkit show: error: unknown attention variant 'xyz'. Available: causal, ",
        ),
        (
            ["show", "xyz"],
            ". Nor is 'xyz' a kernel; kernels: ",
        ),
        (["kernels", "a", "b"], "attnkit: error: unrecognized arguments: b"),
        (["check"], "attnkit check: error: the following arguments are required: NAME"),
        (
            ["check", "casual"],
            "attnkit check: error: unknown attention variant 'casual'; did you mean 'causal'?",
        ),
        (
            ["check", "causal", "--arg", "d_in"],
            "attnkit check: error: argument --arg: expected KEY=VALUE, for example d_in=16; "
            "got 'd_in'",
        ),
        (
            ["check", "causal", "--arg", "1x=3"],
            "attnkit check: error: argument --arg: KEY must be a constructor argument name, "
            "such as d_in; got '1x' in '1x=3'",
        ),
        (
            ["check", "causal", "--arg", "drop_out=0.1"],
            "attnkit check: error: causal: unexpected keyword argument 'drop_out' (did you mean "
            "'dropout'?). causal accepts: d_in, d_out, context_length, dropout=0.0",
        ),
        (
            ["check", "causal", "--arg", "d_in=4", "--arg", "d_in=5"],
            "attnkit check: error: --arg d_in is given twice (4 and 5)",
        ),
        (
            ["check", "causal", "--arg", "d_in=abc"],
            "attnkit check: error: cannot build causal(d_in='abc'): CausalAttention(d_in='abc', ",
        ),
        (
            ["check", "multihead", "--arg", "num_heads=3"],
            "attnkit check: error: cannot build multihead(num_heads=3): ",
        ),
        (
            ["check", "causal", "--compile-backend", "nope"],
            "attnkit check: error: unknown torch.compile backend 'nope'; the usual ones are "
            "inductor (the default), aot_eager and eager; all: ",
        ),
        (
            ["check", "causal", "--compile-backend", "inductr"],
            "attnkit check: error: unknown torch.compile backend 'inductr'; did you mean "
            "'inductor'?; the usual ones are",
        ),
        (
            ["check", "causal", "--skip", "causalty"],
            "attnkit check: error: unknown check 'causalty' in skip; did you mean 'causality'? "
            "Checks: batched_shape, ",
        ),
    ],
    ids=lambda value: " ".join(value) or "no-command" if isinstance(value, list) else "",
)
def test_bad_usage_exits_2_with_a_message(attnkit_command, args, message):
    result = attnkit_command(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_skipped_compile_check_needs_no_known_backend(attnkit_command):
    result = attnkit_command(
        "check", "simple", "--skip", "compile", "--compile-backend", "nope", "--skip", "to_device"
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  SKIP  compile +skipped on request$", result.stdout, re.M)


# --- list, show, plugins ------------------------------------------------------------------


BUILTIN_KERNELS = ["explicit", "flex", "sdpa"]
CAPABILITY_HEADERS = [_CAPABILITY_HEADERS[name] for name in CAPABILITIES]


def test_every_capability_has_a_short_column_header():
    assert list(_CAPABILITY_HEADERS) == list(CAPABILITIES)
    assert CAPABILITY_HEADERS == ["mask", "positions", "cache", "weights"]


def test_list_prints_a_table_that_fits_80_columns(attnkit_command):
    result = attnkit_command("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "stage", "causal", *CAPABILITY_HEADERS, "summary"]
    rows = {row["name"]: row for row in parse_table(result.stdout)}
    assert {*BUILTIN_VARIANTS, "window"} <= set(rows)
    assert [rows["causal"][h] for h in ("stage", "causal")] == ["3", "yes"]
    assert [rows["simple"][h] for h in ("stage", "causal")] == ["1", "no"]
    assert [rows["window"][h] for h in ("stage", "causal")] == ["-", "yes"]
    assert any(line.endswith("...") for line in lines), "long summaries are truncated"
    assert_fits_80_columns(result.stdout)


def test_list_shows_every_variants_capabilities(attnkit_command):
    result = attnkit_command("list")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in parse_table(result.stdout)}
    assert set(rows) == set(attnkit.list_variants())
    for name, row in rows.items():
        capabilities = attnkit.get_variant(name).capabilities
        expected = {
            header: "yes" if capability in capabilities else "no"
            for capability, header in _CAPABILITY_HEADERS.items()
        }
        assert {header: row[header] for header in CAPABILITY_HEADERS} == expected, name
    assert [rows["simple"][h] for h in CAPABILITY_HEADERS] == ["no", "no", "no", "yes"]


def test_list_shows_a_declared_position_capability(monkeypatch, capsys):
    local_registry(monkeypatch, capsys)

    @attnkit.register
    class Positioned(attnkit.get_variant("simple")):
        """Takes positions and nothing else."""

        name = "positioned"
        capabilities = frozenset({"position_ids"})

    assert main(["list", "positioned"]) == 0
    [row] = parse_table(capsys.readouterr().out)
    assert [row[h] for h in CAPABILITY_HEADERS] == ["no", "yes", "no", "no"]


def test_list_filters_by_pattern(attnkit_command):
    result = attnkit_command("list", "multihead*")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == ["multihead", "multihead_wrapper"]
    assert "  Efficient ..." in result.stdout  # summaries are cut to fit


def test_list_says_when_nothing_matches(attnkit_command):
    result = attnkit_command("list", "zzz*")
    assert result.returncode == 0
    assert result.stdout == ""
    variants = ", ".join(attnkit.list_variants())
    assert result.stderr == f"no variant matches 'zzz*'; variants: {variants}\n"


def test_kernels_prints_a_table_that_fits_80_columns(attnkit_command):
    result = attnkit_command("kernels")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["name", "weights", "plugin", "summary"]
    rows = {row["name"]: row for row in parse_table(result.stdout)}
    assert list(rows) == attnkit.list_kernels()
    assert set(BUILTIN_KERNELS) <= set(rows)
    for name in BUILTIN_KERNELS:
        kernel = attnkit.get_kernel(name)
        assert rows[name]["weights"] == ("yes" if kernel.returns_weights else "no")
        assert rows[name]["plugin"] == "attnkit.kernels"
        assert rows[name]["summary"].removesuffix("...") in kernel.summary
    assert rows["explicit"]["weights"] == "yes" and rows["sdpa"]["weights"] == "no"
    assert rows["sdpa"]["summary"].startswith("PyTorch's fused")
    assert_fits_80_columns(result.stdout)


def test_kernels_filters_by_pattern(attnkit_command):
    result = attnkit_command("kernels", "[ef]*")
    assert result.returncode == 0, result.stderr
    assert [row["name"] for row in parse_table(result.stdout)] == ["explicit", "flex"]


def test_kernels_says_when_nothing_matches(attnkit_command):
    result = attnkit_command("kernels", "zzz*")
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == (
        f"no kernel matches 'zzz*'; kernels: {', '.join(attnkit.list_kernels())}\n"
    )


def test_kernels_lists_one_registered_in_process(monkeypatch, capsys):
    local_registry(monkeypatch, capsys)
    sdpa = attnkit.get_kernel("sdpa").function
    attnkit.register(attnkit.Kernel("notebook", sdpa, summary="A kernel from a notebook."))
    assert main(["kernels", "notebook"]) == 0
    [row] = parse_table(capsys.readouterr().out)
    assert row == {
        "name": "notebook",
        "weights": "no",
        "plugin": "local",
        "summary": "A kernel from a notebook.",
    }


def test_show_a_builtin(attnkit_command):
    result = attnkit_command("show", "multihead")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(  # the summary is wrapped to the terminal
        "multihead: Efficient causal multi-head attention: one projection each for Q, K,\n"
        "V, split into heads.\n\n"
    )
    assert "  class:   attnkit_builtins.multihead.MultiHeadAttention\n" in out
    assert "  stage:   4\n  causal:  yes\n" in out
    assert (
        f"  from:    plugin 'attnkit.multihead' (distribution attnkit {attnkit.__version__}), "
        f"built in\n" in out
    )
    assert re.search(r"^  d_in +int +required$", out, flags=re.MULTILINE)
    assert re.search(r"^  dropout +float +0\.0$", out, flags=re.MULTILINE)
    assert re.search(r"^  num_heads +int +required \(keyword-only\)$", out, flags=re.MULTILINE)
    assert "is also" not in out and "kernel;" not in out
    assert_fits_80_columns(out)


def test_show_lists_the_capabilities_with_their_meaning(attnkit_command):
    result = attnkit_command("show", "causal")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    block = out[out.index("\ncapabilities:\n") + 15 : out.index("\nparameters:")]
    rows = parse_table(textwrap.dedent(block))
    declared = attnkit.get_variant("causal").capabilities
    assert {"attention_mask", "kv_cache", "weights"} <= declared
    assert rows == [
        {"name": name, "supported": "yes" if name in declared else "no", "meaning": meaning}
        for name, meaning in CAPABILITIES.items()
    ]
    assert_fits_80_columns(out)


def test_show_a_third_party_variant_with_its_version(attnkit_command):
    result = attnkit_command("show", "window")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("window: Sliding-window causal attention")
    assert "  from:    plugin 'window' (distribution attnkit-window 0.1.0)\n" in result.stdout
    assert re.search(r"^  window +int +4$", result.stdout, flags=re.MULTILINE)
    assert re.search(r"^  num_heads +int +1$", result.stdout, flags=re.MULTILINE)


def test_show_a_variant_registered_in_process(attnkit_command, monkeypatch, capsys):
    monkeypatch.setattr(registry, "_registry", None)  # a fresh registry, put back after

    @attnkit.register
    class Local(attnkit.get_variant("simple")):
        """A variant defined in a notebook."""

        name = "local_simple"

    capsys.readouterr()
    assert main(["show", "local_simple"]) == 0  # the same program calls the command
    out = capsys.readouterr().out
    assert out.startswith("local_simple: A variant defined in a notebook.")
    assert "  from:    plugin 'local', registered in-process\n" in out


def test_show_a_builtin_kernel(attnkit_command):
    result = attnkit_command("show", "sdpa")
    assert result.returncode == 0, result.stderr
    version = attnkit.__version__
    out = result.stdout
    assert out[: out.index("need_weights,") + 14] == (
        "sdpa: PyTorch's fused scaled_dot_product_attention; the default kernel.\n"
        "\n"
        "  kernel:   an attnkit.Kernel, the computation a variant's kernel= chooses\n"
        "  function: attnkit_builtins.kernels.sdpa\n"
        "  weights:  no, it cannot return the attention weights (need_weights=True)\n"
        f"  from:     plugin 'attnkit.kernels' (distribution attnkit {version}), built in\n"
        "\n"
        "signature:\n"
        "  sdpa(query, key, value, *, mask, scale, dropout_p, training, need_weights,\n"
    )
    assert out.endswith("**options)\n")  # its own options, if any, before
    assert_fits_80_columns(out)


def test_show_a_kernel_with_its_docstring(monkeypatch, capsys):
    local_registry(monkeypatch, capsys)

    def halved(query, key, value, *, mask, scale, dropout_p, training, need_weights, factor=0.5):
        """Half of the explicit kernel's context.

        A kernel for a test: its docstring goes on past the summary.
        """
        context, weights = attnkit.get_kernel("explicit").function(
            query,
            key,
            value,
            mask=mask,
            scale=scale,
            dropout_p=dropout_p,
            training=training,
            need_weights=need_weights,
        )
        return context * factor, weights

    attnkit.register(attnkit.Kernel("halved", halved, returns_weights=True))
    assert main(["show", "halved"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("halved: Half of the explicit kernel's context.\n\n")
    assert f"  function: {__name__}.test_show_a_kernel_with_its_docstring.<locals>.halved\n" in out
    assert "  weights:  yes, it can return the attention weights (need_weights=True)\n" in out
    assert "  from:     plugin 'local', registered in-process\n" in out
    assert out.endswith(
        "signature:\n"
        "  halved(query, key, value, *, mask, scale, dropout_p, training, need_weights,\n"
        "    factor=0.5)\n"
        "\n"
        "  A kernel for a test: its docstring goes on past the summary.\n"
    )


def test_show_a_kernel_without_signature_or_docstring(monkeypatch, capsys):
    local_registry(monkeypatch, capsys)
    attnkit.register(attnkit.Kernel("builtin_max", max, summary="Not a real kernel."))
    assert main(["show", "builtin_max"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("builtin_max: Not a real kernel.\n")
    assert "  function: builtins.max\n" in out
    assert "\nsignature: not available\n\n  max(iterable" in out  # then its docstring

    attnkit.register(attnkit.Kernel("anonymous", lambda q, k, v, **kw: (q, None)))
    assert main(["show", "anonymous"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("anonymous\n\n")  # no summary to show
    assert out.endswith("signature:\n  <lambda>(q, k, v, **kw)\n")


def test_show_a_name_that_is_a_variant_and_a_kernel(monkeypatch, capsys):
    local_registry(monkeypatch, capsys)
    attnkit.register(attnkit.Kernel("causal", attnkit.get_kernel("sdpa").function))
    assert main(["show", "causal"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("causal: Causal self-attention")
    assert "  class:   attnkit_builtins.causal.CausalAttention\n" in out
    assert "signature:" not in out
    assert out.endswith(
        "\n'causal' also names a kernel, from plugin 'local', registered in-process; this\n"
        "is the variant. 'attnkit kernels causal' lists the kernel.\n"
    )


def test_plugins_lists_each_plugin_with_its_distribution_and_version(attnkit_command):
    result = attnkit_command("plugins")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["plugin", "distribution", "variants", "kernels"]
    rows = {row["plugin"]: row for row in parse_table(result.stdout)}
    builtin = f"attnkit {attnkit.__version__}"
    assert rows["attnkit.causal"] == {
        "plugin": "attnkit.causal",
        "distribution": builtin,
        "variants": "causal",
        "kernels": "none",
    }
    assert rows["attnkit.multihead"]["variants"] == "multihead, multihead_wrapper"
    assert rows["attnkit.kernels"]["variants"] == "none"
    assert sorted(rows["attnkit.kernels"]["kernels"].split(", ")) == BUILTIN_KERNELS
    assert rows["window"]["distribution"] == "attnkit-window 0.1.0"
    assert rows["window"]["variants"] == "window"
    assert rows["window"]["kernels"] == ", ".join(registry.get_plugin("window").kernels) or "none"
    assert "load errors" not in result.stdout
    assert_fits_80_columns(result.stdout)


def test_plugins_reports_load_errors_and_the_rest_still_load(attnkit_command):
    result = attnkit_command("plugins", folders=("import_error", "hook_error", "good"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rows = {row["plugin"]: row for row in parse_table(out[: out.index("\n\nload errors:")])}
    assert rows["good"] == {
        "plugin": "good",
        "distribution": "attnkit-test-good 1.0",
        "variants": "uniform_good",
        "kernels": "none",
    }
    assert rows["import_error"]["distribution"] == "attnkit-test-import-error 1.0"
    assert rows["import_error"]["variants"] == "failed to load (see below)"
    assert rows["import_error"]["kernels"] == "-"
    errors = " ".join(out[out.index("load errors:") :].split())
    assert "plugin 'import_error' (distribution attnkit-test-import-error 1.0):" in errors
    assert "ModuleNotFoundError: No module named 'attnkit_missing_dependency'" in errors
    assert (
        "plugin 'hook_error' (distribution attnkit-test-hook-error 2.0): RuntimeError: the hook"
        in errors
    )
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "attnkit: warning: plugin 'hook_error' (distribution attnkit-test-hook-error 2.0) failed "
        "in its hooks: RuntimeError: the hook failed on purpose."
    )
    assert warnings[1].startswith(
        "attnkit: warning: plugin 'import_error' (distribution attnkit-test-import-error 1.0) "
        "failed to import: ModuleNotFoundError"
    )


def test_attnkit_plugins_honours_the_selection_variable(attnkit_command):
    result = attnkit_command("plugins", folders=("good",), ATTNKIT_PLUGINS="")
    assert result.returncode == 0, result.stderr
    assert "window" not in result.stdout and "uniform_good" not in result.stdout
    assert "chunked" not in attnkit_command("kernels", folders=("good",), ATTNKIT_PLUGINS="").stdout
    assert "ATTNKIT_PLUGINS='': third-party plugins from none only" in result.stdout


def test_strict_mode_makes_a_broken_plugin_an_error(attnkit_command):
    result = attnkit_command("list", folders=("import_error",), ATTNKIT_STRICT_PLUGINS="1")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "ModuleNotFoundError: No module named 'attnkit_missing_dependency'" in result.stderr
    assert "The above exception was the direct cause of the following exception" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        "attnkit: error: plugin 'import_error' (distribution attnkit-test-import-error 1.0) "
        "failed to import: ModuleNotFoundError: No module named 'attnkit_missing_dependency'"
    )


# --- check ---------------------------------------------------------------------------------


def test_check_passes_the_example_plugin(attnkit_command, one_thread):
    result = attnkit_command(
        "check",
        "window",
        "--arg",
        "window=2",
        "--arg",
        "qkv_bias=true",
        "--compile-backend",  # inductor is the kit's tests' business; this is about the output
        "aot_eager",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("checking window: Sliding-window causal attention")
    assert "  class:     attnkit_window." in out
    assert "  from:      plugin 'window' (distribution attnkit-window 0.1.0)\n" in out
    block = re.search(r"^  arguments: (.*(\n {13}\S.*)*)$", out, re.M)
    assert block, out
    sizes = standard_sizes("d_in", "d_out", "context_length", "num_heads", "dropout")
    assert " ".join(block.group(1).split()) == f"{sizes}, window=2, qkv_bias=True"
    # Every check passes but those of a capability the window does not declare.
    undeclared = {"position_ids"}
    for check in CHECKS:
        outcome = "SKIP" if check.name in undeclared else "PASS"
        assert re.search(rf"^  {outcome}  {check.name} ", out, re.M), check.name
    assert "compiled with fullgraph=True (backend 'aot_eager')" in " ".join(out.split())
    passed = len(CHECKS) - len(undeclared)
    assert f"{passed} passed, 0 failed, {len(undeclared)} skipped\n" in out
    assert out.endswith("window passed every check that applies.\n")
    assert_fits_80_columns(out)


@pytest.mark.parametrize(
    ("variant", "check", "message"),
    [
        (
            "lookahead",
            "causality",
            "output at position 0 changed when tokens after it were perturbed",
        ),
        (
            "unnormalised",
            "need_weights",
            "weights of (batch 0, head 0, query 0) sum to",
        ),
    ],
    ids=["lookahead", "unnormalised"],
)
def test_check_fails_a_variant_that_breaks_a_rule(
    attnkit_command, one_thread, variant, check, message
):
    result = attnkit_command("check", variant, "--skip", "compile", folders=("broken",))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    failed = re.search(rf"^  FAIL  {check} +(.*(\n {{20,}}.*)*)", out, re.M)
    assert failed, out
    assert message in " ".join(failed.group(1).split())
    assert re.search(r"^  SKIP  compile +skipped on request$", out, re.M)
    assert out.rstrip().splitlines()[-1] == f"{variant} failed: {check}"
    assert_fits_80_columns(out)


def test_a_plugin_that_fails_to_import_leaves_the_others_usable(attnkit_command, one_thread):
    result = attnkit_command(
        "check", "uniform_good", "--skip", "compile", folders=("import_error", "good")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "attnkit: warning: plugin 'import_error'" in result.stderr
    assert "uniform_good passed every check that applies." in result.stdout


def test_check_prints_each_result_from_the_kit_as_it_arrives(attnkit_command, monkeypatch):
    """One iterator, consumed lazily: each result is on stdout, in the kit's format, before
    the next check runs."""
    from attnkit import testing

    calls, printed = [], []
    iter_checks = testing.iter_checks

    def recording(*args, **kwargs):
        calls.append(args)
        for result in iter_checks(*args, **kwargs):
            yield result
            printed.append((result, sys.stdout.getvalue()))  # the command took it; next check

    monkeypatch.setattr(testing, "iter_checks", recording)
    skipped = ["compile", "to_device", "bfloat16", "gradients"]
    result = attnkit_command("check", "simple", *(f"--skip={name}" for name in skipped))
    assert result.returncode == 0, result.stderr
    assert len(calls) == 1, "the command asks the kit once, for every check"
    assert [r.check for r, _ in printed] == [check.name for check in CHECKS]
    for check_result, output_so_far in printed:
        assert output_so_far.endswith(check_result.format(width=80) + "\n")


# --- bench is wired lazily ------------------------------------------------------------------


def test_bench_is_imported_only_for_bench(attnkit_command, monkeypatch):
    for module in [m for m in sys.modules if m.split(".")[:2] == ["attnkit", "bench"]]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.delattr(attnkit, "bench", raising=False)
    assert attnkit_command("list", "causal").returncode == 0
    assert attnkit_command("check", "--help").returncode == 0
    assert "attnkit.bench" not in sys.modules


def test_without_attnkit_bench_only_bench_is_unavailable(attnkit_command, monkeypatch):
    monkeypatch.setitem(sys.modules, "attnkit.bench", None)  # as if the module were missing
    monkeypatch.delattr(attnkit, "bench", raising=False)
    result = attnkit_command("bench", "--quick")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "attnkit bench: error: attnkit bench is not available: cannot import attnkit.bench"
    )
    assert attnkit_command("show", "causal").returncode == 0
    assert attnkit_command("check", "--help").returncode == 0


# --- Reading --arg values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16", 16),
        ("-2", -2),
        ("0.25", 0.25),
        ("1e-3", 0.001),
        ("true", True),
        ("False", False),
        ("none", None),
        ("fused", "fused"),
        ("'16'", "16"),
        ('"a b"', "a b"),
        ("", ""),
    ],
)
def test_parse_value(text, value):
    parsed = _parse_value(text)
    assert parsed == value and type(parsed) is type(value)


# --- Smoke tests: the real command, in a process of its own ----------------------------------


def run_attnkit(
    *args: str, command: list[str] | None = None, folders: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run ``python -m attnkit ARGS`` (or ``command``) in an 80-column terminal."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ATTNKIT_")}
    environment["COLUMNS"] = "80"
    environment["PYTHONPATH"] = os.pathsep.join(str(DISTRIBUTIONS / f) for f in folders)
    return subprocess.run(
        [*(command or [sys.executable, "-m", "attnkit"]), *args],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=600,
    )


def test_python_m_attnkit_runs_the_command():
    result = run_attnkit("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: attnkit [-h] [--version] COMMAND ...")


def test_the_console_script_runs_the_command():
    script = shutil.which("attnkit", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the attnkit console script is not installed; make install installs it")
    result = run_attnkit("--version", command=[script])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"attnkit {attnkit.__version__}\n"


def test_a_failed_check_exits_1_from_a_process():
    result = run_attnkit("check", "lookahead", "--skip", "compile", folders=("broken",))
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^  FAIL  causality ", result.stdout, re.M)
    assert result.stdout.rstrip().splitlines()[-1] == "lookahead failed: causality"


def test_bad_usage_exits_2_from_a_process_without_a_traceback():
    result = run_attnkit("check", "causal", "--arg", "drop_out=0.1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("attnkit check: error: causal: unexpected keyword argument")
    assert "Traceback" not in result.stderr
