"""clip-retrieval's back-end API (POST /knn-service, GET /indices-list, POST /metadata) against a real server.

Queried with clip-retrieval's own `ClipClient` (its module file, loaded without the package's
`__init__`, which imports the whole faiss/flask back-end), and with raw requests shaped as the
web front-end sends them. Expected rankings are computed here from the indexed vectors.
"""
from __future__ import annotations

import base64
import dataclasses
import importlib.util
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from serve_helpers import item_id, live_server

from bindspace.preprocess.tokenizer import tokenize


def load_clip_client():
    """clip_retrieval/clip_client.py as published (pip install --no-deps clip-retrieval; it needs only requests)."""
    spec = importlib.util.find_spec("clip_retrieval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("clip-retrieval is not installed (pip install --no-deps clip-retrieval)")
    path = Path(list(spec.submodule_search_locations)[0]) / "clip_client.py"
    module_spec = importlib.util.spec_from_file_location("clip_retrieval_clip_client", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip_client_module():
    return load_clip_client()


@pytest.fixture
def served(tiny_model, served_media, memory_store):
    """A live server over the fixture index plus a copy of image_2.png at another path (same content)."""
    from bindspace.serve import create_app
    from bindspace.serve.clip_back import router

    store = memory_store
    original = store.get(item_id("image_2.png"))
    assert original is not None
    store.add([dataclasses.replace(original, id="copy-of-image-2", uri=str(served_media / "copy" / "image_2.png"))])
    app = create_app(tiny_model, store, routers=[router], extras={"index_name": "holiday"})
    with live_server(app) as base:
        yield base, store


def ranking(store, query: np.ndarray) -> list[tuple[str, float]]:
    """(id, cosine) of every item, best first, from the stored vectors."""
    rows = [(item.id, float(np.dot(item.vector, query) / np.linalg.norm(item.vector))) for item in store.items.values()]
    return sorted(rows, key=lambda row: -row[1])


def test_clip_client_text_query(served, clip_client_module, tiny_model):
    base, store = served
    client = clip_client_module.ClipClient(url=f"{base}/knn-service", indice_name="holiday", num_images=4,
                                           deduplicate=False)
    with torch.inference_mode():
        query = tiny_model.encode("text", tokenize(["a dog on a beach"]))[0].numpy()
    results = client.query(text="a dog on a beach")
    want = ranking(store, query)[:4]
    assert [r["id"] for r in results] == [row_id for row_id, _ in want]
    np.testing.assert_allclose([r["similarity"] for r in results], [score for _, score in want], atol=1e-5)
    for result in results:
        assert result["url"].startswith(f"{base}/v1/items/{result['id']}/media")
        assert httpx.get(result["url"].split("#")[0]).status_code == 200  # the url serves the file


def test_clip_client_image_file_and_deduplicate(served, clip_client_module, media_vectors, served_media):
    base, _ = served
    image = served_media / "image_2.png"
    duplicates = clip_client_module.ClipClient(url=f"{base}/knn-service", indice_name="holiday", num_images=3,
                                               deduplicate=False).query(image=str(image))
    assert {duplicates[0]["id"], duplicates[1]["id"]} == {item_id("image_2.png"), "copy-of-image-2"}
    assert duplicates[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert duplicates[0]["caption"] == "image_2.png" and duplicates[0]["kind"] == "image"
    unique = clip_client_module.ClipClient(url=f"{base}/knn-service", indice_name="holiday", num_images=3,
                                           deduplicate=True).query(image=str(image))
    # As clip-back: num_result_ids (= num_images in ClipClient) rows are searched, then duplicates dropped.
    assert [r["id"] for r in unique] == [duplicates[0]["id"], duplicates[2]["id"]]


def test_audio_and_video_rows_by_embedding(served, clip_client_module, media_vectors):
    base, _ = served
    client = clip_client_module.ClipClient(url=f"{base}/knn-service", indice_name="holiday", num_images=1)
    audio = client.query(embedding_input=media_vectors["audio_1.wav"].tolist())[0]
    assert audio["id"] == item_id("audio_1.wav") and audio["kind"] == "audio"
    assert audio["url"].endswith("/media#t=0,2") and audio["segment_end"] == 2.0  # the indexed segment
    video = client.query(embedding_input=(2 * media_vectors["video_1.mp4"]).tolist())[0]  # any length
    assert video["id"] == item_id("video_1.mp4") and video["media_type"] == "video/mp4"


def test_front_end_requests_indices_list_and_metadata(served, served_media, media_vectors):
    base, _ = served
    assert httpx.get(f"{base}/indices-list").json() == ["holiday"]
    image = base64.b64encode((served_media / "image_1.jpg").read_bytes()).decode()
    # clip-front's request body (every field it sends).
    body = {"text": None, "image": image, "image_url": None, "embedding_input": None, "modality": "image",
            "num_images": 2, "indice_name": "holiday", "num_result_ids": 2, "use_mclip": False,
            "deduplicate": True, "use_safety_model": True, "use_violence_detector": True, "aesthetic_score": "9",
            "aesthetic_weight": "0.5"}
    hits = httpx.post(f"{base}/knn-service", json=body, timeout=60).json()
    assert hits[0]["id"] == item_id("image_1.jpg")
    ids = [hits[0]["id"], "no-such-id"]
    meta = httpx.post(f"{base}/metadata", json={"ids": ids, "indice_name": "holiday"}).json()
    assert [m["id"] for m in meta] == ids and meta[1]["metadata"] == {}
    assert meta[0]["metadata"]["caption"] == "image_1.jpg" and meta[0]["metadata"]["url"] == hits[0]["url"]
    assert meta[0]["metadata"]["image_path"] == str(served_media / "image_1.jpg")


def test_errors_in_flask_restfuls_shape(served, clip_client_module, tmp_path, tiny_model):
    base, _ = served
    cases = [
        ({"text": "x", "modality": "image", "num_images": 1, "indice_name": "laion5B"}, 404, "no index 'laion5B'"),
        ({"modality": "image", "num_images": 1, "indice_name": "holiday"}, 400, "send one of text"),
        ({"image": "%%%", "modality": "image", "num_images": 1}, 400, "not valid base64"),
        ({"embedding_input": [1.0, 2.0], "modality": "image", "num_images": 1}, 400, "expected 24 finite"),
        ({"image_url": "http://127.0.0.1:9/x.jpg", "modality": "image", "num_images": 1}, 400, "--fetch-allow"),
        ({"text": "x", "modality": "sound", "num_images": 1}, 400, "modality must be image or text"),
        ({"text": "x", "modality": "image", "num_images": 5000}, 400, "num_images"),
    ]
    for body, status, needle in cases:
        answer = httpx.post(f"{base}/knn-service", json=body, timeout=60)
        assert answer.status_code == status and set(answer.json()) == {"message"}, (body, answer.text)
        assert needle in answer.json()["message"], (needle, answer.json())
    wrong_method = httpx.get(f"{base}/knn-service")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"message"}
    # ClipClient returns the error body as it got it.
    bad = clip_client_module.ClipClient(url=f"{base}/knn-service", indice_name="laion5B").query(text="x")
    assert bad == {"message": "no index 'laion5B': this server has 'holiday'"}


def test_without_an_index(tiny_model):
    from bindspace.serve import create_app
    from bindspace.serve.clip_back import router

    with live_server(create_app(tiny_model, routers=[router])) as base:
        answer = httpx.post(f"{base}/knn-service", json={"text": "x", "modality": "image", "num_images": 1})
        assert answer.status_code == 409 and "no index" in answer.json()["message"]


def test_bindspace_serve_db_answers_clip_client(tmp_path, served_media, media_vectors, tiny_pth, monkeypatch,
                                                clip_client_module):
    """`bindspace serve --db DIR` (the CLI's app, a real LanceDB index) includes the clip-back routes."""
    import uvicorn

    from bindspace.cli import main
    from testkit import lance_index_of

    db = tmp_path / "my-photos"
    files = {served_media / name: kind for name, kind in (("image_1.jpg", "image"), ("audio_3.wav", "audio"),
                                                           ("video_1.mp4", "video"))}
    lance_index_of(db, files, {path: media_vectors[path.name].numpy() for path in files}, tiny_pth)
    captured: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: captured.update(app=app))
    assert main(["serve", "--db", str(db), "--fetch-allow", "127.0.0.1", "media.example.org"]) == 0
    policy = captured["app"].state.bindspace.extras["fetch_policy"]
    assert policy.hosts == {"127.0.0.1", "media.example.org"} and policy.timeout_s == 10.0
    with live_server(captured["app"]) as base:
        assert httpx.get(f"{base}/indices-list").json() == ["my-photos"]
        client = clip_client_module.ClipClient(url=f"{base}/knn-service", indice_name="my-photos", num_images=3)
        audio = client.query(embedding_input=media_vectors["audio_3.wav"].tolist())
        assert [r["caption"] for r in audio][0] == "audio_3.wav" and len(audio) == 3
        assert audio[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert httpx.get(audio[0]["url"]).content == (served_media / "audio_3.wav").read_bytes()
