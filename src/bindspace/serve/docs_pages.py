"""/docs and /redoc served with no CDN: Swagger UI and ReDoc from the `fastapi-offline` package's bundled files.

Without that package (it is in the [serve] extra), /docs is a plain page linking /openapi.json.
"""
from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
# Swagger UI's page bootstraps itself with an inline script; everything it loads comes from this server.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def bundled_assets() -> Path | None:
    """The folder holding swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js, if installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
    return folder if all((folder / name).is_file() for name in needed) else None


def add_docs_pages(app: FastAPI) -> None:
    """Mount the bundled assets and the /docs and /redoc pages (create the app with docs_url=None, redoc_url=None)."""
    assets = bundled_assets()
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"
    headers = {"Content-Security-Policy": DOCS_CSP}
    if assets is not None:
        app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if assets is None:
            return _plain_page(title, openapi_url)
        page = get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png")
        return HTMLResponse(page.body, headers=headers)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        if assets is None:
            return _plain_page(title, openapi_url)
        page = get_redoc_html(openapi_url=openapi_url, title=title, redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False)
        return HTMLResponse(page.body, headers=headers)


def _plain_page(title: str, openapi_url: str) -> HTMLResponse:
    """A page that works offline without any script: where the OpenAPI document is."""
    url = html.escape(openapi_url, quote=True)
    body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1><p>The OpenAPI document is at <a href='{url}'>{url}</a>. "
            "Install the [serve] extra's <code>fastapi-offline</code> package for the interactive page.</p>"
            "</body></html>")
    return HTMLResponse(body)
