"""MkDocs hooks for the attnkit site (declared under `hooks:` in mkdocs.yml).

- Serves KaTeX from the site itself: `make docs-assets` installs it from npm into
  docs/_assets/node_modules, and this hook adds the files the pages load to the
  site under assets/katex/. Nothing is fetched from a CDN.
- Puts docs/_scripts on sys.path, so that the executed examples can import the
  build helpers.
- Builds the same site wherever it runs. The pages document attnkit's built-in
  plugins and the example plugin, attnkit-window, whatever else is installed
  (docs/_scripts/siteplugins.py): the build stops at once, saying how to install
  it, if the example plugin does not load, rather than printing tracebacks into
  the pages. `mkdocs serve` (`make docs`) also lists the reader's other installed
  plugins in the catalog, in a section of their own.
- Gives every page a fresh start: the executed examples of one page cannot change
  what another page sees (the plugins that load, the registry, torch's grad mode,
  print options and random seed).
- Marks printed output: the result block of every executed example carries the
  class `attnkit-output`, which docs/stylesheets/attnkit.css labels "Output".
- Keeps the search index to prose: pictures (inline SVG) are left out of it, and
  formulas are indexed in plain words (`sqrt(d_k)`, not `\\(\\sqrt{d_k}\\)`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import torch
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

import attnkit

DOCS = Path(__file__).parent
SCRIPTS = DOCS / "_scripts"
KATEX_DIST = DOCS / "_assets" / "node_modules" / "katex" / "dist"
# What the pages load: the library, its stylesheet, its fonts, and auto-render.
KATEX_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts/*")


def _scripts_on_path() -> None:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))


# MkDocs puts sys.path back after importing this file, so on_config adds it again.
_scripts_on_path()
import plaintex  # noqa: E402  (build helpers in docs/_scripts)
import siteplugins  # noqa: E402

log = logging.getLogger("mkdocs.hooks.attnkit")

# The environment of the process that runs the build, put back once the site is built.
_saved_environment: dict[str, str | None] = {}


def on_startup(command: str, dirty: bool) -> None:
    # `mkdocs serve` is the reader's own copy: it may list their plugins too.
    siteplugins.show_installed = command == "serve"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    _scripts_on_path()
    try:
        siteplugins.check()
    except siteplugins.MissingPluginError as error:
        raise PluginError(str(error)) from None
    if not siteplugins.show_installed:
        others = siteplugins.installed_elsewhere()
        if others:
            log.info(
                "The site documents the built-in plugins and attnkit-window only; also "
                "installed here, and left out: %s (`mkdocs serve` lists them in the catalog).",
                ", ".join(others),
            )
    return config


def on_pre_build(config: MkDocsConfig) -> None:
    _saved_environment.clear()
    _saved_environment.update({key: os.environ.get(key) for key in siteplugins.ENVIRONMENT})


@event_priority(-100)  # after the search plugin has written its index
def on_post_build(config: MkDocsConfig) -> None:
    _setenv(_saved_environment)
    attnkit.registry.reload_plugins()
    plain_search_index(Path(config.site_dir) / "search" / "search_index.json")


def plain_search_index(path: Path) -> None:
    """Write the formulas of the search index in plain words (docs/_scripts/plaintex.py).

    The index is built from each page's HTML before KaTeX typesets it in the
    browser, so it holds TeX: a result's preview would show `\\(\\sqrt{d_k}\\)`, and
    a search for "sqrt" would find nothing. Each formula becomes `sqrt(d_k)`.
    """
    if not path.is_file():  # the search plugin is off
        return
    index = json.loads(path.read_text(encoding="utf-8"))
    for entry in index["docs"]:
        entry["title"] = plaintex.index_text(entry["title"])
        entry["text"] = plaintex.index_text(entry["text"])
    path.write_text(json.dumps(index, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    if not (KATEX_DIST / "katex.min.js").is_file():
        raise PluginError(
            f"KaTeX is not installed in {KATEX_DIST.parent}; run `make docs-assets` "
            f"(npm ci --prefix docs/_assets) to install it from npm."
        )
    for pattern in KATEX_FILES:
        for path in sorted(KATEX_DIST.glob(pattern)):
            uri = f"assets/katex/{path.relative_to(KATEX_DIST).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


# The opening line of a fenced block that markdown-exec runs, and its `result` option.
_EXEC_FENCE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[ \t]*\w[^\n]*$", re.MULTILINE)
_EXECUTED = re.compile(r'\bexec="(?:1|on|true|yes)"')
_RESULT = re.compile(r'\bresult="(\w+)"')


def mark_output(markdown: str) -> str:
    """Give the result block of each executed example the class `attnkit-output`.

    markdown-exec prints a block's output in a fenced block of the language its
    `result` option names; superfences accepts `{.language .class}` there, so the
    output is marked where it is made. A console session (`source="console"`), where
    source and output share one block, is left as it is.
    """

    def fence(match: re.Match[str]) -> str:
        line = match.group(0)
        if not _EXECUTED.search(line) or 'source="console"' in line:
            return line
        return _RESULT.sub(r'result="{.\1 .attnkit-output}"', line)

    return _EXEC_FENCE.sub(fence, markdown)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    # Executed examples run while the Markdown converts, right after this hook.
    _setenv(siteplugins.ENVIRONMENT)
    attnkit.registry.reload_plugins()
    torch.set_grad_enabled(True)
    torch.set_printoptions(profile="default")
    torch.manual_seed(0)
    return mark_output(markdown)


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    # A picture's labels (tick labels, tokens, numbers) are not prose: the search
    # plugin skips an element marked so. Figure captions stay in the index.
    return re.sub(r"<svg\b(?![^>]*data-search-exclude)", "<svg data-search-exclude", html)


def _setenv(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
