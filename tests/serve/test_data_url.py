"""One data: URL grammar: the chat part reader, the /v1/embeddings part reader and the base64 decoder agree.

RFC 2397 data: URLs with base64 content; the scheme, the media type and the `base64` token are
case-insensitive (RFC 3986 schemes, RFC 2045 types), so `DATA:IMAGE/PNG;BASE64,...` is read as
an image everywhere, and a text that starts with `data:` but breaks the grammar is refused
everywhere (before this, chat accepted `DATA:...` that the decoder then refused).
"""
from __future__ import annotations

import base64

import pytest

from bindspace.errors import InputError
from bindspace.serve.chat import parse_messages
from bindspace.serve.content_parts import input_units
from bindspace.serve.data_url import DataUrl, has_data_scheme, parse_data_url
from bindspace.serve.errors import ApiError
from bindspace.serve.media import data_url_type, decode_base64

RAW = b"\x89PNG\r\n\x1a\n not really a picture, but bytes"
PAYLOAD = base64.b64encode(RAW).decode()

# (URL text, media type every reader sees, or None where every reader refuses it)
CASES = [
    (f"data:image/png;base64,{PAYLOAD}", "image/png"),
    (f"DATA:image/png;base64,{PAYLOAD}", "image/png"),
    (f"Data:IMAGE/PNG;BASE64,{PAYLOAD}", "image/png"),
    (f"  data:video/mp4;base64,{PAYLOAD}", "video/mp4"),
    (f"data:audio/wav;rate=16000;base64,{PAYLOAD}", "audio/wav"),
    (f"data:image/svg+xml;charset=utf-8;base64,{PAYLOAD}", "image/svg+xml"),
    (f"data:image/png,{PAYLOAD}", None),  # not base64: percent-encoded data URLs are not read
    (f"DATA:image/png,{PAYLOAD}", None),
    (f"data:;base64,{PAYLOAD}", None),  # no media type
    (f"data:image;base64,{PAYLOAD}", None),  # no subtype
    (f"data:base64,{PAYLOAD}", None),
]


def _chat(url: str) -> list[tuple[str, str, str]]:
    _, media = parse_messages([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what is it?"}]}])
    return media


def _embeddings(url: str) -> list[tuple[str, str]]:
    units = input_units([[{"type": "image_url", "image_url": {"url": url}}]], None, None)
    return [(part.kind, str(part.value)) for unit in units for part in unit]


@pytest.mark.parametrize("url,media_type", CASES)
def test_the_grammar(url, media_type):
    assert has_data_scheme(url)
    parsed = parse_data_url(url)
    if media_type is None:
        assert parsed is None and data_url_type(url) is None
    else:
        assert parsed == DataUrl(media_type, PAYLOAD)
        assert data_url_type(url) == media_type


@pytest.mark.parametrize("url,media_type", CASES)
def test_chat_embeddings_and_the_decoder_agree(url, media_type):
    if media_type is None:
        with pytest.raises(ApiError, match=r"content\[0\]: a data: URL must read data:TYPE/SUBTYPE;base64"):
            _chat(url)
        with pytest.raises(ApiError, match=r"input\[0\]\[0\]: a data: URL must read data:TYPE/SUBTYPE;base64"):
            _embeddings(url)
        with pytest.raises(InputError, match="a data: URL must read data:TYPE/SUBTYPE;base64"):
            decode_base64(url, "item", 1 << 20)
        return
    kind = media_type.split("/")[0]
    assert [(k, data) for k, data, _ in _chat(url)] == [(kind, url)]
    assert _embeddings(url) == [(kind, url)]
    assert decode_base64(url, "item", 1 << 20) == RAW


@pytest.mark.parametrize("text", [PAYLOAD, "https://example.com/cat.png", "a data: url in prose", "", "dat"])
def test_texts_without_the_scheme_are_not_data_urls(text):
    assert not has_data_scheme(text)
    assert parse_data_url(text) is None


def test_plain_base64_is_one_grammar_too():
    """Base64 without a data: prefix is the part's default kind on both routes, and decodes."""
    assert [(k, d) for k, d, _ in _chat(PAYLOAD)] == [("vision", PAYLOAD)]
    assert _embeddings(PAYLOAD) == [("vision", PAYLOAD)]
    assert decode_base64(PAYLOAD, "item", 1 << 20) == RAW


def test_chat_refuses_remote_urls_without_pointing_to_fetch_allow():
    with pytest.raises(ApiError, match="remote URLs are not fetched; send base64") as info:
        _chat("https://example.com/cat.png")
    assert "--fetch-allow" not in str(info.value)
    with pytest.raises(ApiError, match="--fetch-allow"):
        _embeddings("https://example.com/cat.png")
