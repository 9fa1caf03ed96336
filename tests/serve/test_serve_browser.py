"""End to end: a real uvicorn server on 127.0.0.1 and headless Chromium driving the search page.

Needs Playwright (pip) and a Chromium binary ($BINDSPACE_CHROMIUM, else /usr/bin/chromium:
`apt-get install -y chromium`); skipped cleanly without them. Screenshots go to
$BINDSPACE_ARTIFACTS (default: artifacts/ in the repository root).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from serve_helpers import chromium_browser, chromium_or_skip, live_server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = chromium_or_skip()

ARTIFACTS = Path(os.environ.get("BINDSPACE_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))
pytestmark = pytest.mark.slow


@pytest.fixture
def server_url(tiny_model, memory_store):
    """uvicorn serving the app on a free loopback port; yields its base URL."""
    from bindspace.serve import create_app

    with live_server(create_app(tiny_model, memory_store)) as base:
        yield base


def _wait_images_loaded(page, timeout_s: float = 10.0) -> None:
    """Poll until every result thumbnail has decoded (wait_for_function needs 'unsafe-eval', which our CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while True:
        loaded = page.locator("#results img").evaluate_all("els => els.map(i => i.complete && i.naturalWidth > 0)")
        if all(loaded):
            return
        assert time.monotonic() < deadline, f"thumbnails not loaded: {loaded}"
        page.wait_for_timeout(100)


@pytest.fixture
def page():
    with chromium_browser(CHROMIUM) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.js_errors = errors
        yield page


def test_search_page_end_to_end(server_url, page, served_media):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(server_url + "/")
    sync_api.expect(page.locator("#model-info")).to_contain_text("imagebind_tiny_test")
    sync_api.expect(page.locator("#model-info")).to_contain_text("9 indexed items")
    cards = page.locator("#results .card")

    # A file as the query, filtered to images. The file goes straight into the page's file input:
    # whether headless Chromium opens a native chooser from a key press depends on user-activation
    # timing, which made that route flaky.
    sync_api.expect(page.get_by_role("button", name="Add query files")).to_be_visible()
    page.locator("#file-input").set_input_files(str(served_media / "image_2.png"))
    sync_api.expect(page.locator("#parts .part")).to_have_count(1)
    sync_api.expect(page.locator("#text-weight-label")).to_be_visible()
    page.select_option("#filter", "image")
    page.get_by_role("button", name="Search", exact=True).click()
    sync_api.expect(cards).to_have_count(3)
    sync_api.expect(cards.first.locator(".name")).to_have_text("image_2.png")
    sync_api.expect(cards.first.locator(".badge")).to_have_text("image")
    assert float(cards.first.locator(".score").inner_text()) > 0.999
    _wait_images_loaded(page)
    page.screenshot(path=str(ARTIFACTS / "serve_search_file.png"), full_page=True)

    # A text query over every modality: all indexed items come back, best first, with media elements.
    page.get_by_role("button", name="Remove image_2.png").click()
    sync_api.expect(page.locator("#text-weight-label")).to_be_hidden()
    page.select_option("#filter", "")
    page.get_by_label("Describe what you are looking for").fill("a dog barking on a beach")
    page.keyboard.press("Enter")
    sync_api.expect(cards).to_have_count(9)
    sync_api.expect(page.locator("#status")).to_contain_text("9 results")
    scores = [float(s) for s in page.locator("#results .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    assert page.locator("#results .kind-image img").count() == 3
    assert page.locator("#results video").count() == 1
    assert page.locator("#results audio").count() == 2
    segment_src = page.locator("#results audio").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    assert any(src.endswith("#t=0,2") for src in segment_src)
    _wait_images_loaded(page)
    page.screenshot(path=str(ARTIFACTS / "serve_search_text.png"), full_page=True)

    # Bad input shows the server's one-line message, not a crash.
    broken = served_media.parent / "broken.png"
    broken.write_bytes(b"not really a png")
    page.locator("#file-input").set_input_files(str(broken))
    page.get_by_label("Describe what you are looking for").fill("")
    page.get_by_role("button", name="Search", exact=True).click()
    sync_api.expect(page.locator("#status")).to_contain_text("broken.png")
    sync_api.expect(page.locator("#status")).to_have_class("status error")
    assert page.js_errors == [f"400 {server_url}/v1/search"], page.js_errors
