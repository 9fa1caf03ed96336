"""Cross-origin access (CORS) for pages served from other origins, such as clip-retrieval's front-end: opt-in.

Off unless `serve --cors-origin ORIGIN...`. Then Starlette's CORSMiddleware lets pages of
exactly those origins read answers (GET, HEAD, POST; headers Content-Type, Authorization,
X-API-Key; Chrome's private-network preflight for named origins). Browsers never attach a
bindspace key by themselves (no cookies, no browser-managed auth: `allow_credentials` stays
off), so a page can use a key only if it was given one.

Cross-origin pages may only read: a write (`require_write`) whose `Origin` is one of the
listed origins is refused with 403 unless the operator also passes `--cors-writes`, which
needs a write key and explicit origins. `*` (every origin) is accepted only for a server with
no key at all: a read key means the operator restricts who reads, which `*` would undo for
any page the key is put in, and with no write key every write is refused anyway.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import BindspaceError

CORS_POLICY = "cors_policy"  # the ServeState.extras key of the active CorsPolicy
READ_METHODS = ("GET", "HEAD", "POST")  # POST: /knn-service, /v1/search, /v1/embeddings ... are reads
REQUEST_HEADERS = ("Content-Type", "Authorization", "X-API-Key")
PREFLIGHT_MAX_AGE_S = 600
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CorsError(BindspaceError):
    """An origin or an option combination the CORS policy refuses (a usage error)."""


def parse_origin(text: str) -> str:
    """An origin as browsers send it (`scheme://host[:port]`, lower case, no default port), or `*`."""
    text = text.strip()
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise CorsError(f"--cors-origin {text!r}: expected http(s)://HOST[:PORT] (the page's origin) or '*'")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise CorsError(f"--cors-origin {text!r}: an origin has no path, query or user (write "
                        f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]})")
    try:
        port = parts.port
    except ValueError:
        raise CorsError(f"--cors-origin {text!r}: not a valid port") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    shown_port = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{shown_port}"


@dataclass(frozen=True)
class CorsPolicy:
    """Which other origins' pages may call this server, and whether they may also write."""

    origins: tuple[str, ...]  # exact origins as parse_origin writes them, or ("*",)
    writes: bool = False

    @property
    def any_origin(self) -> bool:
        return "*" in self.origins

    def refuses_write_from(self, origin: str | None) -> bool:
        """True when a write comes from a listed origin's page and cross-origin writes are not allowed."""
        return bool(origin) and not self.writes and (self.any_origin or origin in self.origins)


def cors_policy(origins: list[str], *, read_key: str | None, api_key: str | None,
                writes: bool = False) -> CorsPolicy | None:
    """The policy for `--cors-origin` / `--cors-writes` (None: CORS off); CorsError for unsafe combinations."""
    if not origins:
        if writes:
            raise CorsError("--cors-writes needs --cors-origin ORIGIN...")
        return None
    parsed = tuple(dict.fromkeys(parse_origin(origin) for origin in origins))
    if "*" in parsed:
        if len(parsed) > 1:
            raise CorsError("--cors-origin '*' already allows every origin: give it alone")
        if read_key or api_key:
            raise CorsError("--cors-origin '*' lets every web page call this server; it is refused on a server "
                            "with a read or write key: name the origins of the pages you trust")
    if writes and not api_key:
        raise CorsError("--cors-writes: this server has no write key (writes are disabled); set "
                        "BINDSPACE_API_KEY or drop --cors-writes")
    return CorsPolicy(parsed, writes=writes)


def add_cors(app: Any, policy: CorsPolicy) -> None:
    """Install Starlette's CORSMiddleware for the policy (call after the inner middleware: it must wrap them)."""
    from starlette.middleware.cors import CORSMiddleware

    methods = [*READ_METHODS, "DELETE"] if policy.writes else list(READ_METHODS)
    # No expose_headers: Starlette sends those to every origin, allowed or not. Private-network
    # preflights (Chrome, public page -> this host) pass for named origins only: naming one is the
    # operator's consent; '*' would open a local server to every public site.
    app.add_middleware(CORSMiddleware, allow_origins=list(policy.origins), allow_methods=methods,
                       allow_headers=list(REQUEST_HEADERS), allow_credentials=False,
                       allow_private_network=not policy.any_origin, max_age=PREFLIGHT_MAX_AGE_S)


def describe(policy: CorsPolicy | None) -> str:
    """One line for the start-up message."""
    if policy is None:
        return "cross-origin pages: none (no CORS headers)"
    who = "every origin's pages" if policy.any_origin else f"pages of {', '.join(policy.origins)}"
    return f"cross-origin: {who} may read" + (" and write (with the write key)" if policy.writes else
                                              " (their writes are refused)")
