"""The Weaviate multi2vec-bind drop-in: request/response field names, shapes, probes, errors."""
from __future__ import annotations

import base64

import numpy as np

FIELDS = {"texts": "textVectors", "images": "imageVectors", "audio": "audioVectors", "video": "videoVectors",
          "imu": "imuVectors", "thermal": "thermalVectors", "depth": "depthVectors"}


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_vectorize_answers_every_list_in_order(make_client, served_media, media_vectors):
    client = make_client()
    body = {
        "texts": ["A dog.", "A car", "A bird"],
        "images": [b64(served_media / "image_1.jpg"), b64(served_media / "image_3.png")],
        "audio": [b64(served_media / "audio_3.wav")],
        "video": [b64(served_media / "video_1.mp4")],
        "imu": [b64(served_media / "imu_1.npy")],
        "thermal": [b64(served_media / "thermal_1.png")],
        "depth": [b64(served_media / "depth_1.png")],
    }
    response = client.post("/vectorize", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == set(FIELDS.values())
    for field, vectors_field in FIELDS.items():
        vectors = np.array(answer[vectors_field])
        assert vectors.shape == (len(body[field]), 24)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = {"imageVectors": ["image_1.jpg", "image_3.png"], "audioVectors": ["audio_3.wav"],
                "videoVectors": ["video_1.mp4"], "imuVectors": ["imu_1.npy"], "thermalVectors": ["thermal_1.png"],
                "depthVectors": ["depth_1.png"]}
    for field, names in expected.items():
        want = np.stack([media_vectors[n].numpy() for n in names])
        np.testing.assert_allclose(answer[field], want, atol=1e-5)
    texts = client.post("/v1/embed", json={"modality": "text", "texts": body["texts"]}).json()["vectors"]
    np.testing.assert_allclose(answer["textVectors"], texts, atol=1e-5)


def test_vectorize_with_nothing_gives_empty_lists(make_client):
    answer = make_client().post("/vectorize", json={"texts": []}).json()
    assert answer == {name: [] for name in FIELDS.values()}


def test_vectorize_bad_input_reports_error_field(make_client):
    response = make_client().post("/vectorize", json={"images": [base64.b64encode(b"nope").decode()]})
    assert response.status_code == 400
    assert response.json()["error"].startswith("images[0]:")


def test_vectorize_item_limit(make_client):
    response = make_client(max_items=2).post("/vectorize", json={"texts": ["a", "b"], "images": ["aGk="]})
    assert response.status_code == 413


def test_meta_and_probes(make_client):
    client = make_client()
    meta = client.get("/meta").json()
    assert meta["model"] == "imagebind_tiny_test" and meta["embed_dim"] == 24
    assert set(meta["modalities"]) == {"vision", "text", "audio", "depth", "thermal", "imu"}
    assert client.get("/.well-known/live").status_code == 204
    assert client.get("/.well-known/ready").status_code == 204


def test_not_ready_before_startup(tiny_model):
    from fastapi.testclient import TestClient

    from bindspace.serve import create_app

    client = TestClient(create_app(tiny_model))  # no `with`: the lifespan (warm-up) has not run
    assert client.get("/.well-known/ready").status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/.well-known/live").status_code == 204
