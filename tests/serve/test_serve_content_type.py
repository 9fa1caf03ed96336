"""Bodies as `curl -d` sends them (a form Content-Type) are read as JSON; Weaviate's (no Content-Type) still are;
the text limit is the documented one (issue 21, items 6 and 7)."""
from __future__ import annotations

import http.client
import json
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_helpers import live_server  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serve.md"


def raw_post(base: str, path: str, body: bytes, headers: list[str]) -> tuple[int, bytes]:
    """One POST with exactly these headers (plus Host and Content-Length)."""
    url = urlparse(base)
    assert url.hostname is not None and url.port is not None
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}", *headers, f"Content-Length: {len(body)}"]
    with socket.create_connection((url.hostname, url.port), timeout=120) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        return response.status, response.read()


CURL_D = ["User-Agent: curl/8.5.0", "Accept: */*", "Content-Type: application/x-www-form-urlencoded"]
WEAVIATE = ["User-Agent: Go-http-client/1.1", "Accept-Encoding: gzip"]  # no Content-Type at all


def test_curl_d_and_weaviate_bodies_are_read_as_json(tiny_model, memory_store):
    from bindspace.serve import create_app

    with live_server(create_app(tiny_model, memory_store)) as base:
        for headers in (CURL_D, WEAVIATE):
            for path, body, field in (("/vectorize", {"texts": ["a dog"]}, "textVectors"),
                                      ("/v1/embed", {"modality": "text", "texts": ["a dog"]}, "vectors"),
                                      ("/v1/search", {"parts": [{"text": "a dog"}], "k": 1}, "hits")):
                status, data = raw_post(base, path, json.dumps(body).encode(), headers)
                assert status == 200, (headers[0], path, data[:300])
                assert len(json.loads(data)[field]) == 1
        status, data = raw_post(base, "/vectorize", b"texts=a+dog", CURL_D)  # a real form: say what to send
        assert status == 422 and "not valid JSON" in json.loads(data)["error"]


def test_the_text_limit_is_the_documented_one(make_client):
    docs = " ".join(DOCS.read_text(encoding="utf-8").split())
    documented = re.search(r"\| text length \| ([\d,]+) characters", docs)
    assert documented, "docs/serve.md lists no text length limit"
    limit = int(documented.group(1).replace(",", ""))
    client = make_client()
    assert client.post("/v1/embed", json={"modality": "text", "texts": ["a" * limit]}).status_code == 200
    over = client.post("/v1/embed", json={"modality": "text", "texts": ["a" * (limit + 1)]})
    assert over.status_code == 413
    assert f"more than the limit of {limit}" in over.json()["error"]
