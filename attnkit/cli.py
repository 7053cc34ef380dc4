"""The ``attnkit`` command: list, show and check attention variants, and see what loaded.

```text
attnkit list [PATTERN]            a table of the registered variants
attnkit show NAME                 one variant: summary, plugin, constructor parameters
attnkit plugins                   installed plugins, their versions and load errors
attnkit check NAME [--arg K=V]    run the conformance kit (attnkit.testing) on a variant
attnkit bench ...                 time variants (see attnkit bench --help)
```

Exit status: 0 on success, 1 when a check fails (or, with
``ATTNKIT_STRICT_PLUGINS=1``, a plugin fails to load), 2 for bad usage: an
unknown variant, a malformed or unaccepted argument.

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
from attnkit.errors import PluginLoadError, PluginLoadWarning, UnknownVariantError

__all__ = ["main"]

_EXIT_OK = 0
_EXIT_FAILED = 1
_EXIT_USAGE = 2

_PROG = "attnkit"


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
    headers: Sequence[str], rows: Sequence[Sequence[str]], shrink: int, wrap: bool = False
) -> str:
    """Columns padded to fit the terminal: column ``shrink`` is truncated, or with
    ``wrap`` (for the last column) continued on the lines below."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    others = sum(w for i, w in enumerate(widths) if i != shrink) + 2 * (len(widths) - 1)
    narrowest = 10
    if wrap:  # never split a word: the column is at least as wide as its longest word
        narrowest = max(len(word) for row in rows for word in str(row[shrink]).split() or [""])
    widths[shrink] = max(min(widths[shrink], _width() - others), narrowest)
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell) for cell in row]
        continued: list[str] = []
        if wrap:
            continued = textwrap.wrap(
                cells[shrink], widths[shrink], break_long_words=False, break_on_hyphens=False
            )
            cells[shrink] = continued.pop(0) if continued else ""
        else:
            cells[shrink] = _truncate(cells[shrink], widths[shrink])
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip())
        indent = " " * (sum(widths[:shrink]) + 2 * shrink)
        lines += [indent + line for line in continued]
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


def _list(args: argparse.Namespace) -> int:
    names = attnkit.list_variants(args.pattern)
    if not names:
        available = ", ".join(attnkit.list_variants()) or "none"
        print(f"no variant matches {args.pattern!r}; variants: {available}", file=sys.stderr)
        return _EXIT_OK
    rows = []
    for name in names:
        cls = attnkit.get_variant(name)
        stage = str(cls.stage) if cls.stage is not None else "-"
        rows.append([name, stage, "yes" if cls.causal else "no", cls.plugin or "-", cls.summary])
    print(_table(["name", "stage", "causal", "plugin", "summary"], rows, shrink=4))
    return _EXIT_OK


def _show(args: argparse.Namespace) -> int:
    cls = attnkit.get_variant(args.name)
    print(f"{cls.name}: {cls.summary}" if cls.summary else cls.name)
    print()
    details = [
        ("class", f"{cls.__module__}.{cls.__qualname__}"),
        ("stage", str(cls.stage) if cls.stage is not None else "-"),
        ("causal", "yes" if cls.causal else "no"),
        ("from", _describe_plugin(cls.plugin)),
    ]
    for label, value in details:
        print(f"  {label + ':':<8} {value}")
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
        table = _table(["name", "type", "default"], rows, shrink=2)
        print(textwrap.indent(table, "  "))
    else:
        print("parameters: none")
    return _EXIT_OK


def _plugins(args: argparse.Namespace) -> int:
    plugins = registry.list_plugins()
    rows = []
    for info in plugins:
        distribution = f"{info.distribution} {info.version}" if info.distribution else "-"
        if info.error:
            variants = "failed to load (see below)"
        else:
            variants = ", ".join(info.variants) or "none"
        rows.append([info.name, distribution, variants])
    print(_table(["plugin", "distribution", "variants"], rows, shrink=2, wrap=True))
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
        description="List, inspect and check attnkit attention variants and plugins.",
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

    list_parser = commands.add_parser(
        "list",
        help="list the registered variants",
        description=_fill(
            "A table of the registered variants: name, stage, causal, plugin and summary."
        ),
        epilog="examples:\n  attnkit list\n  attnkit list 'multihead*'",
        formatter_class=formatter,
    )
    list_parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        metavar="PATTERN",
        help="only names matching this fnmatch pattern (*, ?, [seq]); quote it in the shell",
    )
    list_parser.set_defaults(handler=_list)

    show = commands.add_parser(
        "show",
        help="show one variant: summary, plugin and constructor parameters",
        description=_fill(
            "A variant's summary, class, plugin and version, and its constructor parameters "
            "with their defaults."
        ),
        epilog="example:\n  attnkit show multihead",
        formatter_class=formatter,
    )
    show.add_argument("name", metavar="NAME", help="the variant's registered name")
    show.set_defaults(handler=_show)

    plugins = commands.add_parser(
        "plugins",
        help="list installed plugins, their versions and load errors",
        description=_fill(
            "Every plugin attnkit found, built-ins first: its distribution, version, status "
            "and variants, then the error of each plugin that failed to load."
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
        name    stage  causal  plugin          summary
        causal  3      yes     attnkit.causal  ...
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
