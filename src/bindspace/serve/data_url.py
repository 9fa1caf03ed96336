"""The one data: URL grammar of every route: RFC 2397 with base64 content and a TYPE/SUBTYPE media type.

`data:image/png;base64,iVBOR...` and `DATA:Image/PNG;charset=x;BASE64,...` are the same URL: the
scheme, the media type and the `base64` token are case-insensitive (RFC 3986 schemes, RFC 2045
types), so the part readers and the decoder accept the same texts. A text that starts with the
scheme but does not follow the grammar (no media type, no `;base64`) is refused with one message,
never read as plain base64 by one reader and refused by another.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

DATA_URL_FORM = "data:TYPE/SUBTYPE;base64,..."
_SCHEME = "data:"
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)(?:;[\w-]+=[\w.-]+)*;base64,", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class DataUrl:
    """A parsed base64 data: URL: its lower-cased media type and the base64 text after the comma."""

    media_type: str
    payload: str


def has_data_scheme(text: object) -> bool:
    """Whether `text` claims to be a data: URL (the scheme in any case, after leading white space)."""
    return isinstance(text, str) and text.lstrip()[:len(_SCHEME)].lower() == _SCHEME


def parse_data_url(text: object) -> DataUrl | None:
    """The base64 data: URL in `text` (leading white space allowed), or None when `text` is not one."""
    if not isinstance(text, str):
        return None
    stripped = text.lstrip()
    match = _DATA_URL.match(stripped)
    if match is None:
        return None
    return DataUrl(match.group(1).lower(), stripped[match.end():])
