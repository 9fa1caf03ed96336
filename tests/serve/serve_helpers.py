"""Test doubles for the serve tests: an in-memory `Store`, call-recording models, and a live uvicorn server."""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from bindspace.index.store import Hit, Item, ModelInfo, Store, modality_values, unit_query

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
    """The memory index's id of a fixture file."""
    return hashlib.sha1(name.encode()).hexdigest()[:16]


class MemoryStore(Store):
    """Exact cosine search over a dict; the modality filter and query checks are the real store's helpers."""

    def __init__(self, info: ModelInfo | None = None) -> None:
        self.info = info
        self.items: dict[str, Item] = {}
        self.lock = threading.Lock()

    def model_info(self) -> ModelInfo | None:
        return self.info

    def bind_model(self, info: ModelInfo) -> None:
        self.info = self.info or info

    def add(self, items: Sequence[Item]) -> None:
        with self.lock:
            for item in items:
                self.items[item.id] = item

    def delete(self, ids: Sequence[str]) -> int:
        with self.lock:
            return sum(self.items.pop(i, None) is not None for i in ids)

    def delete_uri(self, uri: str) -> int:
        return self.delete([i for i, item in self.items.items() if item.uri == uri])

    def get(self, id: str) -> Item | None:
        return self.items.get(id)

    def count(self, modality: str | None = None) -> int:
        wanted = modality_values(modality) if modality else None
        return sum(wanted is None or it.modality in wanted for it in self.items.values())

    def search(self, vector: np.ndarray, k: int = 10, *, modality: str | None = None,
               where: str | None = None) -> list[Hit]:
        query = unit_query(vector, self.info.embed_dim if self.info else None)
        wanted = modality_values(modality) if modality else None
        pool = [it for it in self.items.values() if wanted is None or it.modality in wanted]
        scored = [Hit(it, float(np.dot(np.asarray(it.vector), query))) for it in pool]
        scored.sort(key=lambda h: -h.score)
        return scored[:k]

    def items_by_uri(self) -> dict[str, list[Item]]:
        out: dict[str, list[Item]] = {}
        for item in self.items.values():
            out.setdefault(item.uri, []).append(item)
        return out

    def create_ann_index(self, **options: object) -> None:
        """Exact search only."""


class CountingModel:
    """Wraps a model: records each model call's (tower, batch size, thread); an optional gate holds calls back.

    With `gate` set (a threading.Event), every call waits for it: tests open it once the
    requests they want batched together are all queued, so batch sizes never depend on timing.
    """

    def __init__(self, model: Any, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.model = model
        self.delay_s = delay_s
        self.gate = gate
        self.calls: list[tuple[str, int, str]] = []

    def batch_sizes(self, tower: str = "text") -> list[int]:
        """Batch sizes of the calls to one tower, in order."""
        return [size for name, size, _ in self.calls if name == tower]

    def reset(self) -> None:
        self.calls.clear()

    def _record(self, tower: str, x: torch.Tensor) -> None:
        self.calls.append((str(tower), int(x.shape[0]), threading.current_thread().name))
        if self.gate is not None:
            assert self.gate.wait(60), "test gate never opened"
        if self.delay_s:
            time.sleep(self.delay_s)

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for tower, x in inputs.items():
            self._record(tower, x)
        return self.model(inputs)

    def encode(self, modality: Any, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self._record(str(modality), x)
        return self.model.encode(modality, x, **kwargs)

    def eval(self) -> CountingModel:
        self.model.eval()
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def chromium_or_skip() -> str:
    """Debian's chromium for the browser tests (Playwright cannot download one here); skips the module without it."""
    path = os.environ.get("BINDSPACE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip(f"no Chromium at {path} (apt-get install -y chromium, or set BINDSPACE_CHROMIUM)",
                    allow_module_level=True)
    return path


@contextmanager
def chromium_browser(path: str) -> Iterator[Any]:
    """A headless Chromium launched by Playwright; skips the test when this install cannot start."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=path, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        except Exception as err:  # a broken or incompatible browser install is an environment problem
            pytest.skip(f"cannot launch Chromium at {path}: {str(err).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
