"""Fixtures for the index tests: small media written into tmp_path, an embedder on the tiny model, stores."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

pytest.importorskip("lancedb")


class Media:
    """Writes small media files of every modality under a root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rng = np.random.default_rng(0)

    def path(self, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def image(self, name: str, seed: int = 0, size: tuple[int, int] = (64, 48)) -> Path:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        path = self.path(name)
        Image.fromarray(pixels).save(path)
        return path

    def gray(self, name: str, seed: int = 0, bits: int = 8) -> Path:
        rng = np.random.default_rng(seed)
        if bits == 16:
            pixels = rng.integers(500, 5000, (48, 64), dtype=np.uint16)  # millimetres
            image = Image.fromarray(pixels)
        else:
            image = Image.fromarray(rng.integers(0, 255, (48, 64), dtype=np.uint8))
        path = self.path(name)
        image.save(path)
        return path

    def audio(self, name: str, seconds: float = 1.5, seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        path = self.path(name)
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        return path

    def imu(self, name: str, seed: int = 0, transpose: bool = False) -> Path:
        data = np.random.default_rng(seed).standard_normal((6, 2000)).astype(np.float32)
        path = self.path(name)
        np.save(path, data.T if transpose else data)
        return path

    def raw(self, name: str, data: bytes) -> Path:
        path = self.path(name)
        path.write_bytes(data)
        return path

    def bump_mtime(self, path: Path, seconds: float = 10.0) -> None:
        """Give a file a different mtime without changing its bytes."""
        st = os.stat(path)
        os.utime(path, (st.st_atime, st.st_mtime + seconds))


@pytest.fixture()
def media(tmp_path) -> Media:
    return Media(tmp_path / "media")


@pytest.fixture()
def embedder(tiny_model):
    from bindspace.embedding import Embedder

    return Embedder(tiny_model, batch_size=4, progress=False)


@pytest.fixture()
def store(tmp_path):
    from bindspace.index import open_store

    return open_store(tmp_path / "db", create=True)
