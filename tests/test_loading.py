"""The loading policy, with real installed distributions: failures, strict mode, selection.

The distributions in ``tests/distributions/`` (see its README) are installed by
putting their folder on ``sys.path``; ``importlib.metadata`` then finds their
``dist-info`` as it finds any installed package. attnkit-window, the example
plugin, is installed into the environment by ``make install`` as a regular
package. Nothing here mocks ``importlib``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import traceback
import types
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.errors import PluginLoadError, PluginLoadWarning
from tests.conftest import DISTRIBUTIONS
from tests.helpers import BUILTIN_VARIANTS, build, input_width


def plugin(name: str, distribution: str | None = None) -> attnkit.PluginInfo:
    return next(
        p
        for p in attnkit.list_plugins()
        if p.name == name and (distribution is None or p.distribution == distribution)
    )


def assert_usable(*names: str) -> None:
    """Each variant can be created and run."""
    for name in names:
        attention = build(name).eval()
        out = attention(torch.randn(2, 4, input_width(attention)))
        assert out.shape[:2] == (2, 4), name


# --- The example plugin, installed like a package from PyPI ------------------------------


def test_the_example_plugin_is_installed_as_a_regular_distribution():
    try:
        window = distribution("attnkit-window")
    except PackageNotFoundError as error:
        pytest.fail(
            f"attnkit-window is not installed ({error}); `make install` installs it from "
            f"examples/attnkit-window"
        )
    points = [p for p in window.entry_points if p.group == "attnkit"]
    assert [(p.name, p.value) for p in points] == [("window", "attnkit_window")]
    # A regular install: built, and copied into site-packages, not linked to the source.
    import attnkit_window

    source = Path(__file__).parent.parent / "examples" / "attnkit-window"
    assert source.resolve() not in Path(attnkit_window.__file__).resolve().parents
    direct_url = window.read_text("direct_url.json")
    if direct_url is not None:  # pip records where it came from
        assert not json.loads(direct_url).get("dir_info", {}).get("editable", False)


def test_the_example_plugin_is_discovered_through_its_entry_point():
    assert "window" in attnkit.list_variants()
    info = plugin("window")
    assert (info.distribution, info.version) == (
        "attnkit-window",
        distribution("attnkit-window").version,
    )
    assert info.variants == ("window",) and not info.builtin and info.error is None
    assert attnkit.get_variant("window").__module__ == "attnkit_window"
    assert_usable("window")


# --- Failures: warned about, naming plugin and distribution; everything else loads ------


def test_a_plugin_that_fails_to_import_is_skipped_with_a_warning(install):
    install("import_error", "good")
    with pytest.warns(PluginLoadWarning) as caught:
        attnkit.registry.reload_plugins()
    [warning] = caught
    message = str(warning.message)
    assert message.startswith(
        "attnkit: plugin 'import_error' (distribution attnkit-test-import-error 1.0) failed to "
        "import: ModuleNotFoundError: No module named 'attnkit_missing_dependency'."
    )
    assert "every other plugin loaded" in message and "ATTNKIT_STRICT_PLUGINS=1" in message
    info = plugin("import_error")
    assert info.error == "ModuleNotFoundError: No module named 'attnkit_missing_dependency'"
    assert info.variants == ()
    assert {*BUILTIN_VARIANTS, "uniform_good"} <= set(attnkit.list_variants())
    assert_usable(*BUILTIN_VARIANTS, "uniform_good")


def test_a_plugin_whose_hook_raises_registers_nothing(install):
    install("hook_error", "good")
    with pytest.warns(
        PluginLoadWarning,
        match=r"plugin 'hook_error' \(distribution attnkit-test-hook-error 2\.0\) failed in "
        r"its hooks: RuntimeError: the hook failed on purpose",
    ):
        attnkit.registry.reload_plugins()
    # It registered a variant before raising; that variant was rolled back.
    assert "half_registered" not in attnkit.list_variants()
    assert not attnkit.registry.plugin_manager().has_plugin("hook_error")
    assert plugin("hook_error").error == "RuntimeError: the hook failed on purpose"
    assert_usable(*BUILTIN_VARIANTS, "uniform_good")


def test_a_misspelled_hook_is_reported(install):
    install("misspelled")
    with pytest.warns(PluginLoadWarning) as caught:
        attnkit.registry.reload_plugins()
    [warning] = caught
    assert (
        "plugin 'misspelled' (distribution attnkit-test-misspelled 1.0) failed in its hooks: "
        "PluginValidationError: plugin 'misspelled' implements 'register_variant', "
        "which is not an attnkit hook; did you mean 'register_variants'?"
    ) in str(warning.message)
    assert "never_registered" not in attnkit.list_variants()
    assert not attnkit.registry.plugin_manager().has_plugin("misspelled")
    attnkit.registry.plugin_manager().check_pending()  # nothing unverified was left registered
    assert_usable(*BUILTIN_VARIANTS)


def test_a_duplicate_variant_name_across_distributions_keeps_the_first(install):
    install("good", "twin")
    with pytest.warns(PluginLoadWarning) as caught:
        attnkit.registry.reload_plugins()
    [warning] = caught
    message = str(warning.message)
    assert (
        "plugin 'twin' (distribution attnkit-test-twin 1.0) failed in its hooks: "
        "DuplicateVariantError: variant 'uniform_good' (attnkit_test_twin.AnotherUniformAttention)"
        " from plugin 'twin' is already registered by plugin 'good' (distribution "
        "attnkit-test-good 1.0) as attnkit_test_good.UniformAttention"
    ) in message
    assert attnkit.get_variant("uniform_good").__module__ == "attnkit_test_good"
    assert plugin("twin").error.startswith("DuplicateVariantError")
    assert_usable(*BUILTIN_VARIANTS, "uniform_good")


def test_a_duplicate_plugin_name_across_distributions_keeps_the_first(install):
    install("good", "namesake")
    with pytest.warns(
        PluginLoadWarning,
        match=r"plugin 'good' \(distribution attnkit-test-namesake 1\.0\) failed in its "
        r"hooks: ValueError: a plugin named 'good' is already registered by "
        r"distribution attnkit-test-good 1\.0",
    ):
        attnkit.registry.reload_plugins()
    assert "namesake" not in attnkit.list_variants()
    assert plugin("good", "attnkit-test-good").error is None
    assert plugin("good", "attnkit-test-namesake").error.startswith("ValueError")
    assert_usable("uniform_good")


def test_a_failed_plugin_does_not_block_a_later_plugin_of_the_same_name(install):
    install("import_error", "understudy")
    with pytest.warns(PluginLoadWarning, match="plugin 'import_error' .* failed to import"):
        attnkit.registry.reload_plugins()
    assert plugin("import_error", "attnkit-test-import-error").error is not None
    assert plugin("import_error", "attnkit-test-understudy").error is None
    assert_usable(*BUILTIN_VARIANTS, "understudy")


def test_a_plugin_calling_sys_exit_on_import_is_skipped(install):
    install("exits", "good")
    with pytest.warns(
        PluginLoadWarning,
        match=r"plugin 'exits' \(distribution attnkit-test-exits 1\.0\) failed to import: "
        r"SystemExit: 3",
    ):
        attnkit.registry.reload_plugins()
    assert plugin("exits").error == "SystemExit: 3"
    assert_usable(*BUILTIN_VARIANTS, "uniform_good")


def test_every_failure_is_reported_and_everything_else_loads(install):
    install("good", "import_error", "hook_error", "misspelled", "broken")
    with pytest.warns(PluginLoadWarning) as caught:
        attnkit.registry.reload_plugins()
    failed = sorted(str(w.message).split("'")[1] for w in caught)
    assert failed == ["hook_error", "import_error", "misspelled"]
    expected = {*BUILTIN_VARIANTS, "uniform_good", "lookahead", "unnormalised"}
    assert expected <= set(attnkit.list_variants())
    assert_usable(*BUILTIN_VARIANTS, "uniform_good", "lookahead")


# --- Strict mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_strict_mode_raises_chaining_the_import_error(install, monkeypatch, value):
    install("import_error")
    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", value)
    with pytest.raises(PluginLoadError) as error:
        attnkit.registry.reload_plugins()
    assert str(error.value) == (
        "attnkit: plugin 'import_error' (distribution attnkit-test-import-error 1.0) failed to "
        "import: ModuleNotFoundError: No module named 'attnkit_missing_dependency'"
    )
    cause = error.value.__cause__
    assert isinstance(cause, ModuleNotFoundError) and cause.name == "attnkit_missing_dependency"
    assert "attnkit_test_import_error.py" in "".join(traceback.format_exception(error.value))


def test_strict_mode_raises_chaining_the_hook_error(install, monkeypatch):
    install("hook_error")
    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'hook_error' .* RuntimeError") as error:
        attnkit.registry.reload_plugins()
    assert isinstance(error.value.__cause__, RuntimeError)
    frames = traceback.extract_tb(error.value.__cause__.__traceback__)
    assert frames[-1].filename.endswith("attnkit_test_hook_error.py")
    assert frames[-1].name == "register_variants"


def test_strict_mode_then_fixing_the_environment_loads_again(install, monkeypatch):
    install("import_error")
    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError):
        attnkit.registry.reload_plugins()
    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "0")  # not strict: warn and carry on
    with pytest.warns(PluginLoadWarning, match="import_error"):
        assert set(BUILTIN_VARIANTS) <= set(attnkit.list_variants())


# --- Choosing plugins: ATTNKIT_PLUGINS ---------------------------------------------------


def test_unset_loads_every_plugin(install):
    install("good")
    attnkit.registry.reload_plugins()
    assert {*BUILTIN_VARIANTS, "uniform_good", "window"} <= set(attnkit.list_variants())


def test_empty_loads_only_the_builtins(install, monkeypatch):
    install("good", "import_error")
    monkeypatch.setenv("ATTNKIT_PLUGINS", "")
    attnkit.registry.reload_plugins()  # the broken plugin is not even imported: no warning
    assert set(BUILTIN_VARIANTS) <= set(attnkit.list_variants())
    assert all(p.builtin for p in attnkit.list_plugins())
    assert all(
        attnkit.get_variant(n).plugin.startswith("attnkit.") for n in attnkit.list_variants()
    )
    assert "attnkit_test_import_error" not in sys.modules


@pytest.mark.parametrize(
    "selection", ["attnkit-test-good", " Attnkit_Test.Good , ", "attnkit-test-good,attnkit-window"]
)
def test_a_list_loads_those_distributions(install, monkeypatch, selection):
    install("good", "import_error")
    monkeypatch.setenv("ATTNKIT_PLUGINS", selection)
    attnkit.registry.reload_plugins()
    names = set(attnkit.list_variants())
    assert {*BUILTIN_VARIANTS, "uniform_good"} <= names
    assert ("window" in names) == ("window" in selection)
    assert "attnkit_test_import_error" not in sys.modules


def test_an_unknown_name_warns_and_the_rest_load(install, monkeypatch):
    install("good")
    monkeypatch.setenv("ATTNKIT_PLUGINS", "attnkit-test-good,attnkit-nope")
    with pytest.warns(PluginLoadWarning) as caught:
        attnkit.registry.reload_plugins()
    [warning] = caught
    message = str(warning.message)
    assert message.startswith(
        "attnkit: ATTNKIT_PLUGINS names 'attnkit-nope', which is not an installed attnkit "
        "plugin distribution; installed: "
    )
    assert "attnkit-test-good" in message.split("installed: ")[1]
    assert {*BUILTIN_VARIANTS, "uniform_good"} <= set(attnkit.list_variants())


def test_the_builtins_load_whatever_the_list_says(install, monkeypatch):
    monkeypatch.setenv("ATTNKIT_PLUGINS", "attnkit-window")
    attnkit.registry.reload_plugins()
    assert set(BUILTIN_VARIANTS) <= set(attnkit.list_variants())
    assert [p.distribution for p in attnkit.list_plugins() if not p.builtin] == ["attnkit-window"]
    assert_usable(*BUILTIN_VARIANTS)


def run_python(code: str, *folders: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ATTNKIT_")}
    environment["PYTHONPATH"] = os.pathsep.join(str(DISTRIBUTIONS / f) for f in folders)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**environment, **env},
        check=False,
    )


def test_variables_are_read_when_plugins_load_not_at_import():
    result = run_python(
        """
        import os
        import attnkit
        os.environ["ATTNKIT_PLUGINS"] = ""
        print(all(p.builtin for p in attnkit.list_plugins()))
        os.environ["ATTNKIT_PLUGINS"] = "attnkit-test-good"
        attnkit.registry.reload_plugins()
        print("uniform_good" in attnkit.list_variants())
        """,
        "good",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["True", "True"]


def test_a_plugin_that_raises_on_import_leaves_a_fresh_process_usable():
    result = run_python(
        """
        import torch, attnkit
        from attnkit._arguments import standard_arguments
        for name in attnkit.list_variants():
            cls = attnkit.get_variant(name)
            attention = cls(**standard_arguments(cls, caller="test"))
            attention(torch.rand(3, attention.d_in or 4))
            print(name)
        """,
        "import_error",
        "good",
    )
    assert result.returncode == 0, result.stderr
    assert "PluginLoadWarning: attnkit: plugin 'import_error'" in result.stderr
    assert {*BUILTIN_VARIANTS, "uniform_good"} <= set(result.stdout.split())


def test_entry_points_of_the_fixtures_are_real_metadata(install):
    install("good")
    [point] = [p for p in entry_points(group="attnkit") if p.name == "good"]
    assert point.value == "attnkit_test_good"
    assert point.dist.metadata["Name"] == "attnkit-test-good"


# --- Plugins that misbehave inside their hook -------------------------------------------------


def registry_state() -> tuple:
    """Everything a failed plugin must leave as it found it."""
    variants = {name: attnkit.get_variant(name) for name in attnkit.list_variants()}
    owners = {name: cls.plugin for name, cls in variants.items()}
    plugins = sorted((p.name, p.variants, p.error) for p in attnkit.list_plugins())
    return variants, owners, plugins


def test_a_hook_calling_sys_exit_is_contained_like_any_failure(install):
    install("hook_exits", "good")
    with pytest.warns(
        PluginLoadWarning,
        match=r"plugin 'hook_exits' \(distribution attnkit-test-hook-exits 1\.0\) failed in "
        r"its hooks: SystemExit: 4",
    ):
        attnkit.registry.reload_plugins()
    assert "before_exit" not in attnkit.list_variants()
    assert_usable(*BUILTIN_VARIANTS, "uniform_good")


def test_a_hook_calling_sys_exit_raises_in_strict_mode(install, monkeypatch):
    install("hook_exits")
    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="SystemExit: 4") as error:
        attnkit.registry.reload_plugins()
    assert isinstance(error.value.__cause__, SystemExit)


def test_reloading_from_a_hook_is_refused_naming_the_plugin(install):
    install("reloads")
    with pytest.warns(PluginLoadWarning) as caught:
        attnkit.registry.reload_plugins()
    message = str(caught[0].message)
    assert "plugin 'reloads' (distribution attnkit-test-reloads 1.0)" in message
    assert "called attnkit.registry.reload_plugins() from its hook" in message
    assert_usable(*BUILTIN_VARIANTS)
    assert attnkit.list_plugins()  # the registry is whole, not None inside


def test_a_failed_plugin_undoes_what_it_did_by_every_route(install):
    attnkit.registry.reload_plugins()
    before = registry_state()
    install("meddles")
    with pytest.warns(PluginLoadWarning, match="the meddling hook failed on purpose"):
        attnkit.registry.reload_plugins()
    variants, owners, plugins = registry_state()
    assert variants == before[0]
    assert owners == before[1]
    assert [
        p for p in plugins if p[0] != "meddles" and not p[0].startswith("plugin 'meddles'")
    ] == before[2]
    assert not attnkit.registry.plugin_manager().has_plugin("stowaway_plugin")
    assert_usable("simple")


def test_a_failed_in_process_plugin_undoes_what_it_did(fresh_registry):
    before = registry_state()
    module = types.ModuleType("meddling_in_process")
    intruder = type(
        "Intruder", (attnkit.Attention,), {"name": "intruder", "forward": lambda s, x: x}
    )

    @attnkit.hookimpl
    def register_variants(register):
        attnkit.register(intruder)
        attnkit.unregister("causal")
        raise RuntimeError("fails after meddling")

    module.register_variants = register_variants
    with pytest.raises(RuntimeError, match="fails after meddling"):
        attnkit.registry.register_plugin(module)
    assert registry_state() == before
    assert "plugin" not in intruder.__dict__


def test_a_register_callback_kept_past_the_hook_raises(install):
    install("keeps_register")
    attnkit.registry.reload_plugins()
    import attnkit_test_keeps_register as plugin_module

    late = plugin_module.Latecomer
    with pytest.raises(attnkit.PluginError) as error:
        plugin_module.kept[0](late)
    message = str(error.value)
    assert "plugin 'keeps_register' (distribution attnkit-test-keeps-register 1.0)" in message
    assert "after its register_variants hook returned" in message
    assert "attnkit.register(...)" in message
    assert "latecomer" not in attnkit.list_variants()
    assert "on_time" in attnkit.list_variants()


def test_a_plugin_that_registers_nothing_is_reported(install):
    install("returns")
    with pytest.warns(PluginLoadWarning) as caught:
        attnkit.registry.reload_plugins()
    message = str(caught[0].message)
    assert (
        "plugin 'returns' (distribution attnkit-test-returns 1.0) loaded but registered nothing"
        in (message)
    )
    assert (
        "returned [<class 'attnkit_test_returns.Returned'>] instead of calling register(...)"
        in (message)
    )
    assert plugin("returns").error is None


def test_a_plugin_that_registers_nothing_raises_in_strict_mode(install, monkeypatch):
    install("returns")
    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="registered nothing"):
        attnkit.registry.reload_plugins()


def test_an_in_process_hook_calling_sys_exit_raises_an_error(fresh_registry):
    module = types.ModuleType("exits_in_process")

    @attnkit.hookimpl
    def register_variants(register):
        sys.exit(5)

    module.register_variants = register_variants
    with pytest.raises(attnkit.PluginError, match=r"raised SystemExit\(5\)") as error:
        attnkit.registry.register_plugin(module)
    assert isinstance(error.value.__cause__, SystemExit)
    assert "exits_in_process" not in [p.name for p in attnkit.list_plugins()]
