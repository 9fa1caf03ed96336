"""Content parts on POST /v1/embeddings: OpenAI parts in `input`, vLLM `messages`, Cohere v4 / Voyage `inputs`.

Against a real uvicorn server with the demo geometry (16-px images, 64-d space, vision/text/audio
towers), through the official `openai` client (extra_body) and raw requests shaped exactly as the
published examples. Expected vectors come from the library (loader at the tower's geometry + encode).
"""
from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from serve_helpers import live_server

from bindspace.preprocess.tokenizer import tokenize
from testkit import embedded, embedded_text


@pytest.fixture(scope="module")
def server(demo_model):
    from bindspace.serve import create_app

    with live_server(create_app(demo_model, model_name="demo")) as base:  # no index: the server only embeds
        yield base


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def unit_sum(*rows: np.ndarray) -> np.ndarray:
    total = np.sum(rows, axis=0)
    return total / np.linalg.norm(total)


def data_url(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_openai_parts_in_input_one_vector_each(client, demo_model, served_media):
    image, audio = served_media / "image_2.png", served_media / "audio_3.wav"
    parts = [{"type": "text", "text": "a dog barking"},
             {"type": "image_url", "image_url": {"url": data_url(image, "image/png")}},
             {"type": "input_audio", "input_audio": {"data": b64(audio), "format": "wav"}}]
    response = client.embeddings.create(model="demo", input=[], extra_body={"input": parts},
                                        encoding_format="float")
    got = np.array([d.embedding for d in response.data])
    assert got.shape == (3, 64)
    np.testing.assert_allclose(got[0], embedded_text(demo_model, "a dog barking"), atol=1e-5)
    np.testing.assert_allclose(got[1], embedded(demo_model, "image", image), atol=1e-5)
    np.testing.assert_allclose(got[2], embedded(demo_model, "audio", audio), atol=1e-5)
    assert response.usage.prompt_tokens == int((tokenize(["a dog barking"])[0] > 0).sum())


def test_a_list_of_parts_is_one_combined_vector(client, demo_model, served_media):
    image = served_media / "image_1.jpg"
    item = [{"type": "text", "text": "on a beach"},
            {"type": "image_url", "image_url": {"url": data_url(image, "image/jpeg")}}]
    response = client.embeddings.create(model="demo", input=[], encoding_format="float",
                                        extra_body={"input": [item, "a cat"]})
    got = np.array([d.embedding for d in response.data])
    want = unit_sum(embedded_text(demo_model, "on a beach"), embedded(demo_model, "image", image))
    np.testing.assert_allclose(got[0], want, atol=1e-5)
    np.testing.assert_allclose(got[1], embedded_text(demo_model, "a cat"), atol=1e-5)


def test_data_url_media_type_decides_the_kind_in_a_mixed_request(client, demo_model, served_media):
    image, audio, video = served_media / "image_2.png", served_media / "audio_1.wav", served_media / "video_1.mp4"
    inputs = [data_url(audio, "audio/wav"), "rain on a roof", data_url(image, "image/png"),
              data_url(video, "video/mp4")]
    got = np.array([d.embedding for d in client.embeddings.create(model="demo", input=inputs,
                                                                    encoding_format="float").data])
    np.testing.assert_allclose(got[0], embedded(demo_model, "audio", audio), atol=1e-5)
    np.testing.assert_allclose(got[1], embedded_text(demo_model, "rain on a roof"), atol=1e-5)
    np.testing.assert_allclose(got[2], embedded(demo_model, "image", image), atol=1e-5)
    np.testing.assert_allclose(got[3], embedded(demo_model, "video", video), atol=1e-4)


def test_vllm_messages_request_as_published(server, demo_model, served_media):
    """vLLM's multimodal embeddings example: one user message of an image_url part and a text part."""
    image = served_media / "image_3.png"
    body = {"model": "demo", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(image, "image/png")}},
        {"type": "text", "text": "Represent the given image."}]}], "encoding_format": "float"}
    response = httpx.post(f"{server}/v1/embeddings", json=body, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 1
    np.testing.assert_allclose(data[0]["embedding"], unit_sum(embedded(demo_model, "image", image),
                                                              embedded_text(demo_model, "Represent the given image.")),
                               atol=1e-5)


def test_cohere_v4_and_voyage_inputs(server, demo_model, served_media):
    image = served_media / "image_2.png"
    image_vector, text_vector = embedded(demo_model, "image", image), embedded_text(demo_model, "a red square")
    cohere = {"model": "embed-v4.0", "input_type": "search_document", "embedding_types": ["float"], "inputs": [
        {"content": [{"type": "text", "text": "a red square"},
                     {"type": "image_url", "image_url": {"url": data_url(image, "image/png")}}]},
        {"content": [{"type": "image_url", "image_url": data_url(image, "image/png")}]}]}
    voyage = {"model": "voyage-multimodal-3", "input_type": "document", "inputs": [
        {"content": [{"type": "text", "text": "a red square"},
                     {"type": "image_base64", "image_base64": data_url(image, "image/png")}]}]}
    got_cohere = httpx.post(f"{server}/v1/embeddings", json=cohere, timeout=120).json()["data"]
    got_voyage = httpx.post(f"{server}/v1/embeddings", json=voyage, timeout=120).json()["data"]
    np.testing.assert_allclose(got_cohere[0]["embedding"], unit_sum(text_vector, image_vector), atol=1e-5)
    np.testing.assert_allclose(got_cohere[1]["embedding"], image_vector, atol=1e-5)
    np.testing.assert_allclose(got_voyage[0]["embedding"], got_cohere[0]["embedding"], atol=1e-6)


def test_modality_overrides_the_media_type(client, served_media, demo_model):
    """A data: URL of a generic type with `modality` is read as that kind (today's shape keeps working)."""
    audio = served_media / "audio_3.wav"
    got = client.embeddings.create(model="demo", input=[data_url(audio, "application/octet-stream")],
                                   encoding_format="float", extra_body={"modality": "audio"})
    np.testing.assert_allclose(got.data[0].embedding, embedded(demo_model, "audio", audio), atol=1e-5)


def test_bad_parts_answer_in_openais_shape(client, server):
    cases: list[tuple[dict, str]] = [
        ({"input": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}, "--fetch-allow"),
        ({"input": [{"type": "video_url"}]}, "input[0]"),
        ({"input": [{"type": "hologram", "hologram": "x"}]}, "unsupported part type 'hologram'"),
        ({"input": [{"type": "image_url", "image_url": "data:image/png,notbase64"}]}, "data:TYPE/SUBTYPE;base64"),
        ({"input": [{"type": "image_url", "image_url": "data:image/png;base64,%%%%"}]}, "not valid base64"),
        ({"messages": [{"role": "system", "content": "be nice"}]}, "no user message"),
        ({"inputs": [{"content": []}]}, "inputs[0].content"),
        ({"input": ["a"], "messages": [{"role": "user", "content": "b"}]}, "exactly one of"),
    ]
    for extra, needle in cases:
        raw = httpx.post(f"{server}/v1/embeddings", json={"model": "demo", **extra}, timeout=60)
        assert raw.status_code == 400, (extra, raw.text)
        error = raw.json()["error"]
        assert error["type"] == "invalid_request_error" and needle in error["message"], (needle, error)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="demo", input=[], extra_body={"input": [{"type": "hologram"}]})
    assert "unsupported part type" in err.value.message


def test_too_many_parts_in_one_vector(server):
    parts = [{"type": "text", "text": f"part {i}"} for i in range(9)]
    raw = httpx.post(f"{server}/v1/embeddings", json={"model": "demo", "input": [parts]}, timeout=60)
    assert raw.status_code == 413 and "more than the limit of 8" in raw.json()["error"]["message"]


# ---------------------------------------------------------------- remote URLs (loopback servers only)


class _Media(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, str]] = {}
    delay_s = 0.0

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/redirect-other"):
            port = self.server.server_address[1]  # type: ignore[index]
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/image.png")
            self.end_headers()
            return
        if self.path.startswith("/redirect-same"):
            self.send_response(302)
            self.send_header("Location", "/image.png")
            self.end_headers()
            return
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            return
        if self.path not in self.files:
            self.send_error(404)
            return
        body, media_type = self.files[self.path]
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def media_server(files: dict[str, tuple[bytes, str]]) -> Iterator[str]:
    handler = type("Handler", (_Media,), {"files": files})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_remote_urls_only_from_allowed_hosts(demo_model, served_media):
    from bindspace.serve import Limits, create_app
    from bindspace.serve.fetch import FETCH_POLICY, FetchPolicy

    image, audio = served_media / "image_1.jpg", served_media / "audio_3.wav"
    files = {"/image.png": (image.read_bytes(), "image/jpeg"), "/sound": (audio.read_bytes(), "audio/wav"),
             "/big": (b"\xff" * 5000, "image/png")}
    policy = FetchPolicy.of(["127.0.0.1"], max_bytes=4096 * 1024, timeout_s=1.0)
    app = create_app(demo_model, limits=Limits(max_item_bytes=4096 * 1024), model_name="demo",
                     extras={FETCH_POLICY: policy})
    with media_server(files) as media, live_server(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
        parts = [{"type": "image_url", "image_url": {"url": f"{media}/image.png"}},
                 {"type": "audio_url", "audio_url": {"url": f"{media}/sound"}},
                 {"type": "image_url", "image_url": {"url": f"{media}/redirect-same"}}]
        got = client.embeddings.create(model="demo", input=[], encoding_format="float", extra_body={"input": parts})
        vectors = np.array([d.embedding for d in got.data])
        np.testing.assert_allclose(vectors[0], embedded(demo_model, "image", image), atol=1e-5)
        np.testing.assert_allclose(vectors[1], embedded(demo_model, "audio", audio), atol=1e-5)
        np.testing.assert_allclose(vectors[2], vectors[0], atol=1e-6)  # a same-host redirect is followed
        # The media type of the answer decides the kind of an image_url part (audio here).
        sound = client.embeddings.create(model="demo", input=[], encoding_format="float", extra_body={
            "input": [{"type": "image_url", "image_url": {"url": f"{media}/sound"}}]})
        np.testing.assert_allclose(sound.data[0].embedding, vectors[1], atol=1e-5)

        def error(url: str) -> tuple[int, str]:
            raw = httpx.post(f"{base}/v1/embeddings", timeout=60, json={"model": "demo", "input": [
                {"type": "image_url", "image_url": {"url": url}}]})
            return raw.status_code, raw.json()["error"]["message"]

        other_port = media.replace("127.0.0.1", "localhost")  # another host name for the same server
        assert error(f"{other_port}/image.png")[0] == 400 and "--fetch-allow" in error(f"{other_port}/image.png")[1]
        status, message = error(f"{media}/redirect-other")
        assert status == 400 and "redirect to another host" in message
        status, message = error(f"{media}/missing")
        assert status == 400 and "HTTP 404" in message
        small = FetchPolicy.of(["127.0.0.1"], max_bytes=1000, timeout_s=1.0)
        app.state.bindspace.extras[FETCH_POLICY] = small
        status, message = error(f"{media}/big")
        assert status == 413 and "limit of 1000" in message
        app.state.bindspace.extras[FETCH_POLICY] = policy
        started = time.monotonic()
        status, message = error(f"{media}/slow")
        assert status == 400 and "longer than 1 s" in message and time.monotonic() - started < 4


def test_fetch_policy_hosts():
    from bindspace.serve.fetch import FetchPolicy

    policy = FetchPolicy.of(["Media.Example.org.", "127.0.0.1:9000"])
    assert policy.allows("https://media.example.org/a.jpg") and policy.allows("http://MEDIA.example.org:81/a")
    assert policy.allows("http://127.0.0.1:9000/x") and not policy.allows("http://127.0.0.1:9001/x")
    assert not policy.allows("ftp://media.example.org/a") and not policy.allows("file:///etc/passwd")
    assert not policy.allows("http://evil.org/?media.example.org") and not policy.allows("http://[::1")
