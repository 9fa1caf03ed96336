"""The /v1 API: embeddings equal the library's, search, items, media, auth, limits and errors."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from serve_helpers import item_id

TEXTS = ["A dog.", "a photo of a red sports car parked by the sea", "Ünïcödé café — naïve façade"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_one_line_error(response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "type"}
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    for needle in needles:
        assert needle in body["error"], body["error"]


# ---------------------------------------------------------------- embed


def test_embed_texts_equal_the_models_vectors(make_client, tiny_model):
    from bindspace.preprocess import text

    client = make_client()
    response = client.post("/v1/embed", json={"modality": "text", "texts": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["modality"] == "text" and body["dim"] == 24 and body["model"] == "imagebind_tiny_test"
    with torch.inference_mode():
        expected = tiny_model.encode("text", text(TEXTS)).numpy()
    np.testing.assert_allclose(np.array(body["vectors"]), expected, atol=1e-5)


def test_embed_image_by_json_and_multipart_agree_with_the_library(make_client, served_media, media_vectors):
    client = make_client()
    data = (served_media / "image_1.jpg").read_bytes()
    by_json = client.post("/v1/embed", json={"modality": "image", "items": [b64(data)]})
    by_form = client.post("/v1/embed", data={"modality": "image"},
                          files=[("files", ("image_1.jpg", data, "image/jpeg"))])
    assert by_json.status_code == 200 and by_form.status_code == 200, (by_json.text, by_form.text)
    expected = media_vectors["image_1.jpg"].numpy()
    np.testing.assert_allclose(by_json.json()["vectors"][0], expected, atol=1e-5)
    np.testing.assert_allclose(by_form.json()["vectors"][0], expected, atol=1e-5)


def test_embed_data_url_and_vision_detects_video(make_client, served_media, media_vectors):
    client = make_client()
    video = (served_media / "video_1.mp4").read_bytes()
    response = client.post("/v1/embed", json={"modality": "vision", "items": ["data:video/mp4;base64," + b64(video)]})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["vectors"][0], media_vectors["video_1.mp4"].numpy(), atol=1e-5)


def _truncated_png(served_media) -> bytes:
    return (served_media / "image_2.png").read_bytes()[:2000]


@pytest.mark.parametrize("modality,payload,needle", [
    ("image", b"this is not an image at all", "image[0]"),
    ("image", "TRUNCATED", "image[0]"),
    ("audio", b"RIFF\x00\x00\x00\x00WAVEjunk", "audio[0]"),
    ("video", b"\x00\x00\x00\x18ftypmp42 broken", "video[0]"),
    ("depth", b"\x89PNG\r\n\x1a\n nope", "depth[0]"),
    ("imu", b"\x93NUMPY garbage", "imu[0]"),
])
def test_bad_media_is_a_400_naming_the_item(make_client, served_media, modality, payload, needle):
    client = make_client()
    if payload == "TRUNCATED":
        payload = _truncated_png(served_media)
    response = client.post("/v1/embed", json={"modality": modality, "items": [b64(payload)]})
    assert_one_line_error(response, 400, needle)
    assert response.json()["type"] == "bad_input"


def test_bad_upload_is_named_by_its_file_name(make_client):
    client = make_client()
    response = client.post("/v1/embed", data={"modality": "audio"},
                           files=[("files", ("song.wav", b"not audio", "audio/wav"))])
    assert_one_line_error(response, 400, "song.wav")


@pytest.mark.parametrize("body,status,needle", [
    ({"modality": "smell", "items": ["aGk="]}, 422, "unknown modality"),
    ({"modality": "image", "items": []}, 422, "no items"),
    ({"modality": "image", "items": ["%%%not base64%%%"]}, 400, "not valid base64"),
    ({"modality": "text", "texts": "not a list"}, 422, "texts"),
    ({"modality": "text", "texts": ["a"], "extra": 1}, 422, "extra"),
    ({"modality": "text"}, 422, "no texts"),
])
def test_invalid_requests_are_4xx_with_one_line(make_client, body, status, needle):
    assert_one_line_error(make_client().post("/v1/embed", json=body), status, needle)


def test_invalid_json_and_content_type(make_client):
    client = make_client()
    assert_one_line_error(client.post("/v1/embed", content=b"{nope", headers={"content-type": "application/json"}),
                          400, "not valid JSON")
    assert_one_line_error(client.post("/v1/embed", content=b"x", headers={"content-type": "text/plain"}), 415)


def test_model_without_the_tower_is_422(make_client, tiny_state):
    import bindspace

    text_only = bindspace.create_model("imagebind_tiny_test", modalities=["text"])
    text_only.load_state_dict({k: v for k, v in tiny_state.items() if ".text" in k or k.startswith("text")},
                              strict=False)
    client = make_client(model=text_only.eval())
    response = client.post("/v1/embed", json={"modality": "image", "items": [b64(b"x")]})
    assert_one_line_error(response, 422, "no vision tower")


# ---------------------------------------------------------------- limits


def test_body_over_limit_is_413_by_content_length(make_client):
    client = make_client(max_body_bytes=1000)
    response = client.post("/v1/embed", json={"modality": "text", "texts": ["x" * 2000]})
    assert_one_line_error(response, 413, "1000 bytes")


def test_body_over_limit_is_413_while_streaming(make_client):
    client = make_client(max_body_bytes=1000)

    def chunks():  # no Content-Length: the limit must trip while reading
        yield b'{"modality": "text", "texts": ["'
        for _ in range(50):
            yield b"x" * 100
        yield b'"]}'

    response = client.post("/v1/embed", content=chunks(), headers={"content-type": "application/json"})
    assert_one_line_error(response, 413)


def test_item_size_count_and_text_length_limits(make_client, served_media):
    client = make_client(max_item_bytes=10_000, max_items=3, max_text_chars=50)
    big = (served_media / "image_1.jpg").read_bytes()  # 86 kB
    assert_one_line_error(client.post("/v1/embed", json={"modality": "image", "items": [b64(big)]}), 413, "image[0]")
    assert_one_line_error(client.post("/v1/embed", data={"modality": "image"},
                                      files=[("files", ("big.jpg", big, "image/jpeg"))]), 413, "big.jpg")
    assert_one_line_error(client.post("/v1/embed", json={"modality": "text", "texts": ["a"] * 4}), 413, "4 items")
    assert_one_line_error(client.post("/v1/embed", json={"modality": "text", "texts": ["y" * 51]}), 413, "texts[0]")
    assert client.post("/v1/embed", json={"modality": "text", "texts": ["a"] * 3}).status_code == 200


# ---------------------------------------------------------------- search


@pytest.mark.parametrize("name,modality", [
    ("image_2.png", "image"), ("audio_3.wav", "audio"), ("depth_1.png", "depth"), ("thermal_1.png", "thermal"),
    ("imu_1.npy", "imu"), ("video_1.mp4", "video"),
])
def test_search_with_an_indexed_file_finds_it_first(make_client, memory_store, served_media, name, modality):
    client = make_client(store=memory_store)
    data = b64((served_media / name).read_bytes())
    response = client.post("/v1/search", json={"parts": [{"modality": modality, "data": data}], "k": 3})
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert hits[0]["name"] == name and hits[0]["score"] > 0.999
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_search_modality_filter_and_k(make_client, memory_store):
    client = make_client(store=memory_store)
    response = client.post("/v1/search", json={"parts": [{"text": "a dog"}], "k": 2, "modality": "image"})
    hits = response.json()["hits"]
    assert len(hits) == 2 and {h["modality"] for h in hits} == {"image"}
    everything = client.post("/v1/search", json={"parts": [{"text": "a dog"}], "k": 50}).json()["hits"]
    assert len(everything) == len(memory_store.items)
    # "vision" is the store's own group (image and video), not a name the server maps itself.
    vision = client.post("/v1/search", json={"parts": [{"text": "a dog"}], "k": 50, "modality": "vision"}).json()
    assert sorted(h["modality"] for h in vision["hits"]) == ["image", "image", "image", "video"]
    assert_one_line_error(client.post("/v1/search", json={"parts": [{"text": "a"}], "modality": "smell"}), 400,
                          "smell")


def test_search_weights_steer_the_combination(make_client, memory_store, served_media):
    client = make_client(store=memory_store)
    audio = b64((served_media / "audio_3.wav").read_bytes())
    depth = b64((served_media / "depth_1.png").read_bytes())
    parts = [{"modality": "audio", "data": audio}, {"modality": "depth", "data": depth}]

    def top(weights):
        response = client.post("/v1/search", json={"parts": parts, "weights": weights, "k": 1})
        assert response.status_code == 200, response.text
        return response.json()["hits"][0]["name"]

    assert top([1.0, 0.0]) == "audio_3.wav"
    assert top([0.0, 1.0]) == "depth_1.png"
    assert_one_line_error(client.post("/v1/search", json={"parts": parts, "weights": [1.0]}), 422, "weights")


def test_search_hits_carry_urls_and_segments(make_client, memory_store):
    client = make_client(store=memory_store)
    hits = client.post("/v1/search", json={"parts": [{"text": "x"}], "k": 50}).json()["hits"]
    by_name = {h["name"]: h for h in hits}
    audio = by_name["audio_1.wav"]
    assert audio["preview_url"] == audio["media_url"] + "#t=0,2" and audio["thumbnail_url"] is None
    assert by_name["video_1.mp4"]["kind"] == "video" and by_name["video_1.mp4"]["thumbnail_url"]
    assert by_name["image_1.jpg"]["media_url"] == f"/v1/items/{item_id('image_1.jpg')}/media"


def test_search_errors(make_client, memory_store):
    assert_one_line_error(make_client().post("/v1/search", json={"parts": [{"text": "x"}]}), 409, "--db")
    client = make_client(store=memory_store)
    assert_one_line_error(client.post("/v1/search", json={"parts": []}), 422, "parts")
    assert_one_line_error(client.post("/v1/search", json={"parts": [{"modality": "image"}]}), 422, "parts[0]")
    assert_one_line_error(client.post("/v1/search", json={"parts": [{"text": "x"}], "k": 0}), 422, "k")
    bad = {"parts": [{"modality": "image", "data": b64(b"garbage"), "name": "query.jpg"}]}
    assert_one_line_error(client.post("/v1/search", json=bad), 400, "query.jpg")


# ---------------------------------------------------------------- items and media


def test_item_metadata_and_unknown_id(make_client, memory_store, served_media):
    client = make_client(store=memory_store)
    body = client.get(f"/v1/items/{item_id('thermal_1.png')}").json()
    assert body["uri"] == str(served_media / "thermal_1.png") and body["modality"] == "thermal"
    assert_one_line_error(client.get("/v1/items/does-not-exist"), 404)


def test_media_streams_the_indexed_file_with_type_and_ranges(make_client, memory_store, served_media):
    client = make_client(store=memory_store)
    data = (served_media / "audio_3.wav").read_bytes()
    url = f"/v1/items/{item_id('audio_3.wav')}/media"
    full = client.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"].startswith("audio/")
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    image = client.get(f"/v1/items/{item_id('image_1.jpg')}/media")
    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", [
    "/v1/items/..%2F..%2F..%2Fetc%2Fpasswd/media",
    "/v1/items/%2Fetc%2Fpasswd/media",
    "/v1/items/../../etc/passwd",
    "/v1/items/..%252F..%252Fetc%252Fpasswd/media",
    "/v1/items/image_1.jpg/media",
    "/v1/items/media?path=/etc/passwd",
])
def test_no_path_reaches_files_outside_the_index(make_client, memory_store, path):
    response = make_client(store=memory_store).get(path)
    assert response.status_code in (404, 405), (path, response.status_code)
    assert b"root:" not in response.content


def test_media_of_a_vanished_file_is_404(make_client, memory_store, served_media, tmp_path):
    gone = tmp_path / "gone.png"
    gone.write_bytes((served_media / "image_3.png").read_bytes())
    item = memory_store.get(item_id("image_3.png"))
    item.uri = str(gone)
    gone.unlink()
    client = make_client(store=memory_store)
    assert_one_line_error(client.get(f"/v1/items/{item.id}/media"), 404, "no longer on disk")
    assert_one_line_error(client.get(f"/v1/items/{item.id}/thumbnail"), 404)


@pytest.mark.parametrize("name", ["image_2.png", "video_1.mp4", "depth_1.png", "thermal_1.png"])
def test_thumbnails_are_small_jpegs(make_client, memory_store, name):
    response = make_client(store=memory_store).get(f"/v1/items/{item_id(name)}/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and max(image.size) <= 320 and min(image.size) > 8


def test_no_thumbnail_for_audio(make_client, memory_store):
    assert_one_line_error(make_client(store=memory_store).get(f"/v1/items/{item_id('audio_3.wav')}/thumbnail"), 404,
                          "audio")


# ---------------------------------------------------------------- auth


def test_writes_are_refused_without_a_configured_key(make_client, memory_store):
    client = make_client(store=memory_store)
    target = f"/v1/items/{item_id('image_1.jpg')}"
    assert_one_line_error(client.delete(target, headers={"Authorization": "Bearer anything"}), 403, "API_KEY")
    assert_one_line_error(client.post("/v1/index", json={"paths": ["."]}), 403)
    assert client.get(target).status_code == 200  # still there


def test_writes_need_the_right_key(make_client, memory_store):
    client = make_client(store=memory_store, api_key="s3cret")
    target = f"/v1/items/{item_id('image_1.jpg')}"
    assert_one_line_error(client.delete(target), 401, "missing API key")
    assert_one_line_error(client.delete(target, headers={"Authorization": "Bearer wrong"}), 401, "wrong")
    assert_one_line_error(client.delete(target, headers={"X-API-Key": "s3cre"}), 401)
    assert_one_line_error(client.post("/v1/index", json={"paths": ["."]}), 401)
    assert client.get(target).status_code == 200
    assert client.delete(target, headers={"Authorization": "Bearer s3cret"}).json() == {"deleted": 1}
    assert client.get(target).status_code == 404
    other = f"/v1/items/{item_id('image_2.png')}"
    assert client.delete(other, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert_one_line_error(client.delete(other, headers={"X-API-Key": "s3cret"}), 404)


def test_index_request_for_a_missing_path_is_400(make_client, memory_store, tmp_path):
    client = make_client(store=memory_store, api_key="k")
    response = client.post("/v1/index", json={"paths": [str(tmp_path / "nope")]}, headers={"X-API-Key": "k"})
    assert_one_line_error(response, 400, "nope")


# ---------------------------------------------------------------- service


def test_health_ready_metrics_and_openapi(make_client):
    client = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    client.post("/v1/embed", json={"modality": "text", "texts": ["a", "b"]})
    client.post("/v1/embed", json={"modality": "smell", "texts": ["a"]})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'bindspace_http_requests_total{method="POST",route="/v1/embed",status="200"} 1' in text
    assert 'bindspace_http_requests_total{method="POST",route="/v1/embed",status="422"} 1' in text
    assert 'bindspace_embedded_items_total{modality="text"}' in text
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/embed", "/v1/search", "/v1/items/{item_id}/media", "/vectorize", "/metrics"):
        assert path in paths
    assert "multipart/form-data" in paths["/v1/embed"]["post"]["requestBody"]["content"]


def test_page_is_served_without_external_resources(make_client):
    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text


def test_index_with_a_different_model_is_refused(tiny_model):
    from serve_helpers import MemoryStore

    from bindspace.errors import BindspaceError
    from bindspace.index.store import ModelInfo
    from bindspace.serve import create_app

    with pytest.raises(BindspaceError, match="1024-d"):
        create_app(tiny_model, MemoryStore(ModelInfo("imagebind_huge", "abc", 1024)))
