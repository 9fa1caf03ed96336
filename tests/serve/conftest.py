"""Fixtures for the serve tests: a small in-memory index of the fixture media, embedded with the tiny model."""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("httpx", reason="httpx (the [test] extra) is not installed")

from serve_helpers import MEDIA, MemoryStore, item_id  # noqa: E402

from bindspace.index.store import Item, ModelInfo  # noqa: E402


def direct_vector(model, kind: str, path: Path) -> torch.Tensor:
    """The embedding made without the server: preprocess loader + model.encode."""
    from bindspace import preprocess

    loaders: dict[str, Callable[..., torch.Tensor]] = {
        "image": preprocess.load_image, "video": preprocess.load_video, "audio": preprocess.load_audio,
        "depth": preprocess.load_depth, "thermal": preprocess.load_thermal, "imu": preprocess.load_imu}
    loader = loaders[kind]
    tower = "vision" if kind in ("image", "video") else kind
    with torch.inference_mode():
        return model.encode(tower, loader(str(path))[None])[0]  # (D,)


@pytest.fixture(scope="session")
def small_model():
    """A model of non-default geometry (32-px images, 32-px depth/thermal maps, 400-sample IMU, 16-d space).

    Code that hard-codes 224 px or 2000 samples fails on it (the demo model, for one, has 16-px images).
    """
    import dataclasses

    from bindspace.config import ModelConfig
    from bindspace.modality import Modality
    from bindspace.model.imagebind import ImageBindModel
    from bindspace.model.presets import get_config
    from detweights import deterministic_state_dict

    tiny = get_config("imagebind_tiny_test")
    sizes = {Modality.VISION: ((32, 32), (2, 8, 8)), Modality.DEPTH: ((32, 32), (8, 8)),
             Modality.THERMAL: ((32, 32), (8, 8)), Modality.IMU: ((400,), (8,))}
    towers = {m: dataclasses.replace(cfg, input_size=sizes[m][0], patch_size=sizes[m][1]) if m in sizes else cfg
              for m, cfg in tiny.towers.items()}
    model = ImageBindModel(ModelConfig("serve_small_test", 16, towers))
    model.load_state_dict(deterministic_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}))
    return model.eval()


@pytest.fixture(scope="session")
def demo_model():
    """The demo model's geometry (16-px images, 64-d space) with seeded random weights."""
    from bindspace.model.imagebind import ImageBindModel
    from bindspace.train.demo import demo_config

    torch.manual_seed(0)
    return ImageBindModel(demo_config()).eval()


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


def build_store(served_media: Path, media_vectors: dict[str, torch.Tensor]) -> MemoryStore:
    """An in-memory index of the fixture media; audio_1.wav is indexed as its 0-2 s segment."""
    store = MemoryStore(ModelInfo("imagebind_tiny_test", "", 24))
    items = []
    for name, kind in MEDIA.items():
        path = served_media / name
        segment = (0.0, 2.0) if name == "audio_1.wav" else (None, None)
        items.append(Item(
            id=item_id(name), uri=str(path), modality=kind, content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
            size=path.stat().st_size, mtime=os.path.getmtime(path), segment_start=segment[0], segment_end=segment[1],
            model="imagebind_tiny_test", model_checksum="", vector=media_vectors[name].numpy()))
    store.add(items)
    return store


@pytest.fixture
def memory_store(served_media, media_vectors) -> MemoryStore:
    """A fresh index per test (tests may delete items)."""
    return build_store(served_media, media_vectors)


@pytest.fixture
def make_client(tiny_model):
    """make_client(store=None, model=None, api_key=None, **limits) -> a started TestClient.

    Options of create_app (read_key, index_roots, imu_layout, routers) pass through; the rest are Limits.
    """
    from fastapi.testclient import TestClient

    from bindspace.serve import Limits, create_app

    clients = []

    app_options = ("read_key", "index_roots", "imu_layout", "routers")

    def make(store=None, model=None, api_key=None, **limits):
        options = {name: limits.pop(name) for name in app_options if name in limits}
        app = create_app(model or tiny_model, store, api_key=api_key, limits=Limits(**limits), **options)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
