"""The ``attnkit`` command: list, show and check attention variants and kernels, and see
what loaded.

```text
attnkit list [PATTERN]            a table of the registered variants and their capabilities
attnkit kernels [PATTERN]         a table of the registered kernels
attnkit show NAME                 one variant (capabilities, constructor parameters) or kernel
attnkit plugins                   installed plugins, their versions, what they registered,
                                  and load errors
attnkit check NAME [--arg K=V]    run the conformance kit (attnkit.testing) on a variant
attnkit bench ...                 time variants (see attnkit bench --help)
```

Exit status: 0 on success, 1 when a check fails (or, with
``ATTNKIT_STRICT_PLUGINS=1``, a plugin fails to load), 2 for bad usage: an
unknown variant or kernel, a malformed or unaccepted argument.

`main` is the one public name: the console script and ``python -m attnkit``
call it, and so can a program or a test. Everything else here is internal.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import shutil
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import attnkit
from attnkit import _loader as loader
from attnkit import registry
from attnkit._arguments import STANDARD_SIZES
from attnkit._suggest import close_matches
from attnkit.errors import (
    PluginLoadError,
    PluginLoadWarning,
    UnknownKernelError,
    UnknownVariantError,
)
from attnkit.interface import CAPABILITIES

__all__ = ["main"]

_EXIT_OK = 0
_EXIT_FAILED = 1
_EXIT_USAGE = 2

_PROG = "attnkit"


_CAPABILITY_HEADERS = {
    "attention_mask": "mask",
    "position_ids": "positions",
    "kv_cache": "cache",
    "weights": "weights",
}
"""Short column headers for `CAPABILITIES`, so that ``attnkit list`` fits 80 columns."""


class _UsageError(Exception):
    """Bad usage found after parsing: reported on stderr with exit status 2."""


# --- Helpers ----------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """Read a ``--arg`` value: an int, a float, a bool, ``None``, or else a string.

    Examples:
        >>> [_parse_value(v) for v in ["8", "0.1", "1e-3", "true", "False", "none", "fused"]]
        [8, 0.1, 0.001, True, False, None, 'fused']
        >>> _parse_value("'8'")  # quotes keep a string a string
        '8'
    """
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        return stripped[1:-1]
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for number in (int, float):
        try:
            return number(stripped)
        except ValueError:
            pass
    return text


def _key_value(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, for example d_in=16; got {text!r}")
    if not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"KEY must be a constructor argument name, such as d_in; got {key!r} in {text!r}"
        )
    return key, _parse_value(value)


def _width() -> int:
    return max(shutil.get_terminal_size((80, 24)).columns, 40)


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    shrink: int | Sequence[int],
    wrap: bool = False,
    indent: int = 0,
) -> str:
    """Columns padded to fit the terminal, each line indented by ``indent`` spaces.

    When the table is too wide, the ``shrink`` columns give up width, the widest
    first: each is truncated to at least 10 characters, or with ``wrap`` continued
    on the lines below, never splitting a word (a column is at least as wide as its
    longest word and its header).
    """
    shrinkable = [shrink] if isinstance(shrink, int) else list(shrink)
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    floors = {}
    for i in shrinkable:
        if wrap:
            words = [len(word) for row in rows for word in str(row[i]).split()]
            floors[i] = max([len(headers[i]), *words])
        else:
            floors[i] = min(widths[i], 10)
    while sum(widths) + 2 * (len(widths) - 1) > _width() - indent:
        candidates = [i for i in shrinkable if widths[i] > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    lines = []
    for row in [headers, *rows]:
        cells: list[list[str]] = []
        for i, cell in enumerate(str(cell) for cell in row):
            if i not in shrinkable:
                cells.append([cell])
            elif wrap:
                wrapped = textwrap.wrap(
                    cell, widths[i], break_long_words=False, break_on_hyphens=False
                )
                cells.append(wrapped or [""])
            else:
                cells.append([_truncate(cell, widths[i])])
        for line in range(max(len(cell) for cell in cells)):
            parts = [cell[line] if line < len(cell) else "" for cell in cells]
            line = "  ".join(part.ljust(widths[i]) for i, part in enumerate(parts))
            lines.append((" " * indent + line).rstrip())
    return "\n".join(lines)


def _fill(text: str) -> str:
    return textwrap.fill(text, width=78)


def _describe_plugin(name: str | None) -> str:
    """The plugin's own description (`PluginInfo.describe`), and where its variants live."""
    info = registry.get_plugin(name)
    if info is None:
        return "-"
    if info.builtin:
        return f"{info.describe()}, built in"
    if info.distribution is None:
        return f"{info.describe()}, registered in-process"
    return info.describe()


def _annotation(parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")


def _error(command: str | None, message: str) -> None:
    where = f"{_PROG} {command}" if command else _PROG
    print(f"{where}: error: {message.removeprefix(f'{_PROG}: ')}", file=sys.stderr)


# --- Commands ---------------------------------------------------------------------------


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _capability_columns() -> list[tuple[str, str]]:
    """``(capability, column header)`` for each of `CAPABILITIES`, in its order."""
    return [(name, _CAPABILITY_HEADERS.get(name, name)) for name in CAPABILITIES]


def _list(args: argparse.Namespace) -> int:
    names = attnkit.list_variants(args.pattern)
    if not names:
        available = ", ".join(attnkit.list_variants()) or "none"
        print(f"no variant matches {args.pattern!r}; variants: {available}", file=sys.stderr)
        return _EXIT_OK
    capabilities = _capability_columns()
    rows = []
    for name in names:
        cls = attnkit.get_variant(name)
        stage = str(cls.stage) if cls.stage is not None else "-"
        supported = [_yes_no(capability in cls.capabilities) for capability, _ in capabilities]
        rows.append([name, stage, _yes_no(cls.causal), *supported, cls.summary])
    headers = ["name", "stage", "causal", *(header for _, header in capabilities), "summary"]
    print(_table(headers, rows, shrink=len(headers) - 1))
    return _EXIT_OK


def _kernels(args: argparse.Namespace) -> int:
    names = attnkit.list_kernels(args.pattern)
    if not names:
        available = ", ".join(attnkit.list_kernels()) or "none"
        print(f"no kernel matches {args.pattern!r}; kernels: {available}", file=sys.stderr)
        return _EXIT_OK
    rows = []
    for name in names:
        kernel = attnkit.get_kernel(name)
        rows.append([name, _yes_no(kernel.returns_weights), kernel.plugin or "-", kernel.summary])
    print(_table(["name", "weights", "plugin", "summary"], rows, shrink=3))
    return _EXIT_OK


def _show(args: argparse.Namespace) -> int:
    try:
        cls = attnkit.get_variant(args.name)
    except UnknownVariantError as not_a_variant:
        try:
            kernel = attnkit.get_kernel(args.name)
        except UnknownKernelError as not_a_kernel:
            raise _unknown_name(args.name, not_a_variant, not_a_kernel) from None
        _show_kernel(kernel)
        return _EXIT_OK
    _show_variant(cls)
    try:
        kernel = attnkit.get_kernel(args.name)
    except UnknownKernelError:
        return _EXIT_OK
    print()
    print(
        _fill(
            f"{args.name!r} also names a kernel, from {_describe_plugin(kernel.plugin)}; "
            f"this is the variant. 'attnkit kernels {args.name}' lists the kernel."
        )
    )
    return _EXIT_OK


def _unknown_name(
    name: str, not_a_variant: UnknownVariantError, not_a_kernel: UnknownKernelError
) -> UnknownVariantError:
    """The registry's error for a name that is neither a variant nor a kernel: the
    kernel's if only it suggests a close match, else the variant's, naming the kernels."""
    if close_matches(name, not_a_kernel.available) and not close_matches(
        name, not_a_variant.available
    ):
        return not_a_kernel
    kernels = ", ".join(not_a_kernel.available) or "none"
    return UnknownVariantError(
        f"{not_a_variant}. Nor is {name!r} a kernel; kernels: {kernels}",
        name,
        not_a_variant.available,
    )


def _headline(name: str, summary: str) -> str:
    return textwrap.fill(f"{name}: {summary}" if summary else name, width=_width())


def _show_variant(cls: type[attnkit.Attention]) -> None:
    print(_headline(cls.name, cls.summary))
    print()
    details = [
        ("class", f"{cls.__module__}.{cls.__qualname__}"),
        ("stage", str(cls.stage) if cls.stage is not None else "-"),
        ("causal", _yes_no(cls.causal)),
        ("from", _describe_plugin(cls.plugin)),
    ]
    for label, value in details:
        print(f"  {label + ':':<8} {value}")
    print()
    print("capabilities:")
    rows = [
        [name, _yes_no(name in cls.capabilities), meaning] for name, meaning in CAPABILITIES.items()
    ]
    print(_table(["name", "supported", "meaning"], rows, shrink=2, wrap=True, indent=2))
    print()
    parameters = inspect.signature(cls).parameters.values()
    rows = []
    for parameter in parameters:
        if parameter.kind is parameter.VAR_KEYWORD:
            rows.append([f"**{parameter.name}", "", "any other keyword arguments"])
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            continue
        default = "required" if parameter.default is parameter.empty else repr(parameter.default)
        if parameter.kind is parameter.KEYWORD_ONLY:
            default += " (keyword-only)"
        rows.append([parameter.name, _annotation(parameter), default])
    if rows:
        print("parameters:")
        print(_table(["name", "type", "default"], rows, shrink=2, indent=2))
    else:
        print("parameters: none")


def _show_kernel(kernel: attnkit.Kernel) -> None:
    function = kernel.function
    print(_headline(kernel.name, kernel.summary))
    print()
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    weights = "yes, it can" if kernel.returns_weights else "no, it cannot"
    details = [
        ("kernel", "an attnkit.Kernel, the computation a variant's kernel= chooses"),
        ("function", f"{module}.{qualname}" if module and qualname else repr(function)),
        ("weights", f"{weights} return the attention weights (need_weights=True)"),
        ("from", _describe_plugin(kernel.plugin)),
    ]
    for label, value in details:
        print(
            textwrap.fill(
                value,
                width=_width(),
                initial_indent=f"  {label + ':':<10}",
                subsequent_indent=" " * 12,
                break_on_hyphens=False,
            )
        )
    print()
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some built-in callables have none
        print("signature: not available")
    else:
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        call = f"{getattr(function, '__name__', kernel.name)}{bare}"
        print("signature:")
        print(textwrap.fill(call, width=_width(), initial_indent="  ", subsequent_indent="    "))
    lines = (inspect.getdoc(function) or "").splitlines()
    if lines and lines[0].strip() == kernel.summary:
        lines = lines[1:]
    text = "\n".join(lines).strip("\n")
    if text:
        print()
        print(textwrap.indent(text, "  "))


def _plugins(args: argparse.Namespace) -> int:
    plugins = registry.list_plugins()
    rows = []
    for info in plugins:
        distribution = f"{info.distribution} {info.version}" if info.distribution else "-"
        if info.error:
            variants, kernels = "failed to load (see below)", "-"
        else:
            variants = ", ".join(info.variants) or "none"
            kernels = ", ".join(info.kernels) or "none"
        rows.append([info.name, distribution, variants, kernels])
    headers = ["plugin", "distribution", "variants", "kernels"]
    print(_table(headers, rows, shrink=(2, 3), wrap=True))
    selection = os.environ.get(loader.PLUGINS_ENV)
    if selection is not None:
        chosen = selection.strip() or "none"
        print(
            f"\n{loader.PLUGINS_ENV}={selection!r}: third-party plugins from {chosen} only; "
            f"the built-ins always load."
        )
    failed = [info for info in plugins if info.error]
    if failed:
        print("\nload errors:")
        for info in failed:
            wrapped = textwrap.fill(
                f"{info.describe()}: {info.error}",
                width=_width() - 2,
                break_on_hyphens=False,
                initial_indent="  ",
                subsequent_indent="    ",
            )
            print(wrapped)
    return _EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from attnkit import testing

    arguments: dict[str, Any] = {}
    for key, value in args.arg or []:
        if key in arguments:
            raise _UsageError(f"--arg {key} is given twice ({arguments[key]!r} and {value!r})")
        arguments[key] = value
    cls = attnkit.get_variant(args.name)
    try:
        # Validates the arguments, the backend, and builds the variant once: no check runs yet.
        results = testing.iter_checks(
            cls, arguments, skip=args.skip or (), compile_backend=args.compile_backend
        )
        built_with = testing.build_arguments(cls, arguments)
    except (TypeError, ValueError) as error:  # VariantBuildError is a ValueError
        raise _UsageError(str(error)) from error
    print(textwrap.fill(f"checking {args.name}: {cls.summary}", width=_width()))
    print(f"  {'class:':<10} {cls.__module__}.{cls.__qualname__}")
    print(f"  {'from:':<10} {_describe_plugin(cls.plugin)}")
    print(
        textwrap.fill(
            ", ".join(f"{k}={v!r}" for k, v in built_with.items()) or "none",
            width=_width(),
            initial_indent=f"  {'arguments:':<10} ",
            subsequent_indent=" " * 13,
            break_on_hyphens=False,
        )
    )
    print()
    done = []
    for result in results:
        print(result.format(width=_width()), flush=True)
        done.append(result)
    report = testing.ConformanceReport(args.name, cls, built_with, tuple(done))
    print()
    print(report.summary())
    if not report.ok:
        print(f"{args.name} failed: {', '.join(result.check for result in report.failures)}")
        return _EXIT_FAILED
    print(f"{args.name} passed every check that applies.")
    return _EXIT_OK


def _bench_unavailable(error: ImportError) -> Callable[[argparse.Namespace], int]:
    def unavailable(args: argparse.Namespace) -> int:
        _error("bench", f"attnkit bench is not available: cannot import attnkit.bench ({error})")
        return _EXIT_FAILED

    return unavailable


def _bench(args: argparse.Namespace) -> int:
    from attnkit import bench

    return int(bench.run(args))


# --- The parser -------------------------------------------------------------------------


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv``: its first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _add_pattern(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        metavar="PATTERN",
        help="only names matching this fnmatch pattern (*, ?, [seq]); quote it in the shell",
    )


def _build_parser(*, bench: bool = True) -> argparse.ArgumentParser:
    """The ``attnkit`` argument parser.

    Args:
        bench: Import `attnkit.bench` to add the ``bench`` command's own arguments.
            `main` passes ``False`` unless the command is ``bench``, so that the
            other commands neither wait for nor depend on it.
    """
    from attnkit import testing

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="List, inspect and check attnkit attention variants, kernels and plugins.",
        epilog=(
            "exit status: 0 success, 1 a check failed, 2 bad usage.\n\nenvironment:\n"
            + textwrap.indent(
                _fill(
                    f"{loader.PLUGINS_ENV} chooses the third-party plugins that load (unset: "
                    f"all; empty: none; a comma-separated list: those distributions; the "
                    f"built-ins always load). {loader.STRICT_ENV}=1 makes a plugin that "
                    f"fails to load an error instead of a warning."
                ),
                "  ",
            )
        ),
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {attnkit.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    capability_headers = ", ".join(header for _, header in _capability_columns())
    list_parser = commands.add_parser(
        "list",
        help="list the registered variants and their capabilities",
        description=_fill(
            f"A table of the registered variants: name, stage, causal, one column per "
            f"capability ({capability_headers}) and summary. 'attnkit show NAME' gives a "
            f"variant's plugin, and 'attnkit plugins' what each plugin registered."
        )
        + "\n\ncapabilities (yes: forward takes the argument):\n"
        + "\n".join(
            textwrap.fill(
                f"{name}: {CAPABILITIES[name]}",
                width=78,
                initial_indent=f"  {header:<10} ",
                subsequent_indent=" " * 13,
                break_on_hyphens=False,
            )
            for name, header in _capability_columns()
        ),
        epilog="examples:\n  attnkit list\n  attnkit list 'multihead*'",
        formatter_class=formatter,
    )
    _add_pattern(list_parser)
    list_parser.set_defaults(handler=_list)

    kernels = commands.add_parser(
        "kernels",
        help="list the registered kernels",
        description=_fill(
            "A table of the registered kernels, the computation a variant's kernel= "
            "argument chooses: name, whether it can return the attention weights, plugin "
            "and summary."
        ),
        epilog="examples:\n  attnkit kernels\n  attnkit kernels 's*'",
        formatter_class=formatter,
    )
    _add_pattern(kernels)
    kernels.set_defaults(handler=_kernels)

    show = commands.add_parser(
        "show",
        help="show one variant or kernel: summary, plugin, capabilities, parameters",
        description=_fill(
            "A variant's summary, class, plugin and version, its capabilities and its "
            "constructor parameters with their defaults; or a kernel's summary, function, "
            "plugin and signature. A name that is both shows the variant."
        ),
        epilog="examples:\n  attnkit show multihead\n  attnkit show sdpa",
        formatter_class=formatter,
    )
    show.add_argument("name", metavar="NAME", help="a variant's or kernel's registered name")
    show.set_defaults(handler=_show)

    plugins = commands.add_parser(
        "plugins",
        help="list installed plugins, their versions, variants, kernels and load errors",
        description=_fill(
            "Every plugin attnkit found, built-ins first: its distribution, version, status, "
            "variants and kernels, then the error of each plugin that failed to load."
        ),
        formatter_class=formatter,
    )
    plugins.set_defaults(handler=_plugins)

    check = commands.add_parser(
        "check",
        help="run the conformance checks on a variant",
        description=_fill(
            "Build the variant from the standard sizes "
            f"({', '.join(f'{k}={v!r}' for k, v in STANDARD_SIZES.items())}; "
            "each variant takes those it accepts) and the --arg values, and run every check "
            "of attnkit.testing on it. A check that does not apply is skipped, with the "
            "reason. Exit status 1 if any check fails."
        ),
        epilog=(
            "checks:\n"
            + "\n".join(
                textwrap.fill(
                    c.rule,
                    width=78,
                    initial_indent=f"  {c.name:<16} ",
                    subsequent_indent=" " * 19,
                )
                for c in testing.CHECKS
            )
            + "\n\nexamples:\n  attnkit check causal\n"
            "  attnkit check window --arg window=2 --arg num_heads=1\n"
            "  attnkit check multihead --skip compile"
        ),
        formatter_class=formatter,
    )
    check.add_argument("name", metavar="NAME", help="the variant's registered name")
    check.add_argument(
        "--arg",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="a constructor argument, repeatable; VALUE is read as an int, float, "
        "true/false, none, or else a string",
    )
    check.add_argument(
        "--skip",
        action="append",
        metavar="CHECK",  # the kit checks the name, suggesting a close one
        help="report this check as skipped without running it, repeatable",
    )
    check.add_argument(
        "--compile-backend",
        default="inductor",
        metavar="BACKEND",
        help="torch.compile backend of the compile check (default: inductor; aot_eager "
        "checks tracing without generating code, faster)",
    )
    check.set_defaults(handler=_check)

    bench_parser = commands.add_parser(
        "bench",
        help="time every registered variant against PyTorch's own attention",
        description="Time every registered variant against PyTorch's own attention.",
        formatter_class=formatter,
    )
    if bench:
        try:
            from attnkit import bench as bench_module
        except ImportError as error:
            bench_parser.set_defaults(handler=_bench_unavailable(error))
        else:
            bench_module.add_arguments(bench_parser)
            bench_parser.set_defaults(handler=_bench)
    return parser


def _report_warnings(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        if issubclass(warning.category, PluginLoadWarning):
            message = str(warning.message).removeprefix(f"{_PROG}: ")
            print(f"{_PROG}: warning: {message}", file=sys.stderr)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``attnkit`` command with ``argv`` and return its exit status.

    Output goes to ``sys.stdout`` and errors to ``sys.stderr``, as in a shell;
    nothing raises ``SystemExit``, not even ``--help`` or a usage error, so a
    program or a test can call it in-process.

    Args:
        argv: The arguments after ``attnkit``; by default ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when a check fails (or, in strict mode, a plugin fails
        to load), 2 for bad usage.

    Examples:
        >>> status = main(["list", "causal"])  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
        name    stage  causal  mask  positions  cache  weights  summary
        causal  3      yes     yes   no         yes    yes      ...
        >>> status
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    bench = _command(argv) == "bench"
    if bench:
        try:
            importlib.import_module("attnkit.bench")
        except ImportError as error:  # its options cannot be parsed without it
            return _bench_unavailable(error)(argparse.Namespace())
    parser = _build_parser(bench=bench)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error argparse reported
        return int(exit.code or 0) if not isinstance(exit.code, str) else _EXIT_USAGE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginLoadWarning)
        try:
            registry.list_plugins()  # load the plugins now, reporting failures first
        except PluginLoadError as error:
            _report_warnings(caught)
            traceback.print_exception(error, file=sys.stderr)
            _error(None, str(error))
            return _EXIT_FAILED
    _report_warnings(caught)
    try:
        return args.handler(args)
    except UnknownVariantError as error:
        _error(args.command, str(error))
    except _UsageError as error:
        _error(args.command, str(error))
    except BrokenPipeError:  # the reader went away, as with `attnkit list | head -1`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return _EXIT_OK
    return _EXIT_USAGE
