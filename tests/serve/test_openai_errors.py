"""Every error on the OpenAI routes in OpenAI's shape, so the `openai` client shows the message, not only a code.

Errors answered before any route runs (the body-limit middleware's 413/429, 405 from the router)
and bugs (500) included; other routes keep bindspace's `{error, type}` shape.
"""
from __future__ import annotations

import httpx
import openai
import pytest
from serve_helpers import live_server

from bindspace.serve import Limits, create_app


@pytest.fixture(scope="module")
def app(tiny_model):
    return create_app(tiny_model, limits=Limits(max_body_bytes=4000, max_inflight_bytes=1000))


@pytest.fixture(scope="module")
def base(app):
    with live_server(app) as url:
        yield url


@pytest.fixture
def client(base):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=60)


def assert_openai_shape(body: object, kind: str, code: str | None = None) -> dict:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == kind, error
    assert code is None or error["code"] == code
    return error


def test_too_large_body_shows_its_message_in_the_openai_client(client):
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model="m", input=["x" * 5000])
    assert err.value.status_code == 413
    assert "larger than the limit of 4000 bytes" in str(err.value)  # was only "Error code: 413"
    assert_openai_shape(err.value.response.json(), "invalid_request_error", "too_large")


def test_chunked_body_over_the_limit_and_busy_answers(base, client):
    def chunks():
        yield b"x" * 4500  # no Content-Length: cut off while streaming

    chunked = httpx.post(f"{base}/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert_openai_shape(chunked.json(), "invalid_request_error", "too_large")
    # Within the per-request limit but over what all requests may hold together (1000 bytes here): 429.
    with pytest.raises(openai.RateLimitError) as busy:
        client.embeddings.create(model="m", input=["x" * 2000])
    assert "server busy" in str(busy.value) and busy.value.response.headers["retry-after"] == "1"
    assert_openai_shape(busy.value.response.json(), "rate_limit_error", "busy")
    other = httpx.post(f"{base}/v1/embed", content=b"y" * 5000, headers={"Content-Type": "application/json"})
    assert other.status_code == 413 and other.json() == {  # bindspace's own routes keep their shape
        "error": "request body is larger than the limit of 4000 bytes", "type": "too_large"}


def test_router_errors_and_bugs(base, app, client, monkeypatch):
    wrong_method = httpx.get(f"{base}/v1/embeddings")
    assert wrong_method.status_code == 405
    assert_openai_shape(wrong_method.json(), "invalid_request_error", "method_not_allowed")
    missing = httpx.get(f"{base}/v1/models/a/b")
    assert missing.status_code == 404
    assert_openai_shape(missing.json(), "not_found_error")
    not_json = httpx.post(f"{base}/v1/embeddings", content=b"{oops", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in assert_openai_shape(
        not_json.json(), "invalid_request_error", "bad_json")["message"]

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.bindspace.pipeline, "embed_texts", broken)
    with pytest.raises(openai.InternalServerError) as err:
        client.embeddings.create(model="m", input="x")
    assert "internal error (RuntimeError)" in str(err.value)
    assert_openai_shape(err.value.response.json(), "server_error", "internal")
