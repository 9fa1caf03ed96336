"""HTTP-facing errors: each becomes a JSON body `{"error": message, "type": kind}` with its status."""
from __future__ import annotations

from ..errors import BindspaceError


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
