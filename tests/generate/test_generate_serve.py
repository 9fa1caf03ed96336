"""POST /v1/generate: behind the write key, returns a PNG, same query + seed = same image."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from bindspace.errors import BindspaceError  # noqa: E402
from bindspace.generate import open_pipeline  # noqa: E402
from bindspace.serve import create_app  # noqa: E402
from bindspace.serve.generation import generator_extras, router  # noqa: E402

KEY = {"Authorization": "Bearer secret"}


@pytest.fixture(scope="module")
def client(tiny_model, tiny_generator_dir):
    app = create_app(tiny_model, api_key="secret", routers=[router],
                     extras=generator_extras(open_pipeline(tiny_generator_dir), tiny_model))
    with TestClient(app) as c:
        yield c


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_generates_a_png_from_mixed_parts(client, media_dir):
    audio = base64.b64encode((media_dir / "audio_1.wav").read_bytes()).decode()
    text_part = {"modality": "text", "text": "a dog", "weight": 0.5}
    body = {"parts": [{"modality": "audio", "data": audio}, text_part], "seed": 3}
    first = png(client.post("/v1/generate", json=body, headers=KEY))
    again = png(client.post("/v1/generate", json=body, headers=KEY))
    other = png(client.post("/v1/generate", json={**body, "seed": 4}, headers=KEY))
    text_only = png(client.post("/v1/generate", json={"parts": [text_part], "seed": 3}, headers=KEY))
    assert first.shape == (64, 64)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, text_only)


def test_needs_the_write_key(client):
    body = {"parts": [{"modality": "text", "text": "a dog"}]}
    assert client.post("/v1/generate", json=body).status_code == 401
    assert client.post("/v1/generate", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_refused_without_a_write_key_configured(tiny_model, tiny_generator_dir):
    app = create_app(tiny_model, routers=[router],
                     extras=generator_extras(open_pipeline(tiny_generator_dir), tiny_model))
    response = TestClient(app).post("/v1/generate", json={"parts": [{"modality": "text", "text": "a dog"}]},
                                    headers=KEY)
    assert response.status_code == 403


def test_no_generator_and_bad_requests(client, tiny_model):
    bare = TestClient(create_app(tiny_model, api_key="secret", routers=[router]))
    response = bare.post("/v1/generate", json={"parts": [{"modality": "text", "text": "a dog"}]}, headers=KEY)
    assert response.status_code == 409 and "--pipeline" in response.json()["error"]
    response = client.post("/v1/generate", json={"parts": [{"modality": "text", "text": "a dog"}], "prompt": "red"},
                           headers=KEY)
    assert response.status_code == 400 and "no text encoder" in response.json()["error"]
    response = client.post("/v1/generate", json={"parts": [{"modality": "audio", "data": "bm90IGF1ZGlv"}]},
                           headers=KEY)
    assert response.status_code == 400 and "\n" not in response.json()["error"]
    response = client.post("/v1/generate", json={"parts": [{"modality": "text", "text": "a"}], "steps": 0},
                           headers=KEY)
    assert response.status_code == 422


def test_width_is_checked_when_the_server_starts(tiny_model, unclip_wide_dir):
    with pytest.raises(BindspaceError, match="32-d image embeddings"):
        generator_extras(open_pipeline(unclip_wide_dir), tiny_model)


def test_unclip_pipeline_behind_the_endpoint(tiny_model, unclip_dir):
    pipeline = open_pipeline(unclip_dir)
    extras = generator_extras(pipeline, tiny_model)
    assert pipeline.describe()["embedding"]["source"] == "measured"  # loaded at start-up, not on first request
    with TestClient(create_app(tiny_model, api_key="secret", routers=[router], extras=extras)) as client:
        body = {"parts": [{"modality": "text", "text": "a dog"}], "steps": 1, "prompt": "cat"}
        image = png(client.post("/v1/generate", json=body, headers=KEY))
        assert image.shape == (16, 16, 3)
        response = client.post("/v1/generate", json={**body, "height": 20}, headers=KEY)
        assert response.status_code == 400 and "divisible by 8" in response.json()["error"]


@pytest.fixture
def served(monkeypatch) -> dict:
    """Replaces uvicorn.run: `bindspace serve` builds its app and returns instead of serving."""
    import uvicorn

    calls: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    monkeypatch.delenv("BINDSPACE_API_KEY", raising=False)
    monkeypatch.delenv("BINDSPACE_READ_KEY", raising=False)
    return calls


def test_serve_pipeline_option(served, tiny_model_dir, tiny_generator_dir, capsys):
    from bindspace.cli import main

    assert main(["serve", "--checkpoint", str(tiny_model_dir), "--pipeline", str(tiny_generator_dir),
                 "--api-key", "secret"]) == 0
    assert "POST /v1/generate" in capsys.readouterr().err
    with TestClient(served["app"]) as client:
        png(client.post("/v1/generate", json={"parts": [{"modality": "text", "text": "a dog"}]}, headers=KEY))


def test_serve_refuses_a_pipeline_of_another_width(served, tiny_model_dir, unclip_wide_dir, capsys):
    from bindspace.cli import main

    capsys.readouterr()
    code = main(["serve", "--checkpoint", str(tiny_model_dir), "--pipeline", str(unclip_wide_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "app" not in served
    assert len(err.splitlines()) == 1 and "32-d image embeddings" in err


def test_a_body_sent_as_curl_d_sends_it_is_read_as_json(client):
    """`curl -d '{...}'` declares a form (application/x-www-form-urlencoded): the JSON in it is what counts."""
    body = json.dumps({"parts": [{"modality": "text", "text": "a dog"}], "seed": 3})
    as_form = client.post("/v1/generate", content=body,
                          headers={**KEY, "Content-Type": "application/x-www-form-urlencoded"})
    as_json = client.post("/v1/generate", content=body, headers={**KEY, "Content-Type": "application/json"})
    np.testing.assert_array_equal(png(as_form), png(as_json))
