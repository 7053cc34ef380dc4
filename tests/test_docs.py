"""The documentation stays honest about the code and stays offline.

Every hook spec is documented, with its signature, on the hook reference page;
every public name has an API entry; the nav lists every page; the stage pages
compute what they show; and nothing a page loads comes from another host.
"""

from __future__ import annotations

import inspect
import json
import pkgutil
import re
from pathlib import Path

import pytest
from mkdocs.config import load_config

import attnkit
import attnkit_builtins
from attnkit import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOKS_PAGE = DOCS / "reference" / "hooks.md"
REFERENCE = DOCS / "reference"


@pytest.fixture(scope="module")
def config():
    return load_config(str(ROOT / "mkdocs.yml"))


def hook_specs() -> list:
    return [
        function
        for _, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "attnkit_spec")
    ]


def markdown_sources() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "node_modules" not in p.parts)


def sections(text: str) -> dict[str, str]:
    """The level-2 sections of a page: heading line -> body."""
    parts = re.split(r"^(## .*)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_the_hook_specs_are_found():
    # Guards the tests below against silently checking nothing.
    assert "register_variants" in [spec.__name__ for spec in hook_specs()]


@pytest.mark.parametrize("spec", hook_specs(), ids=lambda spec: spec.__name__)
def test_every_hook_spec_is_documented_with_its_signature(spec):
    parameters = ", ".join(inspect.signature(spec).parameters)
    heading = f"## `{spec.__name__}({parameters})`"
    found = sections(HOOKS_PAGE.read_text())
    assert heading in found, (
        f"{HOOKS_PAGE.relative_to(ROOT)} needs a section headed {heading!r} for the hook "
        f"spec {spec.__name__}; its headings are {list(found)}"
    )
    body = found[heading]
    assert "@attnkit.hookimpl" in body and f"def {spec.__name__}(" in body, (
        f"the {spec.__name__} section needs an example implementation"
    )
    for parameter in inspect.signature(spec).parameters:
        assert f"`{parameter}`" in body, f"the {spec.__name__} section must explain {parameter!r}"


def documented_objects() -> set[str]:
    """Everything rendered with a `::: identifier` line on an API page."""
    found = set()
    for page in REFERENCE.glob("*.md"):
        found.update(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.MULTILINE))
    return found


@pytest.mark.parametrize("name", attnkit.__all__)
def test_every_public_name_is_documented(name):
    assert f"attnkit.{name}" in documented_objects(), (
        f"attnkit.{name} is in attnkit.__all__ but no page under docs/reference/ renders "
        f"it; add '::: attnkit.{name}' to the page where a reader would look for it"
    )


def builtin_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.iter_modules(attnkit_builtins.__path__, attnkit_builtins.__name__ + ".")
    ]


@pytest.mark.parametrize("module", builtin_modules())
def test_every_builtin_plugin_is_documented(module):
    assert module in documented_objects(), f"docs/reference/builtins.md must render {module}"


def nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            pages += nav_pages(value)
        elif isinstance(value, str) and "://" not in value:
            pages.append(value)
    return pages


def test_the_nav_lists_every_page_and_only_pages_that_exist(config):
    listed = nav_pages(config["nav"])
    exclude = config["exclude_docs"]
    pages = {
        path.relative_to(DOCS).as_posix()
        for path in markdown_sources()
        if not (exclude and exclude.match_file(path.relative_to(DOCS).as_posix()))
    }
    assert len(listed) == len(set(listed)), "a page is listed twice in the nav"
    missing_files = sorted(set(listed) - pages)
    assert not missing_files, (
        f"the nav of mkdocs.yml lists pages that do not exist: {missing_files}"
    )
    unlisted = sorted(pages - set(listed))
    assert not unlisted, f"add these pages to the nav of mkdocs.yml: {unlisted}"


# A page may link to other sites, but must not load anything from one.
REMOTE_ASSET = re.compile(
    r"""<(?:script|img|iframe|source|video|audio|embed)\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//"""
    r"""|@import\s+(?:url\()?\s*["']?(?:https?:)?//"""
    r"""|!\[[^\]]*\]\(\s*(?:https?:)?//""",
    re.IGNORECASE,
)


def own_front_end_files() -> list[Path]:
    suffixes = {".md", ".html", ".css", ".js", ".svg"}
    return sorted(
        path
        for path in DOCS.rglob("*")
        if path.suffix in suffixes and "_assets" not in path.relative_to(DOCS).parts
    )


@pytest.mark.parametrize(
    "path", own_front_end_files(), ids=lambda path: path.relative_to(DOCS).as_posix()
)
def test_no_page_loads_assets_from_another_host(path):
    found = REMOTE_ASSET.findall(path.read_text())
    assert not found, f"{path.relative_to(ROOT)} loads something from another host: {found}"


def test_the_config_keeps_the_build_strict_and_offline(config):
    assert config["strict"] is True
    assert config["theme"]["font"] is False, "theme.font must stay false: no Google Fonts"
    assert not config["repo_url"], "a repo_url makes every page fetch repository facts online"
    for asset in [*config["extra_css"], *(str(script) for script in config["extra_javascript"])]:
        assert "://" not in asset and not asset.startswith("//"), f"remote asset {asset}"
    handler = config["plugins"]["mkdocstrings"].config["handlers"].get("python", {})
    assert not handler.get("inventories") and not handler.get("import"), (
        "mkdocstrings inventories are fetched from the network; the build must not need them"
    )


def test_katex_is_pinned_and_locked():
    package = json.loads((DOCS / "_assets" / "package.json").read_text())
    lock = json.loads((DOCS / "_assets" / "package-lock.json").read_text())
    version = package["dependencies"]["katex"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin KaTeX to an exact version"
    assert lock["packages"]["node_modules/katex"]["version"] == version, (
        "package-lock.json is out of date: run `npm install --prefix docs/_assets`"
    )


STAGES = {
    "learn/simple.md": ["simple"],
    "learn/self-attention.md": ["self_attention"],
    "learn/causal.md": ["causal"],
    "learn/multihead.md": ["multihead_wrapper", "multihead"],
}


@pytest.mark.parametrize("page", sorted(STAGES))
def test_stage_pages_compute_what_they_show(page):
    text = (DOCS / page).read_text()
    executed = re.findall(r'^```python exec="on".*?\n(.*?)^```', text, flags=re.M | re.S)
    code = "\n".join(executed)
    for variant in STAGES[page]:
        assert re.search(rf'attnkit\.create\(\s*"{variant}"', code), (
            f"{page} must build {variant!r} through the registry in an executed block"
        )
    assert "heatmap(" in code, f"{page} must draw its attention weights at build time"
    assert "need_weights=True" in code, f"{page} must print the attention weights"
    assert re.search(r"^\$\$$", text, flags=re.MULTILINE), f"{page} must typeset its math"
