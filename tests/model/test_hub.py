"""Downloading released weights: a download is checked before it is renamed into place."""
from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import bindspace.model.hub as hub
from bindspace.errors import CheckpointError

PAYLOAD = b"weights" * 1000


class _Response(io.BytesIO):
    def __init__(self, body: bytes, length: int | None, status: int = 200) -> None:
        super().__init__(body)
        self.status = status
        self.headers = {} if length is None else {"Content-Length": str(length)}


def _serve(monkeypatch: pytest.MonkeyPatch, body: bytes, length: int | None, status: int = 200) -> list[Any]:
    requests: list[Any] = []

    def urlopen(request: Any, timeout: float) -> _Response:
        requests.append(request)
        return _Response(body, length, status)

    monkeypatch.setattr(hub.urllib.request, "urlopen", urlopen)
    return requests


def test_verified_download_is_renamed_with_umask_permissions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _serve(monkeypatch, PAYLOAD, len(PAYLOAD))
    old = os.umask(0o022)
    try:
        out = hub.download_file("http://x/w.pth", tmp_path / "w.pth", size=len(PAYLOAD),
                                sha256=hashlib.sha256(PAYLOAD).hexdigest())
    finally:
        os.umask(old)
    assert out.read_bytes() == PAYLOAD
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]


@pytest.mark.parametrize("case", ["cut", "size", "sha"])
def test_bad_download_never_becomes_the_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str) -> None:
    body = PAYLOAD[:100] if case == "cut" else PAYLOAD
    _serve(monkeypatch, body, len(PAYLOAD))
    kwargs: dict[str, Any] = {"size": len(PAYLOAD) + 1} if case == "size" else {}
    if case == "sha":
        kwargs["sha256"] = "0" * 64
    with pytest.raises(CheckpointError, match="failed its check") as info:
        hub.download_file("http://x/w.pth", tmp_path / "w.pth", **kwargs)
    assert {"cut": "server announced", "size": "expected", "sha": "sha256"}[case] in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the bad .part


def test_resume_appends_to_part(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "w.pth.part").write_bytes(PAYLOAD[:10])
    requests = _serve(monkeypatch, PAYLOAD[10:], len(PAYLOAD) - 10, status=206)
    out = hub.download_file("http://x/w.pth", tmp_path / "w.pth", size=len(PAYLOAD))
    assert requests[0].headers == {"Range": "bytes=10-"}
    assert out.read_bytes() == PAYLOAD


def test_unknown_preset_message_names_the_cli_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hub.ENV_CHECKPOINT, raising=False)
    with pytest.raises(CheckpointError, match="--checkpoint PATH"):
        hub.resolve_pretrained("imagebind_tiny_test")
