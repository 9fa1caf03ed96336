"""Fixtures for the serve tests: a small in-memory index of the fixture media, embedded with the tiny model."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("httpx", reason="httpx (the [test] extra) is not installed")

from serve_helpers import MEDIA, FakeStore, item_id  # noqa: E402

from bindspace.index.store import Item, ModelInfo  # noqa: E402


def direct_vector(model, kind: str, path: Path) -> torch.Tensor:
    """The embedding made without the server: preprocess loader + model.encode."""
    from bindspace import preprocess

    loader = {"image": preprocess.load_image, "video": preprocess.load_video, "audio": preprocess.load_audio,
              "depth": preprocess.load_depth, "thermal": preprocess.load_thermal, "imu": preprocess.load_imu}[kind]
    tower = "vision" if kind in ("image", "video") else kind
    with torch.inference_mode():
        return model.encode(tower, loader(str(path))[None])[0]  # (D,)


@pytest.fixture(scope="session")
def served_media(tmp_path_factory, media_dir) -> Path:
    """A copy of the fixture media (tests may delete files in their own copies, never in this one)."""
    out = tmp_path_factory.mktemp("served_media")
    for name in MEDIA:
        shutil.copy(media_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def media_vectors(tiny_model, served_media) -> dict[str, torch.Tensor]:
    """File name -> its direct embedding."""
    return {name: direct_vector(tiny_model, kind, served_media / name) for name, kind in MEDIA.items()}


def build_store(served_media: Path, media_vectors: dict[str, torch.Tensor]) -> FakeStore:
    """An in-memory index of the fixture media; audio_1.wav is indexed as its 0-2 s segment."""
    store = FakeStore(ModelInfo("imagebind_tiny_test", None, 24))
    items = []
    for name, kind in MEDIA.items():
        path = served_media / name
        segment = (0.0, 2.0) if name == "audio_1.wav" else (None, None)
        items.append(Item(
            id=item_id(name), uri=str(path), modality=kind, content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
            size=path.stat().st_size, mtime=os.path.getmtime(path), segment_start=segment[0], segment_end=segment[1],
            model="imagebind_tiny_test", model_checksum=None, vector=media_vectors[name].numpy()))
    store.add(items)
    return store


@pytest.fixture
def fake_store(served_media, media_vectors) -> FakeStore:
    """A fresh index per test (tests may delete items)."""
    return build_store(served_media, media_vectors)


@pytest.fixture
def make_client(tiny_model):
    """make_client(store=None, model=None, api_key=None, **limits) -> a started TestClient."""
    from fastapi.testclient import TestClient

    from bindspace.serve import Limits, create_app

    clients = []

    def make(store=None, model=None, api_key=None, **limits):
        app = create_app(model or tiny_model, store, api_key=api_key, limits=Limits(**limits))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
