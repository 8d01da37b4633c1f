"""The book as a reader meets it: every page opened in headless Chromium.

Checks, for the intro and every chapter: no console errors, no broken links or
images, maths typeset by MathJax, figures visible; search finds a chapter for
"LoRA"; the navigation reaches every page. Screenshots are written to
``_build/screenshots/`` for a reviewer to look at.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_book import toc_files as toc_pages

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test log readable
        pass


@pytest.fixture(scope="module")
def site(built_book: Path):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", built_book
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium; or run `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, url: str, base: str):
    """Open ``url``; return the page and the console errors and failed requests it caused."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    # The reader may be offline too: nothing outside the site may be needed to render it.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors


@pytest.mark.parametrize("name", toc_pages())
def test_page_renders_cleanly(site, browser, name):
    base, html_root = site
    page, errors = _open(browser, f"{base}/{name}.html", base)
    try:
        # maths typeset: wherever the page has maths, MathJax has replaced it
        if page.locator("div.math, span.math").count():
            page.wait_for_selector("mjx-container", timeout=15000)
            assert page.locator("mjx-container").count() >= page.locator("div.math, span.math").count()
        # every image loaded, every figure visible
        broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, f"broken images on {name}: {broken}"
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")  # collapsed blocks, opened
        for fig in page.locator("figure img").all():
            fig.scroll_into_view_if_needed()
            box = fig.bounding_box()
            assert fig.is_visible() and box and box["width"] > 100 and box["height"] > 50, f"figure not visible on {name}"
        # every link inside the site points to a file that exists
        hrefs = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
        missing = []
        for href in hrefs:
            if not href.startswith(base):
                continue
            path = unquote(urlparse(href).path).lstrip("/") or "index.html"
            target = html_root / path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                missing.append(href)
        assert not missing, f"broken links on {name}: {missing}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{Path(name).name}.png"), full_page=True)
        assert not errors, f"{name}: " + "; ".join(errors)
    finally:
        page.close()


def test_search_finds_a_chapter_for_lora(site, browser):
    base, _ = site
    page, errors = _open(browser, f"{base}/search.html?q=LoRA", base)
    try:
        page.wait_for_selector("#search-results li a", timeout=20000)
        results = page.evaluate("[...document.querySelectorAll('#search-results li a')].map(a => a.href)")
        chapters = [r for r in results if "/book/0" in r]
        assert chapters, f"search for LoRA found no chapter: {results}"
        assert not errors, "; ".join(errors)
    finally:
        page.close()


def test_navigation_reaches_every_page(site, browser):
    base, _ = site
    pages = toc_pages()
    page, errors = _open(browser, f"{base}/index.html", base)
    try:
        # the sidebar lists every chapter
        sidebar = page.evaluate("[...document.querySelectorAll('nav.bd-links a, .bd-sidebar a')].map(a => a.href)")
        for name in pages[1:]:
            assert any(h.split("#")[0].endswith(f"{name}.html") for h in sidebar), f"{name} not in the sidebar"
        # and "next" walks through all of them in order
        visited = [urlparse(page.url).path]
        for _ in range(len(pages) + 5):
            nxt = page.locator("a.right-next")
            if not nxt.count():
                break
            nxt.first.click()
            page.wait_for_load_state("load")
            visited.append(urlparse(page.url).path)
        for name in pages[1:]:
            assert any(v.endswith(f"{name}.html") for v in visited), f"'next' never reaches {name}: {visited}"
    finally:
        page.close()
