"""Cohere's Embed v2 API (POST /v2/embed) through the official `cohere` client, unmodified, against a real server.

The demo geometry (16-px images, 64-d space). Expected vectors come from the library (loader at
the tower's geometry + encode); the packed binary types are computed here from those floats
with NumPy, independently of the server's code. Errors are Cohere's `{"id", "message"}`.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serve_helpers import live_server

from bindspace.embedding.loading import geometry, item_loader
from bindspace.kinds import tower_of
from bindspace.preprocess.tokenizer import tokenize

cohere = pytest.importorskip("cohere", reason="the cohere client is not installed (pip install cohere)")

TEXTS = ["a dog barking", "rain on a tin roof"]


@pytest.fixture(scope="module")
def server(demo_model):
    from bindspace.serve import Limits, create_app

    app = create_app(demo_model, model_name="demo", read_key="reader", limits=Limits(max_body_bytes=2_000_000))
    with live_server(app) as base:
        yield base


@pytest.fixture
def client(server):
    return cohere.ClientV2(api_key="reader", base_url=server, timeout=120, max_retries=0)


def want(model, kind: str, path: Path) -> np.ndarray:
    tower = tower_of(kind)
    x = item_loader(kind)(str(path), **geometry(kind, model.tower_config(tower)))
    with torch.inference_mode():
        return model.encode(tower, x[None])[0].numpy()


def want_texts(model, texts: list[str]) -> np.ndarray:
    with torch.inference_mode():
        return model.encode("text", tokenize(texts)).numpy()


def data_url(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"


def test_texts_in_every_computed_type(client, demo_model):
    want = want_texts(demo_model, TEXTS)
    response = client.embed(model="embed-v4.0", input_type="search_document", texts=TEXTS,
                            embedding_types=["float", "base64", "ubinary", "binary"])
    assert response.response_type == "embeddings_by_type" and response.id
    floats = np.array(response.embeddings.float_)
    np.testing.assert_allclose(floats, want, atol=1e-5)
    decoded = [np.frombuffer(base64.b64decode(row), dtype="<f4") for row in response.embeddings.base64]
    np.testing.assert_allclose(decoded, want, atol=1e-5)
    # Packed signs: 64 dimensions -> 8 bytes, dimension 0 in the top bit of byte 0.
    bits = floats > 0
    ubinary = np.array([[int("".join("1" if b else "0" for b in row[i:i + 8]), 2) for i in range(0, 64, 8)]
                        for row in bits])
    assert np.array(response.embeddings.ubinary).tolist() == ubinary.tolist()
    assert np.array(response.embeddings.binary).tolist() == (ubinary - 128).tolist()
    assert response.texts == TEXTS
    tokens = sum(int((row > 0).sum()) for row in tokenize(TEXTS))
    assert response.meta.billed_units.input_tokens == tokens and response.meta.api_version.version == "2"


def test_default_type_is_float_and_output_dimension(client, demo_model):
    full = want_texts(demo_model, TEXTS[:1])[0]
    response = client.embed(model="m", input_type="search_query", texts=TEXTS[:1])
    assert response.embeddings.float_ is not None and response.embeddings.binary is None
    np.testing.assert_allclose(response.embeddings.float_[0], full, atol=1e-5)
    short = client.embed(model="m", input_type="search_query", texts=TEXTS[:1], output_dimension=16)
    np.testing.assert_allclose(short.embeddings.float_[0], full[:16] / np.linalg.norm(full[:16]), atol=1e-5)


def test_images_as_data_uris(client, demo_model, served_media):
    png, jpg = served_media / "image_2.png", served_media / "image_1.jpg"
    response = client.embed(model="m", input_type="image", embedding_types=["float"],
                            images=[data_url(png, "image/png"), data_url(jpg, "image/jpeg")])
    np.testing.assert_allclose(response.embeddings.float_, [want(demo_model, "image", png),
                                                            want(demo_model, "image", jpg)], atol=1e-5)
    for info, path in zip(response.images, (png, jpg)):
        with Image.open(path) as image:
            assert (info.width, info.height) == image.size
        assert info.format == {"image_2.png": "png", "image_1.jpg": "jpeg"}[path.name] and info.bit_depth == 8
    assert response.meta.billed_units.images == 2 and response.texts is None


def test_images_may_be_other_media_by_their_data_uri_type(client, demo_model, served_media):
    audio = served_media / "audio_1.wav"
    response = client.embed(model="m", input_type="search_document", images=[data_url(audio, "audio/wav")])
    np.testing.assert_allclose(response.embeddings.float_[0], want(demo_model, "audio", audio), atol=1e-5)
    assert response.images is None  # no picture header to describe


def test_image_info_reads_only_still_images(served_media):
    from bindspace.serve.cohere_api import image_info

    info = image_info(data_url(served_media / "image_3.png", "image/png"), 10**7)
    assert info is not None and info["format"] == "png" and info["bit_depth"] == 8
    for value in ("https://media.example.org/a.png", data_url(served_media / "audio_1.wav", "audio/wav"), "%%"):
        assert image_info(value, 10**7) is None


def test_inputs_content_lists_are_combined(client, demo_model, served_media):
    image = served_media / "image_3.png"
    inputs = [cohere.EmbedInput(content=[
                  cohere.TextEmbedContent(text="a red square"),
                  cohere.ImageUrlEmbedContent(image_url=cohere.EmbedImageUrl(url=data_url(image, "image/png")))]),
              cohere.EmbedInput(content=[cohere.TextEmbedContent(text="a cat")])]
    response = client.embed(model="m", input_type="search_document", inputs=inputs, embedding_types=["float"])
    total = want_texts(demo_model, ["a red square"])[0] + want(demo_model, "image", image)
    np.testing.assert_allclose(response.embeddings.float_[0], total / np.linalg.norm(total), atol=1e-5)
    np.testing.assert_allclose(response.embeddings.float_[1], want_texts(demo_model, ["a cat"])[0], atol=1e-5)


def test_raw_request_as_published(server, demo_model):
    """Cohere's curl example: lower-case `bearer`, the JSON body, Cohere's answer keys."""
    body = {"model": "embed-v4.0", "input_type": "classification", "embedding_types": ["float"],
            "texts": ["hello", "goodbye"]}
    answer = httpx.post(f"{server}/v2/embed", json=body, timeout=60,
                        headers={"Authorization": "bearer reader", "accept": "application/json"})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == {"id", "embeddings", "texts", "meta", "response_type"}
    np.testing.assert_allclose(data["embeddings"]["float"], want_texts(demo_model, ["hello", "goodbye"]), atol=1e-5)
    schema = httpx.get(f"{server}/openapi.json").json()["paths"]["/v2/embed"]["post"]["requestBody"]
    assert {"texts", "images", "inputs", "embedding_types"} <= set(
        schema["content"]["application/json"]["schema"]["properties"])  # /docs shows the body


@pytest.mark.parametrize("kwargs,needle", [
    ({"texts": ["x"], "embedding_types": ["int8"]}, "int8 is not available"),
    ({"texts": ["x"], "embedding_types": ["uint8"]}, "uint8 is not available"),
    ({"texts": ["x"], "embedding_types": ["bits"]}, "unknown type 'bits'"),
    ({"texts": ["x"], "truncate": "START"}, "START is not available"),
    ({"texts": ["x"], "max_tokens": 10}, "at least that"),
    ({"texts": ["word " * 200], "truncate": "NONE"}, "texts[0]: longer than the model's 77 tokens"),
    ({"texts": ["x"], "output_dimension": 65}, "64-d vectors"),
    ({"texts": ["x"], "images": ["data:image/png;base64,AAAA"]}, "exactly one of"),
    ({"images": ["data:image/png;base64,%%%"]}, "images[0]"),
    ({"images": ["https://example.com/a.png"]}, "--fetch-allow"),
])
def test_errors_in_cohere_shape_through_the_client(client, kwargs, needle):
    with pytest.raises(cohere.BadRequestError) as caught:
        client.embed(model="m", input_type="search_document", **kwargs)
    assert set(caught.value.body) == {"id", "message"}, caught.value.body
    assert needle in caught.value.body["message"]


def test_input_type_is_checked(server):
    answer = httpx.post(f"{server}/v2/embed", headers={"Authorization": "Bearer reader"},
                        json={"model": "m", "input_type": "search", "texts": ["x"]})
    assert answer.status_code == 400 and "input_type" in answer.json()["message"]


def test_auth_and_errors_outside_the_route(server):
    with pytest.raises(cohere.UnauthorizedError) as caught:
        cohere.ClientV2(api_key="wrong", base_url=server, max_retries=0).embed(
            model="m", input_type="search_query", texts=["x"])
    assert caught.value.body["message"] == "wrong API key" and set(caught.value.body) == {"id", "message"}
    too_big = httpx.post(f"{server}/v2/embed", headers={"Authorization": "Bearer reader"},
                         content=json.dumps({"model": "m", "texts": ["x" * 2_100_000]}))
    assert too_big.status_code == 413 and set(too_big.json()) == {"id", "message"}
    wrong_method = httpx.get(f"{server}/v2/embed", headers={"Authorization": "Bearer reader"})
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"id", "message"}
    not_json = httpx.post(f"{server}/v2/embed", headers={"Authorization": "Bearer reader"}, content=b"{nope")
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]


def test_reads_need_no_key_without_a_read_key(demo_model):
    """As every read route: a server without a read key takes whatever key the client sends."""
    from bindspace.serve import create_app

    with live_server(create_app(demo_model, model_name="demo", api_key="writer")) as base:
        response = cohere.ClientV2(api_key="anything", base_url=base, max_retries=0).embed(
            model="m", input_type="search_query", texts=["a dog"])
        np.testing.assert_allclose(response.embeddings.float_[0], want_texts(demo_model, ["a dog"])[0], atol=1e-5)
