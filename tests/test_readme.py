"""The README's Python examples run, and the README gives exactly the two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

import attnkit

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_examples_run(fresh_registry):
    blocks = python_blocks()
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        if "@attnkit.hookimpl" in block and "class " not in block:
            continue  # the hook fragment needs the class from the block before
        exec(compile(block, str(README), "exec"), namespace)
    assert "cosine" in attnkit.list_variants()


def test_readme_set_up_is_make_docs_and_make_test():
    text = README.read_text()
    set_up = text[text.index("## Set-up") :].split("\n## ")[0]
    commands = re.findall(r"^(make \w+)", set_up, flags=re.MULTILINE)
    assert commands == ["make docs", "make test"]
