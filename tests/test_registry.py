"""The registry's public functions and every error a user can hit through them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pluggy
import pytest
import torch

import attnkit
from attnkit.registry import LOCAL_PLUGIN
from tests.helpers import BUILTIN_VARIANTS


def make_variant(name: str, *, doc: str = "A test variant.", causal: bool = False):
    """A minimal working variant class named ``name`` (uniform attention)."""

    def forward(self, x, need_weights=False):
        tokens = x.shape[1]
        weights = x.new_full((x.shape[0], 1, tokens, tokens), 1 / tokens)
        context = weights[:, 0] @ x
        return (context, weights) if need_weights else context

    return type(
        f"Variant_{name}",
        (attnkit.Attention,),
        {"__doc__": doc, "name": name, "causal": causal, "forward": forward},
    )


def plugin_module(name: str, *classes) -> types.ModuleType:
    """A plugin module, built in memory, whose hook registers ``classes``."""
    module = types.ModuleType(name)

    @attnkit.hookimpl
    def register_variants(register):
        for cls in classes:
            register(cls)

    module.register_variants = register_variants
    return module


# --- Listing and lookup ---------------------------------------------------------


def test_list_variants_is_sorted_and_has_the_builtins():
    names = attnkit.list_variants()
    assert names == sorted(names)
    assert set(BUILTIN_VARIANTS) <= set(names)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("multihead*", ["multihead", "multihead_wrapper"]),
        ("*attention", ["self_attention"]),
        ("s*", ["self_attention", "simple"]),
        ("?imple", ["simple"]),
        ("[cm]*", ["causal", "mla", "multihead", "multihead_wrapper"]),
        ("Causal", []),
        ("nothing*", []),
    ],
)
def test_list_variants_filters_with_fnmatch(pattern, expected):
    assert [n for n in attnkit.list_variants(pattern) if n in BUILTIN_VARIANTS] == expected


def test_get_variant_carries_metadata_and_plugin():
    cls = attnkit.get_variant("multihead")
    assert issubclass(cls, attnkit.Attention)
    assert (cls.name, cls.stage, cls.causal) == ("multihead", 4, True)
    assert cls.plugin == "attnkit.multihead"
    assert cls.summary == (
        "Efficient causal multi-head attention: one projection each for Q, K, V, split into heads."
    )


def test_unknown_name_suggests_close_matches_and_lists_what_is_available():
    with pytest.raises(KeyError) as error:
        attnkit.get_variant("multihaed")
    assert isinstance(error.value, attnkit.UnknownVariantError)
    message = str(error.value)
    assert message.startswith("unknown attention variant 'multihaed'; did you mean 'multihead'")
    assert f"Available: {', '.join(attnkit.list_variants())}" in message
    assert message.endswith(", ".join(attnkit.list_variants()))
    assert error.value.name == "multihaed"
    assert "causal" in error.value.available


def test_unknown_name_suggests_a_different_case():
    with pytest.raises(attnkit.UnknownVariantError, match="did you mean 'causal'"):
        attnkit.create("CAUSAL")


def test_unknown_name_without_close_match_still_lists_available():
    with pytest.raises(attnkit.UnknownVariantError) as error:
        attnkit.get_variant("zzz")
    assert "did you mean" not in str(error.value)
    assert "Available: causal" in str(error.value)


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match="a variant name must be a str, got int"):
        attnkit.get_variant(3)


# --- create -----------------------------------------------------------------------


def test_create_builds_the_registered_class():
    attention = attnkit.create("causal", d_in=3, d_out=2, context_length=6)
    assert type(attention) is attnkit.get_variant("causal")


def test_create_names_an_unexpected_argument_and_lists_the_accepted_ones():
    with pytest.raises(TypeError) as error:
        attnkit.create("causal", d_in=3, d_out=2, context_length=6, drop_out=0.1)
    assert str(error.value) == (
        "create('causal'): unexpected keyword argument 'drop_out' (did you mean 'dropout'?). "
        "causal accepts: d_in, d_out, context_length, dropout=0.0, qkv_bias=False, "
        "kernel='sdpa'"
    )


def test_create_names_missing_arguments():
    with pytest.raises(TypeError) as error:
        attnkit.create("multihead", d_in=3)
    assert str(error.value).startswith(
        "create('multihead'): missing required arguments 'd_out', 'context_length', 'num_heads'."
    )


def test_create_checks_arguments_before_constructing(fresh_registry):
    constructed = []

    class Counting(make_variant("counting")):
        name = "counting"

        def __init__(self, width: int) -> None:
            constructed.append(width)
            super().__init__(d_in=width)

    attnkit.register(Counting)
    with pytest.raises(TypeError, match="unexpected keyword argument 'wdith'"):
        attnkit.create("counting", wdith=3)
    assert constructed == []
    attnkit.create("counting", width=3)
    assert constructed == [3]


def test_create_passes_anything_to_a_variant_taking_kwargs(fresh_registry):
    class Flexible(make_variant("flexible")):
        name = "flexible"

        def __init__(self, **options) -> None:
            super().__init__()
            self.options = options

    attnkit.register(Flexible)
    assert attnkit.create("flexible", anything=1).options == {"anything": 1}


# --- In-process registration ----------------------------------------------------------


def test_register_works_as_a_decorator(fresh_registry):
    @attnkit.register
    class Uniform(attnkit.Attention):
        """Uniform attention, registered in a notebook."""

        name = "uniform"

        def forward(self, x, need_weights=False):
            tokens = x.shape[1]
            weights = x.new_full((x.shape[0], 1, tokens, tokens), 1 / tokens)
            return (weights[:, 0] @ x, weights) if need_weights else weights[:, 0] @ x

    assert attnkit.get_variant("uniform") is Uniform
    assert Uniform.plugin == LOCAL_PLUGIN
    assert Uniform.summary == "Uniform attention, registered in a notebook."
    assert "uniform" in attnkit.list_variants()
    x = torch.randn(4, 3)
    torch.testing.assert_close(attnkit.create("uniform")(x), x.mean(0).expand(4, 3))
    assert "uniform" in next(p for p in attnkit.list_plugins() if p.name == LOCAL_PLUGIN).variants


def test_registering_a_taken_name_raises_naming_both_plugins(fresh_registry):
    clash = make_variant("causal")
    with pytest.raises(attnkit.DuplicateVariantError) as error:
        attnkit.register(clash)
    message = str(error.value)
    assert "test_registry.Variant_causal as 'causal': that name is already" in message
    assert "plugin 'attnkit.causal' (distribution attnkit " in message
    assert "attnkit_builtins.causal.CausalAttention" in message
    assert attnkit.get_variant("causal").__module__ == "attnkit_builtins.causal"


def test_redefining_a_class_in_a_notebook_replaces_it(fresh_registry):
    first = make_variant("redefined")
    attnkit.register(first)
    second = make_variant("redefined")  # same module and qualname, as when a cell re-runs
    attnkit.register(second)
    assert attnkit.get_variant("redefined") is second


def test_a_different_local_class_cannot_take_a_local_name(fresh_registry):
    attnkit.register(make_variant("taken"))

    class Other(make_variant("other")):
        name = "taken"

    with pytest.raises(attnkit.DuplicateVariantError, match="plugin 'local'"):
        attnkit.register(Other)


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (torch.nn.Linear, "only attnkit.Attention subclasses can be registered"),
        ("causal", "only attnkit.Attention subclasses can be registered, got 'causal'"),
        (type("Nameless", (attnkit.Attention,), {}), "must set its own class attribute 'name'"),
        (
            type("Spaced", (attnkit.Attention,), {"name": "my attention"}),
            "must be a non-empty string without spaces",
        ),
        (
            type("Starred", (attnkit.Attention,), {"name": "multi*"}),
            "pattern characters",
        ),
        (
            type("NoForward", (attnkit.Attention,), {"name": "no_forward"}),
            "must implement forward",
        ),
    ],
)
def test_invalid_variants_are_refused(fresh_registry, candidate, message):
    with pytest.raises(attnkit.InvalidVariantError, match=message):
        attnkit.register(candidate)


def test_a_subclass_must_not_inherit_its_parents_name(fresh_registry):
    class Tweaked(attnkit.get_variant("causal")):
        """Causal attention with a tweak."""

    with pytest.raises(attnkit.InvalidVariantError, match="it inherits 'causal'"):
        attnkit.register(Tweaked)


def test_unregister_removes_a_variant(fresh_registry):
    attnkit.register(make_variant("temporary"))
    assert attnkit.unregister("temporary").name == "temporary"
    assert "temporary" not in attnkit.list_variants()
    with pytest.raises(attnkit.UnknownVariantError):
        attnkit.unregister("temporary")


# --- Plugins registered through the hook, in-process -------------------------------


def test_a_plugin_registers_variants_through_the_hook(fresh_registry):
    first, second = make_variant("first"), make_variant("second", causal=True)
    name = attnkit.registry.register_plugin(plugin_module("my_plugin", first, second))
    assert name == "my_plugin"
    assert attnkit.get_variant("first") is first and first.plugin == "my_plugin"
    assert attnkit.get_variant("second").causal
    info = next(p for p in attnkit.list_plugins() if p.name == "my_plugin")
    assert info.variants == ("first", "second")
    assert info.error is None and not info.builtin
    assert attnkit.registry.plugin_manager().has_plugin("my_plugin")


def test_a_hook_may_take_fewer_arguments_than_the_spec(fresh_registry):
    module = types.ModuleType("quiet_plugin")

    @attnkit.hookimpl
    def register_variants():
        pass

    module.register_variants = register_variants
    with pytest.warns(attnkit.PluginLoadWarning, match="loaded but registered nothing"):
        attnkit.registry.register_plugin(module)
    assert next(p for p in attnkit.list_plugins() if p.name == "quiet_plugin").variants == ()


def test_a_plugin_clashing_with_another_raises_naming_both(fresh_registry):
    attnkit.registry.register_plugin(plugin_module("plugin_a", make_variant("shared")))
    with pytest.raises(attnkit.DuplicateVariantError) as error:
        attnkit.registry.register_plugin(plugin_module("plugin_b", make_variant("shared")))
    message = str(error.value)
    assert "from plugin 'plugin_b' is already registered by plugin 'plugin_a'" in message


def test_a_failing_plugin_registers_nothing(fresh_registry):
    """A plugin's variants are registered all together or not at all."""
    module = types.ModuleType("half_broken")
    good = make_variant("good_half")

    @attnkit.hookimpl
    def register_variants(register):
        register(good)
        raise RuntimeError("broken after the first variant")

    module.register_variants = register_variants
    with pytest.raises(RuntimeError, match="broken after the first variant"):
        attnkit.registry.register_plugin(module)
    assert "good_half" not in attnkit.list_variants()
    assert not attnkit.registry.plugin_manager().has_plugin("half_broken")
    assert good.plugin is None
    # The name is free again: a fixed plugin can load.
    attnkit.registry.register_plugin(plugin_module("half_broken", good))


def test_a_plugin_registering_one_name_twice_is_refused(fresh_registry):
    with pytest.raises(attnkit.DuplicateVariantError, match="registers two variants named 'twice'"):
        attnkit.registry.register_plugin(
            plugin_module("stutter", make_variant("twice"), make_variant("twice"))
        )


def test_a_misspelled_hook_is_reported(fresh_registry):
    module = types.ModuleType("typo_plugin")

    @attnkit.hookimpl
    def register_variant(register):
        register(make_variant("never"))

    module.register_variant = register_variant
    with pytest.raises(pluggy.PluginValidationError) as error:
        attnkit.registry.register_plugin(module)
    assert "implements 'register_variant', which is not an attnkit hook" in str(error.value)
    assert "did you mean 'register_variants'?" in str(error.value)
    assert not attnkit.registry.plugin_manager().has_plugin("typo_plugin")


def test_a_plugin_without_hookimpl_is_reported(fresh_registry):
    module = types.ModuleType("undecorated")
    module.register_variants = lambda register: register(make_variant("never"))
    with pytest.raises(
        pluggy.PluginValidationError,
        match="mark its register_variants or register_kernels function",
    ):
        attnkit.registry.register_plugin(module)


def test_unregister_plugin_removes_its_variants(fresh_registry):
    attnkit.registry.register_plugin(plugin_module("removable", make_variant("gone")))
    attnkit.registry.unregister_plugin("removable")
    assert "gone" not in attnkit.list_variants()
    assert not attnkit.registry.plugin_manager().has_plugin("removable")
    with pytest.raises(KeyError, match="no plugin named 'removable'"):
        attnkit.registry.unregister_plugin("removable")


def test_unregister_plugin_removes_its_kernels(fresh_registry):
    module = types.ModuleType("kernel_plugin")
    kernel = attnkit.Kernel("passing", attnkit.get_kernel("explicit").function)

    @attnkit.hookimpl
    def register_kernels(register):
        register(kernel)

    module.register_kernels = register_kernels
    attnkit.registry.register_plugin(module)
    assert attnkit.get_kernel("passing").plugin == "kernel_plugin"
    attnkit.registry.unregister_plugin("kernel_plugin")
    assert "passing" not in attnkit.list_kernels()
    with pytest.raises(attnkit.UnknownKernelError):
        attnkit.get_kernel("passing")


def test_reload_plugins_forgets_local_variants(fresh_registry):
    attnkit.register(make_variant("forgotten"))
    attnkit.registry.reload_plugins()
    assert "forgotten" not in attnkit.list_variants()
    assert set(BUILTIN_VARIANTS) <= set(attnkit.list_variants())


def test_builtins_come_from_entry_points_like_any_plugin():
    builtins = [p for p in attnkit.list_plugins() if p.builtin]
    assert {p.distribution for p in builtins} == {"attnkit"}
    assert sorted(v for p in builtins for v in p.variants) == BUILTIN_VARIANTS
    assert all(p.version == attnkit.__version__ for p in builtins)


# --- Lazy loading ---------------------------------------------------------------------------


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_plugins_load_on_first_use_not_at_import():
    result = run_python(
        """
        import sys
        import attnkit
        assert not any(m.startswith("attnkit_builtins") for m in sys.modules), "loaded at import"
        attnkit.list_variants()
        assert "attnkit_builtins.causal" in sys.modules
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_issue_one_liner_prints_exactly_the_builtins():
    # With no third-party plugin selected, exactly the built-ins are registered.
    result = run_python("import attnkit; print(attnkit.list_variants())", ATTNKIT_PLUGINS="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(BUILTIN_VARIANTS)


# --- create_from_config ------------------------------------------------------------


MODEL_CONFIG = {"d_in": 8, "d_out": 8, "context_length": 16, "num_heads": 2, "dropout": 0.1}


@pytest.mark.parametrize("name", ["causal", "multihead", "multihead_wrapper", "self_attention"])
def test_create_from_config_passes_what_each_variant_accepts(name):
    attention = attnkit.create_from_config(name, MODEL_CONFIG)
    assert attention.name == name
    assert attention.d_in == 8


def test_create_from_config_refuses_a_key_no_variant_accepts():
    with pytest.raises(TypeError) as error:
        attnkit.create_from_config("causal", {**MODEL_CONFIG, "drop_out": 0.1})
    assert str(error.value) == (
        "create_from_config('causal'): no registered variant accepts 'drop_out' "
        "(did you mean 'dropout'?); pass ignore=['drop_out'] if it belongs to something else"
    )


def test_create_from_config_drops_ignored_keys():
    config = {**MODEL_CONFIG, "emb_dim": 8, "n_layers": 2}
    attention = attnkit.create_from_config("multihead", config, ignore=["emb_dim", "n_layers"])
    assert attention.num_heads == 2


def test_create_from_config_still_names_missing_arguments():
    with pytest.raises(TypeError, match="missing required argument 'context_length'"):
        attnkit.create_from_config("causal", {"d_in": 8, "d_out": 8})


def test_create_from_config_knows_keys_of_variants_registered_later(fresh_registry):
    class Windowed(make_variant("windowed_cfg")):
        name = "windowed_cfg"

        def __init__(self, d_in: int, stride_cfg: int = 4) -> None:
            super().__init__(d_in=d_in)
            self.stride_cfg = stride_cfg

    with pytest.raises(TypeError, match="no registered variant accepts 'stride_cfg'"):
        attnkit.create_from_config("causal", {**MODEL_CONFIG, "stride_cfg": 3})
    attnkit.register(Windowed)
    config = {**MODEL_CONFIG, "stride_cfg": 3}
    assert attnkit.create_from_config("windowed_cfg", config).stride_cfg == 3
    assert attnkit.create_from_config("causal", config).name == "causal"


def test_output_dim():
    assert (
        attnkit.create(
            "multihead_wrapper", d_in=3, d_out=2, context_length=4, num_heads=3
        ).output_dim
        == 6
    )
    assert (
        attnkit.create("multihead", d_in=3, d_out=6, context_length=4, num_heads=3).output_dim == 6
    )
    assert attnkit.create("simple").output_dim is None
