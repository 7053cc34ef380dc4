"""The built site, opened in headless Chromium as a reader would.

Every page is visited once (`tour`): it must load without console errors, failed
requests or requests to any host but the local server, and show no Python traceback;
its images must load, its internal links (anchors included) must resolve, its math
must typeset, its weight heatmaps must carry a colour bar on the fixed 0-to-1 scale
(and its value maps a signed one, symmetric about 0), and its inline figures must be
kept out of the search index (``data-search-exclude``).
Display formulas must not be clipped at 1,280 px nor, on the pages with math, at
390 px: each one fits its box or scrolls inside it.

The stage pages must show their heatmaps (and stage 4 its head-split figure), the
variant's class and the diff from the previous stage, printed output that looks unlike
source code, and exercises whose solutions open and close; so must the later
chapters (beyond the stages, the transformers guide, masks and kernels), each with
the code it explains excerpted from the repository. The stage 2 slider must
change its heatmap. Searching must find the causal page for "causal" and the stage 2
page for "sqrt", with no raw TeX in the previews; the catalog must list the example
plugin's variant and kernel; code blocks must have copy buttons, and the dark-mode
toggle must work.

The site is the one `make test` builds (``ATTNKIT_SITE_DIR``); without that
variable, the test builds one into a temporary folder. Chromium is Debian's
(``apt-get install -y chromium``): when it is missing the test fails, it does not skip.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
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
# Each stage page's class lives in this file of plugins/; a page's diff goes from the
# previous stage's file to its own.
STAGE_FILES = {
    "learn/simple/": "plugins/simple.py",
    "learn/self-attention/": "plugins/self_attention.py",
    "learn/causal/": "plugins/causal.py",
    "learn/multihead/": "plugins/multihead.py",
}
# The later chapters' pages, each with the file its code excerpts come from: they end
# in exercises as the stage pages do.
CHAPTER_FILES = {
    "beyond/gqa/": "plugins/gqa.py",
    "beyond/mla/": "plugins/mla.py",
    "beyond/window/": "plugins/options.py",
    "beyond/positions/": "plugins/options.py",
    "beyond/stability/": "plugins/options.py",
    "guide/transformers/": "attnkit/integrations/transformers.py",
    "reference/masks/": "attnkit/masks.py",
    "reference/kernels/": "plugins/kernels.py",
}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Raw TeX that must not reach a search result's preview.
RAW_TEX = re.compile(r"\\[()\[\]]|\\(?:frac|sqrt|top|mathrm|text|operatorname)\b")


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

    def __init__(
        self, browser, base: str, viewport: dict[str, int] = DESKTOP, **context_options: object
    ) -> None:
        self.base = base
        self.problems: list[str] = []
        self.local_requests = 0
        self.context = browser.new_context(viewport=viewport, **context_options)
        # Listened to, not intercepted: interception stalls the search worker's requests.
        # The machines this runs on reach no other host, so such a request fails too.
        self.context.on("request", self._only_local)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self._report(f"uncaught error: {error}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("requestfinished", lambda request: self.opened_at.pop(request, None))
        self.page.on("response", self._response)
        self.current = ""
        # Which page visit each pending request belongs to: leaving a page cancels its
        # unfinished requests (net::ERR_ABORTED), which is no fault of the site.
        self.visits = 0
        self.opened_at: dict[object, int] = {}

    def _report(self, problem: str) -> None:
        self.problems.append(f"{self.current or '(start)'}: {problem}")

    def _only_local(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in {"data", "blob"} and parts.hostname not in LOCAL_HOSTS:
            self._report(f"request to a non-local host: {request.url}")
        elif parts.hostname in LOCAL_HOSTS:
            self.local_requests += 1
            self.opened_at[request] = self.visits

    def _console(self, message) -> None:
        if message.type == "error":
            self._report(f"console error: {message.text}")

    def _failed(self, request) -> None:
        visit = self.opened_at.pop(request, self.visits)
        if "ERR_ABORTED" in (request.failure or "") and visit < self.visits:
            return  # cancelled when the reader went on to the next page
        if urlsplit(request.url).hostname in LOCAL_HOSTS:
            self._report(f"request failed: {request.url} ({request.failure})")

    def _response(self, response) -> None:
        if response.status >= 400:
            self._report(f"HTTP {response.status} for {response.url}")

    def open(self, path: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.current = path or "/"
        self.visits += 1
        self.page.goto(self.base + path, wait_until="load")
        # Math is typeset by script once the page is ready; wait for it where there is any.
        self.page.wait_for_function(
            "[...document.querySelectorAll('.arithmatex')].every(e => e.querySelector('.katex'))",
            timeout=10_000,
        )
        # Then docs/javascripts/formulas.js fits each display formula (data-fit), once
        # more when the fonts have loaded: wait for that pass (registered after it).
        try:
            self.page.wait_for_function(
                "[...document.querySelectorAll('div.arithmatex')].every(e => e.dataset.fit)",
                timeout=5_000,
            )
        except PlaywrightTimeout:
            self._report("formulas.js left a div.arithmatex without data-fit")
        self.page.evaluate(
            "() => new Promise(done => document.fonts.ready.then("
            "() => requestAnimationFrame(() => requestAnimationFrame(done))))"
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


# What a page shows, read in one call while the tour is on it.
PAGE_FACTS = r"""() => {
  const article = document.querySelector("article") || document.body;
  // A Python traceback with a frame ("File ...") is a failed example; a doctest's
  // expected exception shows "..." instead of frames and is left alone. The text
  // includes what is folded away (an exercise's solution).
  const tracebacks = [
    ...document.body.textContent.matchAll(
      /Traceback \(most recent call last\):\n(?=[ \t]+File ")(?:[ \t]+.*\n)+(.*)/g
    ),
  ].map((match) => match[1].trim());
  const heatmaps = [...document.querySelectorAll("figure.attnkit-heatmap")].map((figure) => {
    const bar = figure.querySelector("g.attnkit-colorbar, g[id$='-colorbar']");
    const box = bar && bar.getBoundingClientRect();
    return {
      id: figure.id,
      valuemap: figure.classList.contains("attnkit-valuemap"),
      scale: figure.dataset.colorbar ?? null,
      bar: bar && {
        width: box.width,
        height: box.height,
        labels: [...bar.querySelectorAll("text")].map((text) => text.textContent.trim()),
      },
    };
  });
  // The page's own inline figures: not the theme's icons, nor the glyphs KaTeX draws
  // when it typesets a formula in the browser (the built page holds only the TeX).
  const svgs = [...article.querySelectorAll("svg")].filter(
    (svg) =>
      !svg.parentElement.closest("svg") && !svg.closest(".katex, .twemoji, .md-icon, button")
  );
  const unexcluded = svgs
    .filter((svg) => !svg.closest("[data-search-exclude]"))
    .map((svg) => svg.getAttribute("aria-label") || svg.closest("[id]")?.id || "an svg");
  return { tracebacks, heatmaps, svgs: svgs.length, unexcluded };
}"""

# Whether the display formulas fit at the window's width: each box (div.arithmatex) is
# no wider than the window, and its content no wider than the box, unless formulas.js
# marked it data-fit="scrolls" and it scrolls (overflow-x auto or scroll; headless
# Chromium hides scrollbars, so a visible one cannot be seen). Inline formulas and the
# page itself must not run past the window's edge either.
FORMULA_FIT = r"""() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  const named = (element, index, kind) => {
    const tex = element.querySelector("annotation")?.textContent ?? element.textContent;
    return `${kind} ${index + 1} (${tex.trim().replace(/\s+/g, " ").slice(0, 50)})`;
  };
  const boxes = [...document.querySelectorAll("div.arithmatex")];
  boxes.forEach((box, index) => {
    const name = named(box, index, "display formula");
    const fit = box.dataset.fit;
    const overflow = getComputedStyle(box).overflowX;
    const scrolls = fit === "scrolls" && (overflow === "auto" || overflow === "scroll");
    const rect = box.getBoundingClientRect();
    if (!["fits", "scaled", "scrolls"].includes(fit)) {
      problems.push(`${name}: data-fit="${fit}" (formulas.js did not fit it)`);
    }
    if (fit === "scrolls" && !scrolls) {
      problems.push(`${name}: data-fit="scrolls" but overflow-x is ${overflow}: clipped`);
    } else if (box.scrollWidth > box.clientWidth + 1 && !scrolls) {
      problems.push(
        `${name}: clipped, ${box.scrollWidth}px of formula in a ${box.clientWidth}px box ` +
          `(data-fit="${fit}", overflow-x ${overflow})`
      );
    }
    if (rect.left < -1 || rect.right > width + 1) {
      problems.push(`${name}: its box spans ${Math.round(rect.left)}-${Math.round(rect.right)}px`
        + ` of a ${width}px window`);
    }
  });
  const spans = [...document.querySelectorAll("span.arithmatex")];
  spans.forEach((span, index) => {
    let scroller = span.parentElement;
    while (scroller && !["auto", "scroll"].includes(getComputedStyle(scroller).overflowX)) {
      scroller = scroller.parentElement;
    }
    const rect = span.getBoundingClientRect();
    if (!scroller && (rect.left < -1 || rect.right > width + 1)) {
      problems.push(`${named(span, index, "inline formula")}: runs past the window's edge`
        + ` (${Math.round(rect.left)}-${Math.round(rect.right)}px of ${width}px)`);
    }
  });
  const page = document.documentElement.scrollWidth;
  if (page > width + 1) problems.push(`the page is ${page}px wide in a ${width}px window`);
  const fits = boxes.map((box) => box.dataset.fit);
  return { formulas: boxes.length + spans.length, fits, problems };
}"""


@dataclass
class Tour:
    """What one visit to every page of the site found (at the desktop width)."""

    pages: list[str]
    problems: list[str] = field(default_factory=list)
    local_requests: int = 0
    links: dict[str, set[str]] = field(default_factory=dict)
    anchors: dict[str, set[str]] = field(default_factory=dict)
    facts: dict[str, dict] = field(default_factory=dict)
    formulas: dict[str, dict] = field(default_factory=dict)


@pytest.fixture(scope="module")
def tour(browser, server, site) -> Tour:
    """Every page, visited once in one browser page; the tests below read what it found."""
    result = Tour(pages(site))
    assert len(result.pages) >= 15, f"expected the whole site, found {result.pages}"
    reader = Reader(browser, server)
    try:
        for path in result.pages:
            name = path or "/"
            reader.open(path)
            broken_images = reader.page.evaluate(
                "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.currentSrc || i.src)"
            )
            for image in broken_images:
                reader.problems.append(f"{name}: image did not load: {image}")
            if reader.page.locator(".katex-error").count():
                reader.problems.append(f"{name}: KaTeX could not typeset a formula")
            result.anchors[path] = set(
                reader.page.evaluate(
                    "[...document.querySelectorAll('[id], a[name]')].map(e => e.id || e.name)"
                )
            )
            for href in reader.page.evaluate(
                "[...document.querySelectorAll('a[href]')].map(a => a.href)"
            ):
                result.links.setdefault(href, set()).add(name)
            result.facts[path] = reader.page.evaluate(PAGE_FACTS)
            result.formulas[path] = reader.page.evaluate(FORMULA_FIT)
    finally:
        reader.close()
    result.problems = reader.problems
    result.local_requests = reader.local_requests
    return result


def test_every_page_loads_cleanly_and_its_links_resolve(tour, server, site):
    problems = list(tour.problems)
    # The request listener saw the site's own requests, so it would see any other.
    assert tour.local_requests > len(tour.pages), "the request listener saw no requests"
    for href, sources in sorted(tour.links.items()):
        parts = urlsplit(href)
        if parts.scheme not in {"http", "https"} or parts.netloc != urlsplit(server).netloc:
            continue  # links off the site are not followed: it must work offline
        target = unquote(parts.path).lstrip("/")
        file = site / target
        if target == "" or target.endswith("/"):
            file = file / "index.html"
        where = ", ".join(sorted(sources))
        if not file.is_file():
            problems.append(f"{where}: broken link to {href}")
            continue
        fragment = unquote(parts.fragment)
        page = target if target.endswith("/") or target == "" else None
        known = page is not None and page in tour.anchors
        if fragment and known and fragment not in tour.anchors[page]:
            problems.append(f"{where}: link to a missing anchor: {href}")
    assert not problems, "\n".join(problems)


def test_no_page_shows_a_traceback(tour):
    problems = [
        f"{path or '/'}: a traceback in the page: {error}"
        for path, facts in tour.facts.items()
        for error in facts["tracebacks"]
    ]
    assert not problems, "\n".join(problems)


def test_heatmaps_have_a_colour_bar_weights_on_one_scale(tour):
    """Weight heatmaps share the 0-to-1 scale; value maps (signed biases and scores)
    carry a bar of their own, symmetric about 0."""
    problems = []
    checked = signed = 0
    for path, facts in tour.facts.items():
        for figure in facts["heatmaps"]:
            where = f"{path}: figure.attnkit-heatmap#{figure['id']}"
            if figure["valuemap"]:
                signed += 1
                bar = figure["bar"]
                if figure["scale"] != "signed":
                    problems.append(f"{where}: data-colorbar={figure['scale']!r}, not 'signed'")
                if bar is None:
                    problems.append(f"{where}: no colour bar")
                elif "0" not in bar["labels"] or not any(
                    label.startswith(("\u2212", "-")) for label in bar["labels"]
                ):
                    problems.append(f"{where}: colour bar labelled {bar['labels']}, not -m to m")
                continue
            checked += 1
            if figure["scale"] != "0-1":
                problems.append(f"{where}: data-colorbar={figure['scale']!r}, not '0-1'")
            bar = figure["bar"]
            if bar is None:
                problems.append(f"{where}: no colour bar")
                continue
            if bar["height"] < 100 or bar["width"] < 10:
                problems.append(f"{where}: colour bar drawn {bar['width']:.0f}x{bar['height']:.0f}")
            if not {"0", "1"} <= set(bar["labels"]):
                problems.append(f"{where}: colour bar labelled {bar['labels']}, not 0 to 1")
    stage_figures = sum(len(tour.facts[path]["heatmaps"]) for path in STAGE_PAGES)
    assert stage_figures >= 7, f"the stage pages show {stage_figures} heatmaps"
    assert checked >= 15, f"only {checked} weight heatmaps in the whole site"
    assert signed >= 2, f"only {signed} value maps in the whole site"
    assert not problems, "\n".join(problems)


def test_inline_figures_are_kept_out_of_search(tour):
    problems = [
        f"{path or '/'}: inline svg without data-search-exclude: {label}"
        for path, facts in tour.facts.items()
        for label in facts["unexcluded"]
    ]
    figures = sum(facts["svgs"] for facts in tour.facts.values())
    assert figures >= 20, f"only {figures} inline figures in the whole site"
    assert not problems, "\n".join(problems)


def test_formulas_are_not_clipped_at_desktop_and_phone_widths(tour, browser, server):
    problems = [
        f"{path or '/'} at {DESKTOP['width']}px: {problem}"
        for path, found in tour.formulas.items()
        for problem in found["problems"]
    ]
    with_math = [path for path, found in tour.formulas.items() if found["formulas"]]
    assert "learn/stages/" in with_math and "learn/causal/" in with_math, with_math
    reader = Reader(browser, server, viewport=PHONE)
    on_phone = {}
    try:
        for path in with_math:
            reader.open(path)
            on_phone[path] = found = reader.page.evaluate(FORMULA_FIT)
            assert found["formulas"] == tour.formulas[path]["formulas"], path
            problems.extend(
                f"{path or '/'} at {PHONE['width']}px: {problem}" for problem in found["problems"]
            )
    finally:
        reader.close()
    problems.extend(reader.problems)
    # The overview's four-line formula does not fit a phone at full size: formulas.js
    # must have had to act there (a check that the phone width took effect).
    fits = on_phone["learn/stages/"]["fits"]
    assert {"scaled", "scrolls"} & set(fits), f"learn/stages/ at 390px: data-fit {fits}"
    assert not problems, "\n".join(problems)


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

        split = reader.page.locator("figure.attnkit-headsplit")
        assert split.count() == 1, "learn/multihead/: no figure.attnkit-headsplit"
        assert split.get_attribute("data-heads") == "2", "learn/multihead/: head split of 2 heads"
        box = split.locator("svg").bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150, f"learn/multihead/ split: {box}"
        labels = split.locator("svg text").all_text_contents()
        for label in (".view(b, t, 2, 2)", ".transpose(1, 2)", "head 1", "head 2"):
            assert label in labels, f"learn/multihead/: the head split has no label {label!r}"
    finally:
        reader.close()
    assert not reader.problems, "\n".join(reader.problems)


# Each stage page's code blocks and exercises, read in one call.
STAGE_CODE = r"""() => {
  const style = (element, pseudo) => element && getComputedStyle(element, pseudo);
  const excerpts = [...document.querySelectorAll(".highlight")]
    .filter((block) => block.querySelector("span.filename"))
    .map((block) => ({
      file: block.querySelector("span.filename").textContent.trim(),
      code: block.querySelector("code").textContent,
    }));
  const diffs = [...document.querySelectorAll(".language-diff")].map((block) => {
    const inserted = block.querySelectorAll(".gi");
    const deleted = block.querySelectorAll(".gd");
    return {
      text: block.querySelector("code").textContent,
      inserted: inserted.length,
      deleted: deleted.length,
      insertedBackground: style(inserted[0])?.backgroundColor ?? null,
      deletedBackground: style(deleted[0])?.backgroundColor ?? null,
    };
  });
  const look = (block) => block && {
    label: style(block, "::before").content,
    labelShown: style(block, "::before").display !== "none",
    border: style(block).borderLeftWidth + " " + style(block).borderLeftStyle,
    background: style(block.querySelector("code")).backgroundColor,
  };
  const outputs = [...document.querySelectorAll(".attnkit-output")];
  const source = [...document.querySelectorAll(".language-python.highlight")].find(
    (block) => !block.classList.contains("attnkit-output")
  );
  return {
    excerpts,
    diffs,
    outputs: outputs.length,
    unlabelled: outputs.map(look).filter((o) => o.label !== '"Output"' || !o.labelShown).length,
    output: look(outputs[0]),
    source: look(source),
  };
}"""


def _is_open(details) -> bool:
    return details.evaluate("details => details.open")


def check_exercises(reader, path: str, problems: list[str]) -> None:
    """At least two exercises on the open page, each with one closed solution that opens
    on a click and closes on a second one."""
    exercises = reader.page.locator(".admonition.question")
    if exercises.count() < 2:
        problems.append(f"{path}: {exercises.count()} exercises (.admonition.question)")
    for index in range(exercises.count()):
        where = f"{path}: exercise {index + 1}'s solution"
        solution = exercises.nth(index).locator("details")
        if solution.count() != 1:
            problems.append(f"{where}: {solution.count()} details elements, not 1")
            continue
        summary = solution.locator(":scope > summary")
        body = solution.locator(":scope > :not(summary)").first
        if "Solution" not in summary.inner_text():
            problems.append(f"{where}: summary reads {summary.inner_text()!r}")
        if _is_open(solution) or body.is_visible():
            problems.append(f"{where} is open before it is clicked")
        summary.click()
        if not (_is_open(solution) and body.is_visible()):
            problems.append(f"{where} does not open on a click")
        elif not body.inner_text().strip():
            problems.append(f"{where} is empty")
        summary.click()
        if _is_open(solution) or body.is_visible():
            problems.append(f"{where} does not close on a second click")


def test_stage_pages_show_the_class_the_diff_output_and_exercises(browser, server):
    """Each stage page ends with its class, and the step from the previous stage as a
    diff; its printed output is labelled and boxed unlike source code; its exercises'
    solutions are closed, open on a click, and close again."""
    problems = []
    reader = Reader(browser, server)
    try:
        for number, path in enumerate(STAGE_PAGES):
            reader.open(path)
            code = reader.page.evaluate(STAGE_CODE)
            own = STAGE_FILES[path]
            if not any(
                e["file"] == own and "class " in e["code"] and "def forward" in e["code"]
                for e in code["excerpts"]
            ):
                problems.append(f"{path}: no code block titled {own} with the variant's class")
            if number:
                previous = STAGE_FILES[STAGE_PAGES[number - 1]]
                diffs = [d for d in code["diffs"] if f"--- {previous}" in d["text"]]
                if not diffs:
                    problems.append(f"{path}: no .language-diff block from {previous}")
                for diff in diffs:
                    if f"+++ {own}" not in diff["text"]:
                        problems.append(f"{path}: the diff from {previous} does not go to {own}")
                    if diff["inserted"] < 3 or diff["deleted"] < 2:
                        problems.append(
                            f"{path}: the diff marks {diff['inserted']} added and "
                            f"{diff['deleted']} removed lines (.gi/.gd)"
                        )
                    colours = {diff["insertedBackground"], diff["deletedBackground"]}
                    if len(colours) < 2 or "rgba(0, 0, 0, 0)" in colours:
                        problems.append(f"{path}: added and removed lines look alike: {colours}")

            output, source = code["output"], code["source"]
            if not code["outputs"] or output is None or source is None:
                problems.append(f"{path}: no .attnkit-output block beside the source code")
            else:
                if code["unlabelled"]:
                    problems.append(
                        f"{path}: {code['unlabelled']} of {code['outputs']} .attnkit-output "
                        f'blocks have no visible ::before label "Output"'
                    )
                if (output["border"], output["background"]) == (
                    source["border"],
                    source["background"],
                ):
                    problems.append(f"{path}: .attnkit-output looks like source code: {output}")

            check_exercises(reader, path, problems)
    finally:
        reader.close()
    problems.extend(reader.problems)
    assert not problems, "\n".join(problems)


def test_later_chapters_show_their_code_and_end_in_exercises(browser, server):
    """The chapters after the four stages (beyond, the transformers guide, masks and
    kernels) show the code they explain, excerpted from the repository, and end in
    exercises whose solutions open and close."""
    problems = []
    reader = Reader(browser, server)
    try:
        for path, own in CHAPTER_FILES.items():
            reader.open(path)
            code = reader.page.evaluate(STAGE_CODE)
            if not any(excerpt["file"] == own for excerpt in code["excerpts"]):
                titles = sorted({excerpt["file"] for excerpt in code["excerpts"]})
                problems.append(f"{path}: no code block titled {own} (titled: {titles})")
            if code["unlabelled"]:
                problems.append(f"{path}: {code['unlabelled']} .attnkit-output blocks unlabelled")
            check_exercises(reader, path, problems)
    finally:
        reader.close()
    problems.extend(reader.problems)
    assert not problems, "\n".join(problems)


def test_scale_slider_changes_the_heatmap(browser, server):
    path = "learn/self-attention/"
    reader = Reader(browser, server)
    try:
        reader.open(path)
        figure = reader.page.locator("figure.attnkit-scale-heatmap")
        assert figure.count() == 1, f"{path}: no figure.attnkit-scale-heatmap"
        ready = figure.evaluate(
            "figure => new Promise(done => { const start = performance.now();"
            " (function poll() { if (figure.dataset.ready === 'true') done(true);"
            " else if (performance.now() - start > 5000) done(false);"
            " else requestAnimationFrame(poll); })(); })"
        )
        assert ready, f"{path}: figure.attnkit-scale-heatmap never got data-ready='true'"
        slider = figure.locator("input.attnkit-scale-slider")
        assert slider.is_enabled(), f"{path}: the slider is still disabled after its script ran"
        assert figure.locator("g.attnkit-colorbar").count() == 1, f"{path}: slider figure bar"

        def state() -> dict:
            return figure.evaluate(
                """figure => ({
                  scale: figure.dataset.scale,
                  value: figure.querySelector('input.attnkit-scale-slider').value,
                  readout: figure.querySelector('.attnkit-scale-readout').textContent,
                  labels: [...figure.querySelectorAll('.attnkit-scale-cell text')]
                    .map(text => Number(text.textContent)),
                  fills: [...figure.querySelectorAll('.attnkit-scale-cell rect')]
                    .map(rect => rect.getAttribute('fill')),
                })"""
            )

        start = state()
        assert (start["scale"], start["value"]) == ("sqrt", "1"), f"{path}: starts at {start}"
        assert len(start["labels"]) == 36, f"{path}: {len(start['labels'])} cells, not 6 x 6"
        slider.focus()
        slider.press("Home")  # as a reader would, from the keyboard
        unscaled = state()
        slider.press("End")
        by_d_k = state()
        reader.page.keyboard.press("ArrowLeft")
        back = state()
        assert (unscaled["scale"], by_d_k["scale"], back["scale"]) == ("1", "d_k", "sqrt"), (
            f"{path}: data-scale after Home, End, ArrowLeft: "
            f"{unscaled['scale']}, {by_d_k['scale']}, {back['scale']}"
        )
        for moved in (unscaled, by_d_k):
            assert moved["fills"] != start["fills"], f"{path}: the cells keep their colours"
            assert moved["labels"] != start["labels"], f"{path}: the cells keep their numbers"
            assert moved["readout"] != start["readout"], f"{path}: the readout stays put"
        assert (back["fills"], back["labels"]) == (start["fills"], start["labels"]), (
            f"{path}: back at sqrt(d_k), the cells differ from what they first showed"
        )

        # Dividing by less saturates the softmax: each row's largest weight grows.
        def largest(labels: list[float]) -> list[float]:
            return [max(labels[row * 6 : row * 6 + 6]) for row in range(6)]

        for row, (low, middle, high) in enumerate(
            zip(
                largest(by_d_k["labels"]),
                largest(start["labels"]),
                largest(unscaled["labels"]),
                strict=True,
            )
        ):
            assert low <= middle <= high, f"{path}: row {row}'s largest weight {low, middle, high}"
        assert max(unscaled["labels"]) > 0.9 > max(by_d_k["labels"]), f"{path}: no saturation"
    finally:
        reader.close()
    assert not reader.problems, "\n".join(reader.problems)


def test_search_finds_pages_in_plain_words(browser, server):
    reader = Reader(browser, server)
    try:
        reader.open("")
        search = reader.page.locator("input.md-search__input")
        search.click()
        for word, page in (("causal", "learn/causal/"), ("sqrt", "learn/self-attention/")):
            search.fill("")
            search.press_sequentially(word, delay=20)  # key by key, as a reader types
            results = reader.page.locator(f".md-search-result__item a[href*='h={word}']")
            results.first.wait_for(state="attached", timeout=20_000)
            hrefs = [results.nth(i).get_attribute("href") or "" for i in range(results.count())]
            assert any(page in href for href in hrefs), f"search for {word!r}: {hrefs}"
            previews = reader.page.locator(".md-search-result__list").text_content() or ""
            assert word in previews.lower(), f"search for {word!r}: no previews"
            raw = sorted(set(RAW_TEX.findall(previews)))
            assert not raw, f"search for {word!r}: raw TeX {raw} in the result previews"
    finally:
        reader.close()
    assert not reader.problems, "\n".join(reader.problems)


def test_catalog_lists_the_example_plugin(browser, server):
    reader = Reader(browser, server)
    try:
        reader.open("catalog/")
        # The tables, each as its header row and body rows of cell texts.
        tables = reader.page.evaluate(
            """() => [...document.querySelectorAll('article table')].map(table => ({
              head: [...table.tHead.rows[0].cells].map(cell => cell.textContent.trim()),
              rows: [...table.tBodies[0].rows].map(
                row => [...row.cells].map(cell => cell.textContent.trim())),
            }))"""
        )

        def table_with(column: str) -> dict[str, list[str]]:
            found = [table for table in tables if column in table["head"]]
            assert found, f"catalog/: no table with a {column!r} column"
            return {row[0]: row for row in found[0]["rows"]}

        variants, kernels = table_with("stage"), table_with("returns weights")
        assert "causal" in variants, f"catalog/: the variants table has {sorted(variants)}"
        assert "sdpa" in kernels, f"catalog/: the kernels table has {sorted(kernels)}"
        for table, name in ((variants, "window"), (kernels, "chunked")):
            assert name in table, f"catalog/: the example plugin's {name!r} is missing"
            assert "attnkit-window" in table[name][-1], f"catalog/: {name}'s row {table[name]}"
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
