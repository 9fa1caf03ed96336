"""Chat and generate run on their own thread: a stuck or abandoned answer never holds the server's shared threads."""
from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_helpers import item_id, live_server

from bindspace.serve import Limits, create_app
from bindspace.serve.chat import router as chat_router
from bindspace.serve.generation import GENERATOR, GeneratorService
from bindspace.serve.generation import router as generate_router

KEY = "write-key"


class FakeBridge:
    """Answers "tok" per token, one every `token_s`, after `gate` opens; counts the tokens it made."""

    def __init__(self, gate: threading.Event | None = None, token_s: float = 0.0) -> None:
        self.gate = gate
        self.token_s = token_s
        self.produced = 0
        self.lm = type("LM", (), {"max_positions": None})()

    def check_prompt(self, prompt: str, media_count: int, max_new_tokens: int = 1, where: str = "prompt") -> Any:
        return type("Turn", (), {"ids": [1, 2, 3]})()

    encode = check_prompt  # the name the endpoint used before

    def answer_limit(self, prompt: str, media_count: int, max_new_tokens: int | None, default: int = 64,
                     where: str = "prompt") -> int:
        return max_new_tokens or default

    def stream(self, prompt: str, *, info: dict[str, Any], max_new_tokens: int, **options: Any):
        if self.gate is not None:
            self.gate.wait(30)
        info.update(prompt_tokens=3, completion_tokens=0, finish_reason="length")
        for _ in range(max_new_tokens):
            time.sleep(self.token_s)
            self.produced += 1
            info["completion_tokens"] += 1
            yield " tok"


class FakePipeline:
    """Draws a black 8x8 image once `gate` opens."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def generate(self, query: np.ndarray, options: Any) -> list[Image.Image]:
        self.gate.wait(30)
        return [Image.new("RGB", (8, 8))]


def _chat(stream: bool = False, max_tokens: int = 3) -> dict[str, Any]:
    return {"model": "x", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "what is this?"}]}


def test_stuck_answers_do_not_delay_searches_or_file_downloads(tiny_model, memory_store):
    gate = threading.Event()
    bridge = FakeBridge(gate)
    service = GeneratorService(FakePipeline(gate))
    app = create_app(tiny_model, memory_store, api_key=KEY, routers=[chat_router, generate_router],
                     extras={"bridge": bridge, GENERATOR: service})
    headers = {"Authorization": f"Bearer {KEY}"}
    generate_body = {"parts": [{"modality": "text", "text": "a dog"}]}

    async def main() -> tuple[int, int, bytes, list[int]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers,
                                         timeout=60) as client:
                # More queued requests than either shared pool has threads (asyncio's default executor, anyio's 40).
                stuck = [asyncio.ensure_future(client.post("/v1/generate", json=generate_body)) for _ in range(12)]
                stuck += [asyncio.ensure_future(client.post("/v1/chat/completions", json=_chat())) for _ in range(45)]
                try:
                    await asyncio.sleep(1.0)  # every request is in, waiting for the model
                    search = await asyncio.wait_for(client.post("/v1/search", json={"parts": [
                        {"modality": "text", "text": "a dog"}], "k": 2}), 20)
                    media = await asyncio.wait_for(client.get(f"/v1/items/{item_id('image_1.jpg')}/media"), 20)
                finally:
                    gate.set()
                answers = await asyncio.gather(*stuck)
        return search.status_code, media.status_code, media.content, [r.status_code for r in answers]

    search, media, content, answers = asyncio.run(main())
    assert search == 200 and media == 200 and content[:2] == b"\xff\xd8"  # the JPEG itself
    assert answers == [200] * len(answers)


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def _settled(bridge: FakeBridge) -> int:
    """The token count once the answer thread has stopped producing."""
    count = -1
    while count != bridge.produced:
        count = bridge.produced
        time.sleep(0.3)
    return count


@pytest.mark.slow
def test_a_timed_out_answer_stops_and_frees_the_model(tiny_model):
    bridge = FakeBridge(token_s=0.02)
    app = create_app(tiny_model, routers=[chat_router], limits=Limits(request_timeout_s=1.0),
                     extras={"bridge": bridge})
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        reply = client.post("/v1/chat/completions", json=_chat(max_tokens=1000))
        assert reply.status_code == 504 and reply.json()["error"]["code"] == "timeout"
        made = _settled(bridge)
        assert made < 200  # stopped at a token soon after the deadline, not after 1000 tokens (20 s)
        # A stream has the same deadline: an error event, and the model is freed.
        streamed = client.post("/v1/chat/completions", json=_chat(stream=True, max_tokens=1000))
        events = _events(streamed)
        assert events[-1].get("error", {}).get("code") == "timeout"
        assert _settled(bridge) - made < 200
        started = time.monotonic()
        again = client.post("/v1/chat/completions", json=_chat(max_tokens=3))
        assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "tok tok tok"
        assert time.monotonic() - started < 5  # generous: it must not wait for an abandoned answer (20 s)


@pytest.mark.slow
def test_a_stream_whose_client_goes_away_frees_the_model(tiny_model):
    bridge = FakeBridge(token_s=0.02)
    app = create_app(tiny_model, routers=[chat_router], extras={"bridge": bridge})
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/chat/completions", json=_chat(stream=True, max_tokens=1000)) as stream:
            lines = stream.iter_lines()
            while "tok" not in next(lines):
                pass  # the answer has started
        made = _settled(bridge)
        assert made < 200  # not the 1000 tokens (20 s) nobody reads
        again = client.post("/v1/chat/completions", json=_chat(max_tokens=3))
        assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "tok tok tok"


def test_generated_image_still_comes_back(tiny_model):
    gate = threading.Event()
    gate.set()
    app = create_app(tiny_model, api_key=KEY, routers=[generate_router],
                     extras={GENERATOR: GeneratorService(FakePipeline(gate))})
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        reply = client.post("/v1/generate", headers={"Authorization": f"Bearer {KEY}"},
                            json={"parts": [{"modality": "text", "text": "a dog"}]})
    assert reply.status_code == 200 and Image.open(io.BytesIO(reply.content)).size == (8, 8)
