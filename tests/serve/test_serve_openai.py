"""POST /v1/embeddings and GET /v1/models through the official `openai` package, unmodified, against a real server."""
from __future__ import annotations

import base64
from collections.abc import Callable

import numpy as np
import openai
import pytest
import torch
from serve_helpers import live_server

from bindspace import preprocess
from bindspace.preprocess.tokenizer import tokenize

TEXTS = ["a dog barking", "rain on a tin roof"]


@pytest.fixture(scope="module")
def server(tiny_model):
    from bindspace.serve import create_app

    with live_server(create_app(tiny_model, read_key="reader")) as base:
        yield base


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="reader", max_retries=0, timeout=120)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_text_embeddings_float_and_base64(client, tiny_model):
    with torch.inference_mode():
        want = tiny_model.encode("text", tokenize(TEXTS)).numpy()
    floats = client.embeddings.create(model="imagebind_tiny_test", input=TEXTS, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.model == "imagebind_tiny_test"
    np.testing.assert_allclose([d.embedding for d in floats.data], want, atol=1e-5)
    # The package's default asks for base64 and decodes it itself.
    default = client.embeddings.create(model="anything", input=TEXTS)
    np.testing.assert_allclose([d.embedding for d in default.data], want, atol=1e-6)
    raw = client.embeddings.with_raw_response.create(model="m", input=TEXTS[0], encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), want[0], atol=1e-6)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == sum(
        int((row > 0).sum()) for row in tokenize(TEXTS))


def test_dimensions_truncate_and_renormalise(client, tiny_model):
    with torch.inference_mode():
        full = tiny_model.encode("text", tokenize(TEXTS[:1])).numpy()[0]
    got = np.array(client.embeddings.create(model="m", input=TEXTS[0], dimensions=8).data[0].embedding)
    np.testing.assert_allclose(got, full[:8] / np.linalg.norm(full[:8]), atol=1e-5)


@pytest.mark.parametrize("modality,name", [("audio", "audio_3.wav"), ("image", "image_2.png"),
                                           ("depth", "depth_1.png")])
def test_media_via_the_modality_extension(client, tiny_model, served_media, modality, name):
    data = (served_media / name).read_bytes()
    items = [b64(data), f"data:application/octet-stream;base64,{b64(data)}"]
    response = client.embeddings.create(model="m", input=items, extra_body={"modality": modality})
    loaders: dict[str, Callable[..., torch.Tensor]] = {
        "audio": preprocess.load_audio, "image": preprocess.load_image, "depth": preprocess.load_depth}
    loader = loaders[modality]
    with torch.inference_mode():
        want = tiny_model.encode("vision" if modality == "image" else modality, loader(str(served_media / name))[None])
    for item in response.data:
        np.testing.assert_allclose(item.embedding, want[0].numpy(), atol=1e-5)
    assert response.usage.prompt_tokens == 0


@pytest.mark.parametrize("modality,name", [("image", "image_2.png"), ("depth", "depth_1.png"), ("imu", "imu_1.npy")])
def test_media_at_a_model_of_another_size(small_model, served_media, modality, name):
    """A 32-px / 400-sample / 16-d model: items are prepared at the served model's own sizes, not 224 px."""
    from bindspace.serve import create_app

    cfg = small_model.config.towers
    sizes = {"image": {"size": cfg["vision"].input_size[0]}, "depth": {"size": cfg["depth"].input_size[0]},
             "imu": {"length": cfg["imu"].input_size[0]}}[modality]
    loaders: dict[str, Callable[..., torch.Tensor]] = {
        "image": preprocess.load_image, "depth": preprocess.load_depth, "imu": preprocess.load_imu}
    with torch.inference_mode():
        x = loaders[modality](str(served_media / name), **sizes)[None]
        want = small_model.encode("vision" if modality == "image" else modality, x).numpy()[0]
    with live_server(create_app(small_model)) as base:
        small = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
        response = small.embeddings.create(model="m", input=[b64((served_media / name).read_bytes())],
                                           extra_body={"modality": modality})
    assert len(response.data[0].embedding) == 16
    np.testing.assert_allclose(response.data[0].embedding, want, atol=1e-5)


def test_models_list_and_retrieve(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["imagebind_tiny_test"]
    assert client.models.retrieve("imagebind_tiny_test").owned_by == "bindspace"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_errors_come_in_openais_shape(client, server):
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="m", input=["%%%"], extra_body={"modality": "image"})
    body = bad.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error" and "input[0]" in body["message"]
    with pytest.raises(openai.BadRequestError) as unknown:
        client.embeddings.create(model="m", input="x", extra_body={"modality": "smell"})
    assert "unknown modality" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as url:
        client.embeddings.create(model="m", input="https://example.com/cat.jpg", extra_body={"modality": "image"})
    assert "remote URLs" in url.value.message
    with pytest.raises(openai.BadRequestError) as tokens:
        client.embeddings.create(model="m", input=[[1, 2, 3]])
    assert "token arrays" in tokens.value.message
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input="x", dimensions=4096)
    wrong_key = openai.OpenAI(base_url=f"{server}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        wrong_key.embeddings.create(model="m", input="x")
    assert isinstance(auth.value.body, dict) and auth.value.body["type"] == "authentication_error"
