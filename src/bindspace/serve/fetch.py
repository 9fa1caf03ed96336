"""Remote media for requests, only from hosts the operator allowed (`serve --fetch-allow HOST ...`).

Off by default: a server that fetches any URL a client names can be made to reach internal
services. With an allow-list, a URL is fetched only when its host (or `host:port`) is listed;
redirects are followed only to the same scheme, host and port; the body is cut off at the
item size limit and the whole fetch at a deadline. Proxies from the environment are not used.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError
from .errors import TooLarge

FETCH_POLICY = "fetch_policy"  # ServeState.extras key of the FetchPolicy
CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """Which hosts may be fetched from, and how much and how long a fetch may take."""

    hosts: frozenset[str]  # lower-case "host" (any port) or "host:port"
    max_bytes: int = 32 * 1024 * 1024
    timeout_s: float = 10.0  # the whole fetch, redirects included
    max_redirects: int = 3

    @classmethod
    def of(cls, hosts: Iterable[str], **options: Any) -> FetchPolicy:
        """A policy from host names as given on the command line (case and a trailing dot ignored)."""
        return cls(frozenset(host.strip().lower().rstrip(".") for host in hosts if host.strip()), **options)

    def allows(self, url: str) -> bool:
        """True when `url` is http(s) and its host (or host:port) is on the allow-list."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme not in ("http", "https") or not host:
            return False
        return host in self.hosts or (port is not None and f"{host}:{port}" in self.hosts)


def is_remote(text: str) -> bool:
    """True for http:// and https:// URLs."""
    return isinstance(text, str) and text.lstrip()[:8].lower().startswith(("http://", "https://"))


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port, at most `limit` times."""

    def __init__(self, origin: tuple[str, str, int | None], limit: int) -> None:
        self.origin = origin
        self.left = limit

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urlsplit(newurl)
        if (target.scheme, (target.hostname or "").lower(), target.port) != self.origin:
            raise urllib.error.URLError(f"redirect to another host ({target.scheme}://{target.netloc}) refused")
        self.left -= 1
        if self.left < 0:
            raise urllib.error.URLError("too many redirects")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, policy: FetchPolicy, name: str) -> tuple[bytes, str | None]:
    """(body, media type) of an allowed URL; InputError naming `name` if refused or failed, TooLarge if too big."""
    if not policy.allows(url):
        raise InputError(name, f"remote URL host is not on this server's --fetch-allow list ({_shown(url)})")
    parts = urlsplit(url)
    origin = (parts.scheme, (parts.hostname or "").lower(), parts.port)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _SameOrigin(origin, policy.max_redirects))
    deadline = time.monotonic() + policy.timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "bindspace", "Accept": "*/*"})
    try:
        with opener.open(request, timeout=policy.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
                raise TooLarge(f"{name}: remote file is {declared} bytes, more than the limit of {policy.max_bytes}")
            chunks, total = [], 0
            while chunk := response.read1(CHUNK):  # what has arrived: a trickle cannot outlast the deadline
                total += len(chunk)
                if total > policy.max_bytes:
                    raise TooLarge(f"{name}: remote file is larger than the limit of {policy.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise InputError(name, f"fetching {_shown(url)} took longer than {policy.timeout_s:g} s")
                chunks.append(chunk)
            media_type = response.headers.get_content_type() if response.headers.get("Content-Type") else None
    except urllib.error.HTTPError as err:
        raise InputError(name, f"fetching {_shown(url)} failed: HTTP {err.code}") from None
    except urllib.error.URLError as err:
        raise InputError(name, f"fetching {_shown(url)} failed: {err.reason}") from None
    except (TimeoutError, OSError, HTTPException, ValueError) as err:
        raise InputError(name, f"fetching {_shown(url)} failed: {type(err).__name__}: {err}") from None
    body = b"".join(chunks)
    if not body:
        raise InputError(name, f"{_shown(url)} returned an empty body")
    return body, media_type


def _shown(url: str) -> str:
    """A URL cut to 120 characters for messages."""
    return url if len(url) <= 120 else url[:117] + "..."
