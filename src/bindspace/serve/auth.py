"""API keys: an optional read key for reads, a write key for writes (the write key also reads).

Routers use them as dependencies: `dependencies=[Depends(require_read)]` or
`Depends(require_write)`. Keys come as `Authorization: Bearer KEY` or `X-API-Key: KEY`
and are compared in constant time. With `--cors-origin`, writes from the listed origins' pages
are refused unless `--cors-writes` (cors.py).
"""
from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .cors import CORS_POLICY
from .errors import Unauthorized
from .state import serve_state

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer KEY`")
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: KEY`")


def _given(bearer: HTTPAuthorizationCredentials | None, header_key: str | None) -> str | None:
    return bearer.credentials if bearer is not None else header_key


def _matches(given: str, *keys: str | None) -> bool:
    # Every configured key is compared, so timing says nothing about which one was close.
    results = [hmac.compare_digest(given.encode(), key.encode()) for key in keys if key]
    return any(results)


async def require_write(request: Request,
                        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                        header_key: str | None = Depends(_key_header)) -> None:
    """Writes need the server's write key; with none configured they are refused outright (403)."""
    state = serve_state(request)
    expected = state.api_key
    if not expected:
        raise Unauthorized("writes are disabled: start the server with --api-key or BINDSPACE_API_KEY",
                           status=403, kind="forbidden")
    cors = state.extras.get(CORS_POLICY)
    origin = request.headers.get("origin")
    if cors is not None and cors.refuses_write_from(origin):
        raise Unauthorized(f"writes from pages of {str(origin)[:100]} are refused: --cors-origin lets other origins "
                           "read only (the operator can add --cors-writes)", status=403, kind="forbidden")
    given = _given(bearer, header_key)
    if not given:
        raise Unauthorized("missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                           headers={"WWW-Authenticate": "Bearer"})
    if not _matches(given, expected):
        raise Unauthorized("wrong API key", headers={"WWW-Authenticate": "Bearer"})


async def require_read(request: Request,
                       bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                       header_key: str | None = Depends(_key_header)) -> None:
    """Reads are open unless the server has a read key; then the read key or the write key is needed."""
    state = serve_state(request)
    if not state.read_key:
        return
    given = _given(bearer, header_key)
    if not given:
        raise Unauthorized("missing API key (this server has a read key): send 'Authorization: Bearer KEY' "
                           "or 'X-API-Key: KEY'", headers={"WWW-Authenticate": "Bearer"})
    if not _matches(given, state.read_key, state.api_key):
        raise Unauthorized("wrong API key", headers={"WWW-Authenticate": "Bearer"})
