"""HTTP-facing errors: each becomes a JSON body `{"error": message, "type": kind}` with its status.

On the OpenAI-compatible paths the body is OpenAI's `{"error": {"message", "type", "param", "code"}}`
instead (the `openai` package shows only "Error code: 413" for any other shape), on clip-retrieval's
paths Flask-RESTful's `{"message"}`, on Cohere's `/v2/embed` Cohere's `{"id", "message"}`.
`error_body` picks the shape for errors answered outside a route (the body-limit middleware,
404/405); routes use shaped_route.ShapedErrorRoute.
"""
from __future__ import annotations

import uuid
from typing import Any

from ..errors import BindspaceError

# Paths whose every error is in OpenAI's shape, and those in clip-retrieval's (clip_back.py).
OPENAI_PATHS = frozenset({"/v1/embeddings", "/v1/chat/completions", "/v1/models"})
CLIP_BACK_PATHS = frozenset({"/knn-service", "/indices-list", "/metadata"})
COHERE_PATHS = frozenset({"/v2/embed"})
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_error"}


def speaks_openai(path: str) -> bool:
    """True for the paths that answer errors in OpenAI's shape."""
    return path in OPENAI_PATHS or path.startswith("/v1/models/")


def openai_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status (server_error for 5xx)."""
    return "server_error" if status >= 500 else _OPENAI_TYPES.get(status, "invalid_request_error")


def openai_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": openai_type(status), "param": param, "code": code}}


def cohere_body(message: str) -> dict[str, Any]:
    """Cohere's error body: {"id": a fresh request id, "message"}."""
    return {"id": str(uuid.uuid4()), "message": message}


def error_body(path: str, status: int, message: str, kind: str) -> dict[str, Any]:
    """The error body for a path: OpenAI's, clip-back's or Cohere's shape on their paths, else `{error, type}`."""
    if speaks_openai(path):
        return openai_body(status, message, code=kind)
    if path in CLIP_BACK_PATHS:
        return {"message": message}
    if path in COHERE_PATHS:
        return cohere_body(message)
    return {"error": message, "type": kind}


class ApiError(BindspaceError):
    """A request the server refuses on purpose, with the HTTP status to answer."""

    status = 400
    kind = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind
        self.headers = headers or {}


class TooLarge(ApiError):
    """A body, item or list over a configured limit (413)."""

    status = 413
    kind = "too_large"


class NotFound(ApiError):
    """An unknown item id, or an item whose file is gone (404)."""

    status = 404
    kind = "not_found"


class Unauthorized(ApiError):
    """A write without a valid API key (401), or with none configured on the server (403)."""

    status = 401
    kind = "unauthorized"


class Busy(ApiError):
    """Too many items waiting for the model: the client should retry later (429)."""

    status = 429
    kind = "busy"


class Unavailable(ApiError):
    """A feature this server was started without, e.g. search without an index (409)."""

    status = 409
    kind = "unavailable"
