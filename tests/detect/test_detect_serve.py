"""POST /v1/detect with the exact JSON a client sends (raw HTTP, no helpful headers), tiny 24-d model."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bindspace.serve.app import create_app
from bindspace.serve.detect_api import detector_extras
from bindspace.serve.detect_api import router as detect_router

from .conftest import planted_scene


def _png(image: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture()
def client(planted_detector, tiny_model, tmp_path):
    from bindspace.detect import save_detector

    folder = save_detector(planted_detector[0], tmp_path / "det")
    app = create_app(tiny_model, routers=[detect_router], extras=detector_extras(str(folder), tiny_model),
                     api_key="secret")
    with TestClient(app) as c:
        yield c


def test_detect_answers_boxes_per_image_without_the_write_key(client, media_dir):
    audio = base64.b64encode((media_dir / "audio_1.wav").read_bytes()).decode()
    body = {"images": [_png(planted_scene(np.random.default_rng(2))[0])] * 2, "threshold": 0.0, "max_detections": 2,
            "classes": [{"name": "red", "parts": [{"modality": "text", "text": "a red square"}]},
                        {"parts": [{"modality": "audio", "data": audio}, {"modality": "text", "text": "x",
                                                                           "weight": 0.5}]}]}
    response = client.post("/v1/detect", content=json.dumps(body))  # no Content-Type, no key: reads are open
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert [i["index"] for i in images] == [0, 1]
    assert images[0]["detections"] == images[1]["detections"] and 1 <= len(images[0]["detections"]) <= 2
    assert {d["label"] for d in images[0]["detections"]} <= {"red", "class 1"}


@pytest.mark.parametrize(("change", "status", "needle"), [
    ({"images": ["bm90IGFuIGltYWdl"]}, 400, "images[0]"),  # "not an image"
    ({"classes": []}, 422, "classes"),
    ({"classes": [{"parts": [{"modality": "audio", "data": "AAAA"}]}]}, 400, "classes[0].parts[0]"),
])
def test_bad_requests_are_one_line(client, change, status, needle):
    body = {"images": [_png(planted_scene(np.random.default_rng(2))[0])],
            "classes": [{"parts": [{"modality": "text", "text": "a"}]}], **change}
    response = client.post("/v1/detect", json=body)
    assert response.status_code == status
    message = response.json()["error"]
    assert needle in message and "\n" not in message


def test_a_detector_of_another_space_is_refused_at_start_up(planted_detector, tmp_path):
    from bindspace.detect import save_detector
    from bindspace.errors import BindspaceError

    folder = save_detector(planted_detector[0], tmp_path / "det")

    class Wide:
        embed_dim = 64

    with pytest.raises(BindspaceError, match="24-d space; the served model embeds in 64"):
        detector_extras(str(folder), Wide())
