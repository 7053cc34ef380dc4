"""The code a stage page builds: its variant's class, and the step from the previous stage.

`stage_class` shows a class from ``plugins/`` as it is in the repository, and
`stage_diff` shows what changed from the previous stage's class as a unified diff
(``difflib``), both taken when the site builds, so that the pages follow the code.
"""

from __future__ import annotations

import ast
import difflib
import textwrap

from excerpts import excerpt

__all__ = ["class_source", "code_lines", "stage_class", "stage_diff"]


def class_source(path: str, name: str) -> str:
    """The source of the top-level definition ``name`` of ``path`` (from the repository root)."""
    block = excerpt(path, name)
    return block.split("\n", 1)[1].rsplit("\n", 1)[0]  # without the fences


def stage_class(path: str, name: str) -> str:
    """A fenced Markdown code block with the class ``name`` of ``path``, titled with the path."""
    return excerpt(path, name)


def code_lines(source: str) -> list[str]:
    """The lines of ``source`` (one definition) without its docstrings: the code alone."""
    lines = source.splitlines()
    drop: set[int] = set()
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                drop.update(range(first.lineno - 1, first.end_lineno))
                after = first.end_lineno  # the line after the docstring, 0-based
                if after < len(lines) and not lines[after].strip():
                    drop.add(after)  # and the blank line that set it apart
    return [line for number, line in enumerate(lines) if number not in drop]


def stage_diff(previous: tuple[str, str], current: tuple[str, str]) -> str:
    """A fenced ``diff`` block: what changes, docstrings aside, from ``previous`` to ``current``.

    Args:
        previous: ``(path, class name)`` of the previous stage's class.
        current: ``(path, class name)`` of this stage's class.
    """
    before = code_lines(class_source(*previous))
    after = code_lines(class_source(*current))
    lines = difflib.unified_diff(
        before,
        after,
        fromfile=f"{previous[0]} ({previous[1]})",
        tofile=f"{current[0]} ({current[1]})",
        n=max(len(before), len(after)),  # the whole class: every line in its place
        lineterm="",
    )
    return "```diff\n" + "\n".join(lines) + "\n```"
