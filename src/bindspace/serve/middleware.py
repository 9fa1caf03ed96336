"""ASGI middleware: JSON as the default body type, request body limits, metrics and security headers."""
from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from .errors import error_body
from .metrics import ServerMetrics

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


async def send_json(send: Send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer a whole JSON response from middleware."""
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


# The type a client declares for a body by default, not by choice: `curl -d '{...}'` sends a form
# type. No endpoint takes forms (uploads are multipart), so such a body is read as JSON.
_DEFAULTED_TYPES = (b"application/x-www-form-urlencoded",)


class DefaultJsonMiddleware:
    """A body sent without Content-Type, or with a client's default type (`curl -d`), is read as JSON.

    Weaviate's Go client sends no Content-Type; curl's `-d` declares a form. Multipart uploads and
    every other declared type reach the endpoints unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in _BODY_METHODS:
            headers = scope.get("headers", [])
            declared = [value for name, value in headers if name == b"content-type"]
            if not declared or declared[0].split(b";")[0].strip().lower() in _DEFAULTED_TYPES:
                kept = [(name, value) for name, value in headers if name != b"content-type"]
                scope = {**scope, "headers": [*kept, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, and bodies that would take the bytes held by all requests
    together over `max_inflight_bytes` with 429.

    Each limit is checked on Content-Length before reading, else while streaming. The body is
    read here and replayed to the app, so an over-long chunked upload is cut off as soon as it
    crosses the limit; its bytes count as in flight until the response is sent.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_inflight_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_inflight_bytes = max_inflight_bytes if max_inflight_bytes is not None else 4 * max_bytes
        self.inflight = 0  # bytes of request bodies read (or announced) and not yet answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(scope, send)
            return
        held = 0  # what this request counts against max_inflight_bytes

        def reserve(total: int) -> bool:
            nonlocal held
            if total > held:
                if self.inflight + (total - held) > self.max_inflight_bytes:
                    return False
                self.inflight += total - held
                held = total
            return True

        try:
            if declared is not None and not reserve(declared):
                await self._busy(scope, send)
                return
            chunks: list[bytes] = []
            total = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > self.max_bytes:
                    await self._reject(scope, send)
                    return
                if not reserve(total):
                    await self._busy(scope, send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: wait for disconnect like the server would

            await self.app(scope, replay, send)
        finally:
            self.inflight -= held

    async def _reject(self, scope: Scope, send: Send) -> None:
        await send_json(send, 413, error_body(scope.get("path", ""), 413, "request body is larger than the limit "
                                              f"of {self.max_bytes} bytes", "too_large"))

    async def _busy(self, scope: Scope, send: Send) -> None:
        await send_json(send, 429, error_body(scope.get("path", ""), 429, "server busy: too many request bodies in "
                                              "flight; retry shortly", "busy"), [(b"retry-after", b"1")])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class MetricsMiddleware:
    """Count requests and time them per route template (never per raw path: bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or ("/static" if scope["path"].startswith("/static/")
                                                                  else "other")
            self.metrics.requests.inc(route=route, method=scope.get("method", ""), status=str(status))
            self.metrics.latency.observe(time.perf_counter() - started, route=route)


class SecurityHeadersMiddleware:
    """nosniff everywhere; pages and media may only load this server's own resources (no CDN anywhere)."""

    CSP = (b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
           b"script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                if b"content-security-policy" not in names:  # pages with their own policy (/docs) keep it
                    headers.append((b"content-security-policy", self.CSP))
                headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
