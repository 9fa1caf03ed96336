"""Test doubles for the serve tests: an in-memory Store (the bindspace.index.store contract) and a call-counting model."""
from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import torch

from bindspace.index.store import Hit, Item, ModelInfo

# file name -> the modality the index stores it under
MEDIA = {
    "image_1.jpg": "image",
    "image_2.png": "image",
    "image_3.png": "image",
    "audio_1.wav": "audio",
    "audio_3.wav": "audio",
    "depth_1.png": "depth",
    "thermal_1.png": "thermal",
    "imu_1.npy": "imu",
    "video_1.mp4": "video",
}


def item_id(name: str) -> str:
    """The fake index's id of a fixture file."""
    return hashlib.sha1(name.encode()).hexdigest()[:16]


class FakeStore:
    """Exact cosine search over a dict; enough of the Store contract for the API."""

    def __init__(self, info: ModelInfo | None = None) -> None:
        self.info = info
        self.items: dict[str, Item] = {}
        self.lock = threading.Lock()

    def model_info(self) -> ModelInfo | None:
        return self.info

    def add(self, items) -> None:
        with self.lock:
            for item in items:
                self.items[item.id] = item

    def delete(self, ids) -> int:
        with self.lock:
            return sum(self.items.pop(i, None) is not None for i in ids)

    def get(self, item_id):
        return self.items.get(item_id)

    def count(self, modality=None) -> int:
        return sum(modality is None or it.modality == modality for it in self.items.values())

    def search(self, vector, k=10, *, modality=None, where=None):
        vector = np.asarray(vector, dtype=np.float32)
        pool = [it for it in self.items.values() if modality is None or it.modality == modality]
        scored = [Hit(it, float(np.dot(it.vector, vector))) for it in pool]
        scored.sort(key=lambda h: -h.score)
        return scored[:k]


class CountingModel:
    """Wraps a model and counts `encode` calls and the batch size of each."""

    def __init__(self, model, delay_s: float = 0.0) -> None:
        self.model = model
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.batch_sizes)

    def encode(self, modality, x: torch.Tensor, **kwargs) -> torch.Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        if self.delay_s:
            time.sleep(self.delay_s)  # makes batches fill up deterministically on slow CI machines
        return self.model.encode(modality, x, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)
