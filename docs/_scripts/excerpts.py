"""Excerpts of the repository's files for the documentation, taken when the site builds.

A page that explains a file shows its actual code: `excerpt` cuts named top-level
definitions or methods (decorators included) out of a Python file, so the page
follows the file when it changes, and the build fails if a definition it names
disappears.
"""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["ROOT", "excerpt"]

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""


def excerpt(path: str, *names: str, language: str = "python") -> str:
    """A fenced Markdown code block with the definitions ``names`` of the file at ``path``.

    Args:
        path: The file, relative to the repository root.
        names: Top-level functions or classes, or methods as ``"Class.method"``,
            in the order to show them. A method keeps its indentation.
        language: The code block's language, for highlighting.
    """
    source = (ROOT / path).read_text()
    lines = source.splitlines()
    found = {}

    def collect(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found[prefix + node.name] = "\n".join(lines[start - 1 : node.end_lineno])
                if isinstance(node, ast.ClassDef) and not prefix:
                    collect(node.body, f"{node.name}.")

    collect(ast.parse(source).body, "")
    missing = [name for name in names if name not in found]
    if missing:
        raise LookupError(f"{path} defines no {', '.join(missing)}")
    body = "\n\n\n".join(found[name] for name in names)
    return f'```{language} title="{path}"\n{body}\n```'
