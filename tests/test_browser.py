"""The built site, opened in headless Chromium as a reader would.

Every page must load without console errors, failed requests or requests to any
host but the local server; its images must load, its internal links (anchors
included) must resolve, and its math must typeset. The stage pages must show their
heatmaps, searching for "causal" must find the causal-attention page, code blocks
must have copy buttons, and the dark-mode toggle must work.

The site is the one `make test` builds (``ATTNKIT_SITE_DIR``); without that
variable, the test builds one into a temporary folder. Chromium is Debian's
(``apt-get install -y chromium``): when it is missing the test fails, it does not skip.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
INSTALL_HINT = (
    "Install Debian's Chromium (`apt-get install -y chromium`; .ci/run does this in CI), "
    "or point ATTNKIT_CHROMIUM at a Chromium binary."
)
STAGE_PAGES = ["learn/simple/", "learn/self-attention/", "learn/causal/", "learn/multihead/"]


def chromium_path() -> str:
    candidates = [
        os.environ.get("ATTNKIT_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
        shutil.which("chromium-browser"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(f"Chromium was not found. {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = os.environ.get("ATTNKIT_SITE_DIR")
    if built:
        path = Path(built)
        path = path if path.is_absolute() else ROOT / path
        assert (path / "index.html").is_file(), f"ATTNKIT_SITE_DIR={built} holds no built site"
        return path
    path = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-5000:]}"
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as error:
            pytest.fail(f"Chromium at {executable} failed to start: {error}\n{INSTALL_HINT}")
        yield chromium
        chromium.close()


class Reader:
    """One browser page that records everything that goes wrong while it is used."""

    def __init__(self, browser, base: str, **context_options: object) -> None:
        self.base = base
        self.problems: list[str] = []
        viewport = {"width": 1280, "height": 900}
        self.context = browser.new_context(viewport=viewport, **context_options)
        # Listened to, not intercepted: interception stalls the search worker's requests.
        # The machines this runs on reach no other host, so such a request fails too.
        self.context.on("request", self._only_local)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self._report(f"uncaught error: {error}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)
        self.current = ""

    def _report(self, problem: str) -> None:
        self.problems.append(f"{self.current or '(start)'}: {problem}")

    def _only_local(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in {"data", "blob"} and parts.hostname not in LOCAL_HOSTS:
            self._report(f"request to a non-local host: {request.url}")

    def _console(self, message) -> None:
        if message.type == "error":
            self._report(f"console error: {message.text}")

    def _failed(self, request) -> None:
        if urlsplit(request.url).hostname in LOCAL_HOSTS:
            self._report(f"request failed: {request.url} ({request.failure})")

    def _response(self, response) -> None:
        if response.status >= 400:
            self._report(f"HTTP {response.status} for {response.url}")

    def open(self, path: str) -> None:
        self.current = path or "/"
        self.page.goto(self.base + path, wait_until="load")
        # Math is typeset by script once the page is ready; wait for it where there is any.
        self.page.wait_for_function(
            "[...document.querySelectorAll('.arithmatex')].every(e => e.querySelector('.katex'))",
            timeout=10_000,
        )

    def close(self) -> None:
        self.context.close()


def pages(site: Path) -> list[str]:
    """Every page of the site, as a path relative to its root ("" for the home page)."""
    found = []
    for index in sorted(site.rglob("index.html")):
        relative = index.parent.relative_to(site).as_posix()
        if relative.startswith(("assets", "search")):
            continue
        found.append("" if relative == "." else f"{relative}/")
    return found


def test_every_page_loads_cleanly_and_its_links_resolve(browser, server, site):
    every_page = pages(site)
    assert len(every_page) >= 15, f"expected the whole site, found {every_page}"
    reader = Reader(browser, server)
    links: dict[str, set[str]] = {}
    anchors: dict[str, set[str]] = {}
    try:
        for path in every_page:
            reader.open(path)
            broken_images = reader.page.evaluate(
                "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.currentSrc || i.src)"
            )
            for image in broken_images:
                reader.problems.append(f"{path or '/'}: image did not load: {image}")
            if reader.page.locator(".katex-error").count():
                reader.problems.append(f"{path or '/'}: KaTeX could not typeset a formula")
            anchors[path] = set(
                reader.page.evaluate(
                    "[...document.querySelectorAll('[id], a[name]')].map(e => e.id || e.name)"
                )
            )
            for href in reader.page.evaluate(
                "[...document.querySelectorAll('a[href]')].map(a => a.href)"
            ):
                links.setdefault(href, set()).add(path or "/")
    finally:
        reader.close()

    for href, sources in sorted(links.items()):
        parts = urlsplit(href)
        if parts.scheme not in {"http", "https"} or parts.netloc != urlsplit(server).netloc:
            continue  # links off the site are not followed: it must work offline
        target = unquote(parts.path).lstrip("/")
        file = site / target
        if target == "" or target.endswith("/"):
            file = file / "index.html"
        where = ", ".join(sorted(sources))
        if not file.is_file():
            reader.problems.append(f"{where}: broken link to {href}")
            continue
        fragment = unquote(parts.fragment)
        page = target if target.endswith("/") or target == "" else None
        if fragment and page is not None and page in anchors and fragment not in anchors[page]:
            reader.problems.append(f"{where}: link to a missing anchor: {href}")
    assert not reader.problems, "\n".join(reader.problems)


def test_stage_pages_show_their_heatmaps(browser, server):
    reader = Reader(browser, server)
    try:
        for path in STAGE_PAGES:
            reader.open(path)
            figures = reader.page.locator("figure.attnkit-heatmap")
            assert figures.count() >= 1, f"{path}: no heatmap"
            for index in range(figures.count()):
                svg = figures.nth(index).locator("svg")
                box = svg.bounding_box()
                assert box and box["width"] > 150 and box["height"] > 150, f"{path}: {box}"
                assert svg.locator("text").count() > 12, f"{path}: heatmap {index} has no labels"

        reader.open("learn/causal/")
        masked = reader.page.locator("figure.attnkit-heatmap").first.get_attribute(
            "data-masked-cells"
        )
        assert masked == "15", "stage 3 must show the masked triangle: 15 hidden cells of 6 x 6"

        reader.open("learn/multihead/")
        panels = reader.page.locator("figure.attnkit-heatmap").first
        heads = int(panels.get_attribute("data-panels"))
        assert heads == 2, "stage 4 must show one panel per head"
        assert panels.locator("svg g[id*='axes_']").count() == heads
    finally:
        reader.close()
    assert not reader.problems, "\n".join(reader.problems)


def test_search_finds_the_causal_page(browser, server):
    reader = Reader(browser, server)
    try:
        reader.open("")
        search = reader.page.locator("input.md-search__input")
        search.click()
        search.press_sequentially("causal", delay=20)  # key by key, as a reader types
        results = reader.page.locator(".md-search-result__item a")
        results.first.wait_for(state="attached", timeout=20_000)
        hrefs = [results.nth(i).get_attribute("href") or "" for i in range(results.count())]
        assert any("learn/causal/" in href for href in hrefs), f"search results: {hrefs}"
    finally:
        reader.close()
    assert not reader.problems, "\n".join(reader.problems)


def test_code_blocks_have_copy_buttons(browser, server):
    reader = Reader(browser, server)
    try:
        reader.open("learn/simple/")
        # The theme's copy button (its class changed across mkdocs-material 9 releases).
        buttons = reader.page.locator("button[data-md-type='copy'], button.md-clipboard")
        buttons.first.wait_for(state="attached", timeout=10_000)  # added by script
        assert buttons.count() >= 5, "code blocks on the stage pages need copy buttons"
        target = buttons.first.get_attribute("data-clipboard-target")
        assert target and reader.page.locator(target).count() == 1
    finally:
        reader.close()
    assert not reader.problems, "\n".join(reader.problems)


def test_dark_mode_toggles_and_heatmaps_follow_it(browser, server):
    reader = Reader(browser, server, color_scheme="light")
    try:
        reader.open("learn/causal/")
        body = reader.page.locator("body")
        assert body.get_attribute("data-md-color-scheme") == "default"
        label = reader.page.locator("figure.attnkit-heatmap svg text").first
        light = label.evaluate("e => getComputedStyle(e).fill")

        reader.page.locator("label[for='__palette_1']").click()
        reader.page.wait_for_function("document.body.dataset.mdColorScheme === 'slate'")
        dark = label.evaluate("e => getComputedStyle(e).fill")
        assert light != dark, f"heatmap labels keep the colour {light} in dark mode"

        reader.page.locator("label[for='__palette_0']").click()
        reader.page.wait_for_function("document.body.dataset.mdColorScheme === 'default'")
    finally:
        reader.close()
    assert not reader.problems, "\n".join(reader.problems)
