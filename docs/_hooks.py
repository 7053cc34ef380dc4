"""MkDocs hooks for the attnkit site (declared under `hooks:` in mkdocs.yml).

- Serves KaTeX from the site itself: `make docs-assets` installs it from npm into
  docs/_assets/node_modules, and this hook adds the files the pages load to the
  site under assets/katex/. Nothing is fetched from a CDN.
- Puts docs/_scripts on sys.path, so that the executed examples can import the
  heatmap helper.
- Gives every page a fresh start: the executed examples of one page cannot change
  what another page sees (the registry, torch's grad mode, print options and random
  seed), and the same sources build the same site.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

import attnkit

DOCS = Path(__file__).parent
SCRIPTS = DOCS / "_scripts"
KATEX_DIST = DOCS / "_assets" / "node_modules" / "katex" / "dist"
# What the pages load: the library, its stylesheet, its fonts, and auto-render.
KATEX_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts/*")


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return config


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


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    # Executed examples run while the Markdown converts, right after this hook.
    attnkit.registry.reload_plugins()
    torch.set_grad_enabled(True)
    torch.set_printoptions(profile="default")
    torch.manual_seed(0)
    return markdown
