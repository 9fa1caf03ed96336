"""Serve names a decoding failure only for what DECODE_ERRORS lists: a loader bug is a 500, not "cannot decode"."""
from __future__ import annotations

import base64

import pytest

from bindspace.errors import InputError
from bindspace.serve import media as serve_media


def _raising(exc: BaseException):
    def loader(*args, **kwargs):
        raise exc
    return loader


@pytest.mark.parametrize("exc", [RuntimeError("a torch op failed in the loader"), MemoryError()])
def test_a_loader_bug_or_resource_error_is_not_reported_as_bad_input(monkeypatch, exc):
    monkeypatch.setattr(serve_media, "item_loader", lambda kind: _raising(exc))
    with pytest.raises(type(exc)):
        serve_media.load_media("audio", b"RIFF....", "items[0]")


def test_a_decode_error_still_names_the_item(monkeypatch):
    monkeypatch.setattr(serve_media, "item_loader", lambda kind: _raising(ValueError("bad header")))
    with pytest.raises(InputError, match=r"items\[0\].*cannot decode audio \(ValueError: bad header\)"):
        serve_media.load_media("audio", b"RIFF....", "items[0]")


def test_a_thumbnail_bug_is_not_reported_as_an_undecodable_file(monkeypatch, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"not read")
    monkeypatch.setattr(serve_media, "_open_image", _raising(RuntimeError("bug in the thumbnailer")))
    with pytest.raises(RuntimeError, match="bug in the thumbnailer"):
        serve_media.make_thumbnail(str(image), "image")


def test_over_http_a_loader_bug_is_a_500_not_a_400(monkeypatch, tiny_model):
    from fastapi.testclient import TestClient

    from bindspace.serve import create_app

    monkeypatch.setattr(serve_media, "item_loader", lambda kind: _raising(RuntimeError("loader bug")))
    with TestClient(create_app(tiny_model), raise_server_exceptions=False) as http:
        reply = http.post("/v1/embed", json={"modality": "audio", "items": [base64.b64encode(b"RIFF").decode()]})
    assert reply.status_code == 500 and reply.json()["type"] == "internal"
