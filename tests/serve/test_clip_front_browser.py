"""clip-retrieval's own web front-end, in headless Chromium, searching a bindspace server on another origin.

The front-end is the built clip-front that the clip-retrieval wheel ships (front/build: index.html
and its bundle), served as is from a second loopback port, so the browser enforces CORS exactly
as it does for a user: with `--cors-origin` naming the front's origin the results appear, without
it the browser blocks the answers. Needs Playwright, a Chromium binary (as test_serve_browser.py)
and `pip install --no-deps clip-retrieval`; skipped cleanly without them.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from serve_helpers import chromium_browser, chromium_or_skip, live_server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = chromium_or_skip()

ARTIFACTS = Path(os.environ.get("BINDSPACE_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))
pytestmark = pytest.mark.slow


def front_build() -> Path:
    """The built clip-front inside the installed clip-retrieval wheel (site-packages/front/build)."""
    spec = importlib.util.find_spec("clip_retrieval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("clip-retrieval is not installed (pip install --no-deps clip-retrieval)")
    build = Path(list(spec.submodule_search_locations)[0]).parent / "front" / "build"
    if not (build / "index.html").is_file():
        pytest.skip(f"this clip-retrieval wheel ships no built front-end ({build})")
    return build


@contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """A plain HTTP server for `folder` on a free loopback port (another origin than the API); yields its origin."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="clip-front-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def browser():
    with chromium_browser(CHROMIUM) as launched:
        yield launched


def open_front(browser, front: str, api: str):
    """clip-front pointed at `api` with the query "a dog", as a user opens it; returns (page, knn answers seen)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    answers: list = []
    failures: list[str] = []
    page.on("response", lambda r: answers.append(r) if r.url.endswith("/knn-service") else None)
    page.on("requestfailed", lambda r: failures.append(r.url) if r.url.endswith("/knn-service") else None)
    page.goto(f"{front}/?{urlencode({'back': api, 'index': 'holiday', 'query': 'a dog'})}")
    page.failures = failures
    return page, answers


def test_clip_front_searches_bindspace_across_origins(browser, tiny_model, memory_store):
    from bindspace.serve import create_app
    from bindspace.serve.clip_back import router
    from bindspace.serve.cors import CorsPolicy

    with static_site(front_build()) as front:
        app = create_app(tiny_model, memory_store, routers=[router], extras={"index_name": "holiday"},
                         cors=CorsPolicy((front,)))
        with live_server(app) as api:
            page, answers = open_front(browser, front, api)
            results = page.locator("clip-front img.pic")
            sync_api.expect(results.first).to_be_visible(timeout=30_000)
            assert answers and all(r.status == 200 for r in answers), [(r.status, r.url) for r in answers]
            assert answers[0].headers["access-control-allow-origin"] == front
            sources = results.evaluate_all("els => els.map(i => i.src)")
            assert sources and all(src.startswith(f"{api}/v1/items/") for src in sources), sources
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "clip_front_bindspace.png"))


def test_without_cors_the_browser_blocks_the_answers(browser, tiny_model, memory_store):
    from bindspace.serve import create_app
    from bindspace.serve.clip_back import router

    with static_site(front_build()) as front:
        app = create_app(tiny_model, memory_store, routers=[router], extras={"index_name": "holiday"})
        with live_server(app) as api:
            page, _ = open_front(browser, front, api)
            page.wait_for_timeout(3000)
            assert page.locator("clip-front img.pic").count() == 0
