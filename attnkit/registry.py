"""The registry: register, list, look up and create attention variants by name.

Plugins load lazily, once, the first time anything here is asked for, not at
``import attnkit``. Each plugin registers all of its variants or none: if its
import or its hook fails, nothing it registered is kept, the failure is
reported (see `attnkit._loader` for the policy) and every other plugin loads.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import Any, TypeVar

import pluggy

from attnkit import _loader as loader
from attnkit import hookspecs
from attnkit._arguments import (
    accepted_arguments,
    accepts_any_argument,
    check_arguments,
    filter_arguments,
)
from attnkit._suggest import did_you_mean
from attnkit.errors import (
    DuplicateKernelError,
    DuplicateVariantError,
    InvalidVariantError,
    PluginError,
    UnknownKernelError,
    UnknownVariantError,
)
from attnkit.interface import Attention
from attnkit.kernel import Kernel

__all__ = [
    "LOCAL_PLUGIN",
    "PluginInfo",
    "create",
    "create_from_config",
    "get_kernel",
    "get_plugin",
    "get_variant",
    "list_kernels",
    "list_plugins",
    "list_variants",
    "plugin_manager",
    "register",
    "register_plugin",
    "reload_plugins",
    "unregister",
    "unregister_plugin",
]

LOCAL_PLUGIN = "local"
"""The ``plugin`` of variants registered in-process with `register`."""

AttentionClass = TypeVar("AttentionClass", bound=type[Attention])


@dataclass(frozen=True)
class PluginInfo:
    """A plugin attnkit knows of: loaded, or failed to load.

    Attributes:
        name: The plugin's name (its entry-point name, for installed plugins).
        distribution: The distribution that installed it, or ``None`` if it was
            registered in-process.
        version: That distribution's version, or ``None``.
        builtin: Whether it ships with attnkit.
        variants: The names of the variants it registered.
        kernels: The names of the kernels it registered.
        error: Why it failed to load, or ``None`` if it loaded.
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    variants: tuple[str, ...] = ()
    error: str | None = None
    kernels: tuple[str, ...] = ()

    def describe(self) -> str:
        """``plugin 'name' (distribution dist 1.0)``, or ``plugin 'name'`` for an in-process one."""
        if self.distribution is None:
            return f"plugin {self.name!r}"
        return f"plugin {self.name!r} (distribution {self.distribution} {self.version})"


class _Registry:
    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("attnkit")
        self.manager.add_hookspecs(hookspecs)
        self.variants: dict[str, type[Attention]] = {}
        self.kernels: dict[str, Kernel] = {}
        self.plugins: dict[str, PluginInfo] = {}
        # The plugins whose hooks are running now, innermost last.
        self.loading: list[PluginInfo] = []

    def load_installed(self) -> None:
        for source in loader.discover():
            info = PluginInfo(source.name, source.distribution, source.version, source.builtin)
            # A failure is kept on record under a key of its own, so that it never blocks
            # another distribution's plugin of the same name.
            failure_key = info.describe()
            stage = "to import"
            try:
                plugin = source.load()
                stage = "in its hooks"
                self.add_plugin(plugin, info)
            # A plugin that calls sys.exit() (or raises any other BaseException) must not end
            # the host program; only the user's own Ctrl-C goes through.
            except KeyboardInterrupt:
                raise
            except BaseException as error:
                self.plugins[failure_key] = _failed(info, error)
                loader.report_failure(info.describe(), stage, error)

    def add_plugin(self, plugin: object, info: PluginInfo) -> None:
        """Register ``plugin`` with pluggy and call its hook; on any error, undo everything.

        "Everything" includes what the hook did to the registry by other routes
        (`register`, `register_plugin`, `unregister`): the registry is restored to
        the snapshot taken before the plugin was touched.
        """
        existing = self.plugins.get(info.name)
        if self.manager.has_plugin(info.name) or existing is not None:
            where = ""
            if existing is not None and existing.distribution is not None:
                where = f" by distribution {existing.distribution} {existing.version}"
            raise ValueError(
                f"a plugin named {info.name!r} is already registered{where}; "
                f"plugin names must be unique"
            )
        snapshot = self._snapshot()
        registrars = {hook: _Registrar(self, info, hook) for hook in _HOOKS}
        returned: list[object] = []
        self.loading.append(info)
        try:
            self.manager.register(plugin, name=info.name)
            self._check_hooks(plugin, info.name)
            others = [p for p in self.manager.get_plugins() if p is not plugin]
            for hook, register in registrars.items():
                call = self.manager.subset_hook_caller(hook, remove_plugins=others)
                returned += call(register=register)
                register.close()
            variants = registrars["register_variants"].staged
            kernels = registrars["register_kernels"].staged
            for name, cls in variants.items():
                self._check_free(name, cls, info.name)
            for name in kernels:
                self._check_free_kernel(name, info.name)
            for name, cls in variants.items():
                cls.plugin = info.name
                self.variants[name] = cls
            for name, kernel in kernels.items():
                self.kernels[name] = _replace(kernel, plugin=info.name)
            self.plugins[info.name] = _replace(
                info, variants=tuple(variants), kernels=tuple(kernels)
            )
        except BaseException:
            for register in registrars.values():
                register.close()
            self._restore(snapshot)
            raise
        finally:
            self.loading.pop()
        if not variants and not kernels:
            loader.report_empty(info.describe(), _why_empty(returned))

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(
            variants=dict(self.variants),
            kernels=dict(self.kernels),
            plugins=dict(self.plugins),
            pluggy_plugins=dict(self.manager.list_name_plugin()),
            owners={cls: cls.__dict__.get("plugin", _UNSET) for cls in self.variants.values()},
        )

    def _restore(self, snapshot: _Snapshot) -> None:
        for cls in {*self.variants.values(), *snapshot.variants.values()}:
            owner = snapshot.owners.get(cls, _UNSET)
            if owner is _UNSET:
                if "plugin" in cls.__dict__:
                    del cls.plugin
            else:
                cls.plugin = owner
        self.variants.clear()
        self.variants.update(snapshot.variants)
        self.kernels.clear()
        self.kernels.update(snapshot.kernels)
        self.plugins.clear()
        self.plugins.update(snapshot.plugins)
        current = dict(self.manager.list_name_plugin())
        for name, plugin in current.items():
            if snapshot.pluggy_plugins.get(name) is not plugin:
                self.manager.unregister(plugin, name=name)
        for name, plugin in snapshot.pluggy_plugins.items():
            if not self.manager.has_plugin(name):
                self.manager.register(plugin, name=name)

    def _check_hooks(self, plugin: object, plugin_name: str) -> None:
        callers = self.manager.get_hookcallers(plugin) or []
        for caller in callers:
            if not caller.has_spec():
                hint = did_you_mean(caller.name, _HOOKS)
                hint = f"; {hint}" if hint else ""
                raise pluggy.PluginValidationError(
                    plugin,
                    f"plugin {plugin_name!r} implements {caller.name!r}, which is not an attnkit "
                    f"hook{hint} The hooks are: {', '.join(_HOOKS)}",
                )
        if not callers:
            raise pluggy.PluginValidationError(
                plugin,
                f"plugin {plugin_name!r} implements no attnkit hook; mark its "
                f"{' or '.join(_HOOKS)} function with @attnkit.hookimpl",
            )

    def _check_free(self, name: str, cls: type[Attention], plugin_name: str) -> None:
        if name in self.variants:
            raise DuplicateVariantError(
                f"variant {name!r} ({_qualname(cls)}) from plugin {plugin_name!r} is already "
                f"registered by {self.describe_plugin(self.variants[name])} as "
                f"{_qualname(self.variants[name])}; each name can be registered once"
            )

    def _check_free_kernel(self, name: str, plugin_name: str) -> None:
        if name in self.kernels:
            raise DuplicateKernelError(
                f"kernel {name!r} from plugin {plugin_name!r} is already registered by "
                f"{self.describe_plugin(self.kernels[name])}; each name can be registered once"
            )

    def describe_plugin(self, item: type[Attention] | Kernel) -> str:
        info = self.plugins.get(item.plugin or "")
        return (info or PluginInfo(str(item.plugin))).describe()

    def register_local_kernel(self, kernel: Kernel) -> None:
        name = _validated_kernel_name(kernel)
        existing = self.kernels.get(name)
        if existing is not None and existing.plugin != LOCAL_PLUGIN:
            raise DuplicateKernelError(
                f"cannot register kernel {name!r}: that name is already registered by "
                f"{self.describe_plugin(existing)}; choose another name"
            )
        self.kernels[name] = _replace(kernel, plugin=LOCAL_PLUGIN)
        local = self.plugins.get(LOCAL_PLUGIN, PluginInfo(LOCAL_PLUGIN))
        kernels = (*(k for k in local.kernels if k != name), name)
        self.plugins[LOCAL_PLUGIN] = _replace(local, kernels=kernels)

    def register_local(self, cls: type[Attention]) -> None:
        name = _validated_name(cls)
        existing = self.variants.get(name)
        # Re-running a notebook cell defines the class anew; let it replace itself.
        redefinition = (
            existing is not None
            and existing.plugin == LOCAL_PLUGIN
            and _qualname(existing) == _qualname(cls)
        )
        if existing is not None and not redefinition:
            raise DuplicateVariantError(
                f"cannot register {_qualname(cls)} as {name!r}: that name is already "
                f"registered by {self.describe_plugin(existing)} as {_qualname(existing)}; "
                f"choose another name"
            )
        cls.plugin = LOCAL_PLUGIN
        self.variants[name] = cls
        local = self.plugins.get(LOCAL_PLUGIN, PluginInfo(LOCAL_PLUGIN))
        variants = (*(v for v in local.variants if v != name), name)
        self.plugins[LOCAL_PLUGIN] = _replace(local, variants=variants)

    def remove_variant(self, name: str) -> type[Attention]:
        cls = self.variants.pop(name)
        info = self.plugins.get(cls.plugin or "")
        if info is not None:
            self.plugins[info.name] = _replace(
                info, variants=tuple(v for v in info.variants if v != name)
            )
        if "plugin" in cls.__dict__:
            del cls.plugin
        return cls


class _Registrar:
    """The ``register`` callback one plugin's hook receives; usable only while the hook runs."""

    def __init__(self, registry: _Registry, info: PluginInfo, hook: str) -> None:
        self._registry = registry
        self._info = info
        self._hook = hook
        self.staged: dict[str, Any] = {}
        self._open = True

    def close(self) -> None:
        self._open = False

    def __call__(self, item: Any) -> Any:
        if not self._open:
            raise PluginError(
                f"{self._info.describe()} called its register callback after its {self._hook} "
                f"hook returned, so nothing was registered; call register(...) while the hook "
                f"runs, or attnkit.register(...) to add one in-process later"
            )
        if self._hook == "register_kernels":
            name = _validated_kernel_name(item)
            if name in self.staged:
                raise DuplicateKernelError(
                    f"plugin {self._info.name!r} registers two kernels named {name!r}"
                )
            self._registry._check_free_kernel(name, self._info.name)
        else:
            name = _validated_name(item)
            if name in self.staged:
                raise DuplicateVariantError(
                    f"plugin {self._info.name!r} registers two variants named {name!r}: "
                    f"{_qualname(self.staged[name])} and {_qualname(item)}"
                )
            self._registry._check_free(name, item, self._info.name)
        self.staged[name] = item
        return item


_HOOKS = ("register_variants", "register_kernels")

_UNSET = object()


@dataclass(frozen=True)
class _Snapshot:
    variants: dict[str, type[Attention]]
    kernels: dict[str, Kernel]
    plugins: dict[str, PluginInfo]
    pluggy_plugins: dict[str, object]
    owners: dict[type[Attention], object]


def _why_empty(returned: list[object]) -> str:
    if returned:
        shown = ", ".join(repr(r) for r in returned)
        return f"its hook returned {shown} instead of calling register(...) for each one"
    return "its hooks never called register(...)"


_lock = threading.RLock()
_registry: _Registry | None = None


def _loaded() -> _Registry:
    global _registry
    with _lock:
        if _registry is None:
            registry = _Registry()
            _registry = registry
            try:
                registry.load_installed()
            except BaseException:
                _registry = None  # strict mode raised: try again next time
                raise
        return _registry


def register(cls: AttentionClass) -> AttentionClass:
    """Register a variant (or a kernel) in-process, without packaging a plugin.

    For notebooks and model code. Usable as a class decorator; returns ``cls``.
    The variant's ``plugin`` becomes ``"local"``. Registering a class again under
    its own name (re-running a notebook cell) replaces it; any other clash raises.

    An `attnkit.Kernel` can be registered the same way; registering one under
    its own name again replaces it, as a notebook cell re-run expects.

    Args:
        cls: An `attnkit.Attention` subclass with its own ``name``, or an
            `attnkit.Kernel`.

    Returns:
        ``cls``, unchanged but for its ``plugin`` attribute (a kernel is returned
        as it was given; the registry keeps a copy marked ``plugin="local"``).

    Raises:
        InvalidVariantError: ``cls`` is not an `attnkit.Attention` subclass with a name.
        DuplicateVariantError: Another class is registered under that name.

    Examples:
        >>> import attnkit
        >>> @attnkit.register
        ... class Uniform(attnkit.Attention):
        ...     '''Every token attends equally to every token.'''
        ...     name = "uniform_example"
        ...     def forward(self, x, need_weights=False):
        ...         weights = x.new_full((x.shape[0], 1, x.shape[1], x.shape[1]), 1 / x.shape[1])
        ...         context = weights[:, 0] @ x
        ...         return (context, weights) if need_weights else context
        >>> attnkit.get_variant("uniform_example").plugin
        'local'
        >>> _ = attnkit.unregister("uniform_example")
    """
    with _lock:
        if isinstance(cls, Kernel):
            _loaded().register_local_kernel(cls)
        else:
            _loaded().register_local(cls)
    return cls


def unregister(name: str) -> type[Attention]:
    """Remove the variant registered as ``name`` and return its class.

    Raises:
        UnknownVariantError: No variant has that name.
    """
    with _lock:
        get_variant(name)
        return _loaded().remove_variant(name)


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object in-process, as if it had been installed, and return its name.

    ``plugin`` is a module or any object with ``@attnkit.hookimpl`` functions. Its
    hook is called at once. Unlike an installed plugin's, its errors raise here.

    Args:
        plugin: The module or object implementing the hook.
        name: The plugin's name; defaults to the module's ``__name__`` (or the
            object's class name).

    Raises:
        DuplicateVariantError: It registers a name that is already taken.
        InvalidVariantError: It registers something that is not a usable variant.
        pluggy.PluginValidationError: It implements a hook attnkit does not have,
            or none at all.
    """
    plugin_name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    with _lock:
        try:
            _loaded().add_plugin(plugin, PluginInfo(plugin_name))
        except (KeyboardInterrupt, Exception):
            raise
        except BaseException as error:  # sys.exit() in a hook must not end the program
            raise PluginError(
                f"plugin {plugin_name!r} raised {type(error).__name__}({error}) while "
                f"registering its variants; nothing it registered was kept"
            ) from error
    return plugin_name


def unregister_plugin(name: str) -> None:
    """Remove a plugin and every variant and kernel it registered.

    Raises:
        KeyError: No plugin has that name.
    """
    with _lock:
        registry = _loaded()
        if name not in registry.plugins:
            raise KeyError(
                f"no plugin named {name!r}; loaded plugins: "
                f"{', '.join(sorted(n for n, p in registry.plugins.items() if p.error is None))}"
            )
        info = registry.plugins[name]
        for variant in info.variants:
            registry.remove_variant(variant)
        for kernel in info.kernels:
            registry.kernels.pop(kernel, None)
        plugin = registry.manager.get_plugin(name)
        if plugin is not None:
            registry.manager.unregister(plugin)
        del registry.plugins[name]


def reload_plugins() -> None:
    """Forget every registered variant and load the installed plugins again, now.

    Environment variables are read anew. Variants registered in-process are
    forgotten too.

    Raises:
        PluginError: Called from a plugin's hook while plugins load.
    """
    global _registry
    with _lock:
        if _registry is not None and _registry.loading:
            raise PluginError(
                f"{_registry.loading[-1].describe()} called attnkit.registry.reload_plugins() "
                f"from its hook; plugins cannot be reloaded while they load"
            )
        _registry = None
        _loaded()


def plugin_manager() -> pluggy.PluginManager:
    """The `pluggy.PluginManager` behind the registry, with the plugins loaded."""
    return _loaded().manager


def get_plugin(name: str | None) -> PluginInfo | None:
    """The plugin named ``name``, loaded or failed, or ``None`` if attnkit knows of none."""
    with _lock:
        return _loaded().plugins.get(name or "")


def list_plugins() -> list[PluginInfo]:
    """Every plugin attnkit knows of, loaded or failed, built-ins first.

    Examples:
        >>> import attnkit
        >>> [p.name for p in attnkit.list_plugins() if p.builtin][:2]
        ['attnkit.causal', 'attnkit.gqa']
    """
    with _lock:
        plugins = list(_loaded().plugins.values())
    return sorted(plugins, key=lambda p: (not p.builtin, p.name))


def list_variants(pattern: str = "*") -> list[str]:
    """The names of the registered variants that match ``pattern``, sorted.

    Args:
        pattern: An `fnmatch`-style pattern: ``*`` matches anything, ``?`` one
            character, ``[seq]`` any character in ``seq``. Case-sensitive.

    Examples:
        >>> import attnkit
        >>> attnkit.list_variants("multihead*")
        ['multihead', 'multihead_wrapper']
    """
    return _matching("variant", pattern)


def get_variant(name: str) -> type[Attention]:
    """The class registered as ``name``.

    The class carries its metadata as attributes: ``name``, ``summary``,
    ``stage``, ``causal`` and ``plugin``, the plugin that registered it.

    Raises:
        UnknownVariantError: No variant has that name (a `KeyError`). The message
            suggests close matches and lists the available names.

    Examples:
        >>> import attnkit
        >>> cls = attnkit.get_variant("causal")
        >>> cls.stage, cls.causal, cls.plugin
        (3, True, 'attnkit.causal')
        >>> attnkit.get_variant("casual")
        Traceback (most recent call last):
        ...
        attnkit.errors.UnknownVariantError: unknown attention variant 'casual'; did you mean 'causal'? Available: causal, ...
    """  # noqa: E501
    return _look_up("variant", name)


def list_kernels(pattern: str = "*") -> list[str]:
    """The names of the registered kernels that match ``pattern`` (`fnmatch`-style), sorted.

    Examples:
        >>> import attnkit
        >>> attnkit.list_kernels("[efs]*")
        ['explicit', 'flex', 'sdpa']
    """
    return _matching("kernel", pattern)


def get_kernel(name: str) -> Kernel:
    """The `attnkit.Kernel` registered as ``name``.

    Raises:
        UnknownKernelError: No kernel has that name (a `KeyError`); the message
            suggests close matches and lists the available names.

    Examples:
        >>> import attnkit
        >>> attnkit.get_kernel("sdpa").returns_weights
        False
        >>> attnkit.get_kernel("spda")
        Traceback (most recent call last):
        ...
        attnkit.errors.UnknownKernelError: unknown attention kernel 'spda'; did you mean 'sdpa'? Available: ...
    """  # noqa: E501
    if isinstance(name, Kernel):
        return name
    return _look_up("kernel", name)


def refuse_unknown_keys(name: str, keys: Iterable[str], message: Callable[[str, str], str]) -> None:
    """Raise `TypeError` for the first key no registered variant accepts.

    A config may carry keys for other variants than ``name``, but a key that no
    registered variant takes is most likely misspelled. Nothing is refused if
    variant ``name`` takes ``**kwargs``.

    Args:
        name: The variant being built.
        keys: The keys to check.
        message: ``message(key, hint)`` builds the error; ``hint`` is
            ``" (did you mean 'x'?)"`` or ``""``.
    """
    if accepts_any_argument(get_variant(name)):
        return
    with _lock:
        variants = list(_loaded().variants.values())
    known = sorted({argument for variant in variants for argument in accepted_arguments(variant)})
    for key in keys:
        if key not in known:
            hint = did_you_mean(key, known)
            raise TypeError(message(key, f" ({hint})" if hint else ""))


_TABLES = {"variant": "variants", "kernel": "kernels"}
_UNKNOWN = {"variant": UnknownVariantError, "kernel": UnknownKernelError}


def _matching(kind: str, pattern: str) -> list[str]:
    with _lock:
        names = list(getattr(_loaded(), _TABLES[kind]))
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


def _look_up(kind: str, name: object) -> Any:
    if not isinstance(name, str):
        raise TypeError(f"a {kind} name must be a str, got {type(name).__name__}")
    with _lock:
        table = getattr(_loaded(), _TABLES[kind])
        found = table.get(name)
        available = sorted(table)
    if found is None:
        hint = did_you_mean(name, available, n=3)
        hint = f"; {hint}" if hint else "."
        listing = ", ".join(available) if available else "none (no plugin registered any)"
        raise _UNKNOWN[kind](
            f"unknown attention {kind} {name!r}{hint} Available: {listing}", name, available
        )
    return found


def create(name: str, **kwargs: Any) -> Attention:
    """Build the variant registered as ``name`` with keyword arguments ``kwargs``.

    Equivalent to ``get_variant(name)(**kwargs)``, with the arguments checked
    first against the class's signature so that a mistake names itself.

    Raises:
        UnknownVariantError: No variant has that name.
        TypeError: An argument is not accepted, or a required one is missing; the
            message names it and lists the accepted arguments.

    Examples:
        >>> import attnkit, torch
        >>> _ = torch.manual_seed(123)
        >>> attention = attnkit.create("causal", d_in=3, d_out=2, context_length=6)
        >>> attention(torch.rand(2, 6, 3)).shape
        torch.Size([2, 6, 2])
        >>> attnkit.create("causal", d_in=3, d_out=2, context_length=6, drop_rate=0.1)
        Traceback (most recent call last):
        ...
        TypeError: create('causal'): unexpected keyword argument 'drop_rate' (did you mean 'dropout'?). causal accepts: d_in, d_out, context_length, dropout=0.0, qkv_bias=False, kernel='sdpa'
    """  # noqa: E501
    cls = get_variant(name)
    check_arguments(cls, kwargs, caller=f"create({cls.name!r})")
    return cls(**kwargs)


def create_from_config(
    name: str, config: Mapping[str, Any], *, ignore: Iterable[str] = ()
) -> Attention:
    """Build variant ``name`` from a config that may carry more keys than it takes.

    A model's config names the attention and carries every setting any
    attention might need: ``num_heads`` is for multi-head variants, a plugin's
    ``window`` for its own. This passes each variant the keys its constructor
    accepts, so that switching the attention is a one-word change of config.
    It drops a key only if some registered variant accepts it or it is listed in
    ``ignore`` (the model's own keys); any other key is most likely misspelled,
    and raises.

    Args:
        name: The variant to build.
        config: Keyword arguments, a superset of what the variant takes.
        ignore: Keys that belong to something else (say ``emb_dim``) and are
            dropped without a check.

    Raises:
        UnknownVariantError: No variant has that name.
        TypeError: A key is accepted by no registered variant and not ignored
            (the message suggests the closest accepted key), or a required
            argument is missing.

    Examples:
        >>> import attnkit
        >>> config = {"d_in": 8, "d_out": 8, "context_length": 16, "num_heads": 2}
        >>> type(attnkit.create_from_config("causal", config)).__name__
        'CausalAttention'
        >>> attnkit.create_from_config("multihead", config).num_heads
        2
        >>> attnkit.create_from_config("causal", {**config, "num_haeds": 2})
        Traceback (most recent call last):
        ...
        TypeError: create_from_config('causal'): no registered variant accepts 'num_haeds' (did you mean 'num_heads'?); pass ignore=['num_haeds'] if it belongs to something else
    """  # noqa: E501
    cls = get_variant(name)
    ignored = set(ignore)
    refuse_unknown_keys(
        name,
        (key for key in config if key not in ignored),
        lambda key, hint: (
            f"create_from_config({name!r}): no registered variant accepts {key!r}{hint}; "
            f"pass ignore=[{key!r}] if it belongs to something else"
        ),
    )
    kwargs = filter_arguments(cls, {k: v for k, v in config.items() if k not in ignored})
    return create(name, **kwargs)


def _validated_name(cls: object) -> str:
    if not (isinstance(cls, type) and issubclass(cls, Attention)):
        raise InvalidVariantError(
            f"only attnkit.Attention subclasses can be registered, got {cls!r}"
        )
    if "name" not in cls.__dict__:
        inherited = getattr(cls, "name", None)
        detail = f" (it inherits {inherited!r})" if inherited else ""
        raise InvalidVariantError(
            f"{_qualname(cls)} must set its own class attribute 'name', the registry key{detail}"
        )
    name = cls.__dict__["name"]
    if not isinstance(name, str) or not name or any(c.isspace() or c in "*?[]," for c in name):
        raise InvalidVariantError(
            f"{_qualname(cls)}.name must be a non-empty string without spaces, commas or "
            f"pattern characters (*?[]), got {name!r}"
        )
    if cls.forward is Attention.forward:
        raise InvalidVariantError(f"{_qualname(cls)} must implement forward()")
    return name


def _validated_kernel_name(kernel: object) -> str:
    if not isinstance(kernel, Kernel):
        raise InvalidVariantError(
            f"register_kernels takes attnkit.Kernel objects, got {kernel!r}; wrap the "
            f"function: register(attnkit.Kernel('name', function))"
        )
    name = kernel.name
    if not isinstance(name, str) or not name or any(c.isspace() or c in "*?[],/" for c in name):
        raise InvalidVariantError(
            f"a kernel name must be a non-empty string without spaces, commas, slashes or "
            f"pattern characters (*?[]), got {name!r}"
        )
    if not callable(kernel.function):
        raise InvalidVariantError(
            f"kernel {name!r}: function must be callable, got {kernel.function!r}"
        )
    return name


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _failed(info: PluginInfo, error: BaseException) -> PluginInfo:
    return _replace(info, error=f"{type(error).__name__}: {error}")
