"""Fixtures for the command tests: trained-model directories that are not presets, unwritable places."""
from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TINY = "imagebind_tiny_test"


@pytest.fixture()
def make_model_dir(tmp_path, tiny_state) -> Callable[..., Path]:
    """make_model_dir(name, towers=None, scale=1.0): a model directory whose config name is no preset.

    This is what `bindspace train` or `bindspace demo --out` writes: a model known only by its folder.
    `towers` keeps only those towers; `scale` changes the weights (another fingerprint).
    """
    from bindspace.config import ModelConfig
    from bindspace.model.checkpoint import key_modality, save_model_dir
    from bindspace.model.presets import get_config

    def make(name: str, towers: list[str] | None = None, scale: float = 1.0) -> Path:
        spec = get_config(TINY).to_dict()
        spec["name"] = name
        spec["towers"] = {m: t for m, t in spec["towers"].items() if towers is None or m in towers}
        config = ModelConfig.from_dict(spec)
        state = {k: v * scale if v.is_floating_point() else v for k, v in tiny_state.items()
                 if key_modality(k) is None or str(key_modality(k)) in spec["towers"]}
        return save_model_dir(state, config, tmp_path / f"{name}_{uuid.uuid4().hex[:6]}")

    return make


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    if not _mount_tmpfs(where, options):
        pytest.skip("needs permission to mount a tmpfs (a real read-only or full file system)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=20)


@pytest.fixture()
def readonly_dir(tmp_path) -> Iterator[Path]:
    """A directory on a read-only file system (EROFS for every write, even for root)."""
    if os.geteuid() != 0:  # permissions are enough for a normal user
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with _tmpfs(tmp_path / "readonly", "ro,size=1m") as folder:
        yield folder


@pytest.fixture()
def full_dir(tmp_path) -> Iterator[Path]:
    """A directory on a 64 KiB file system: larger writes fail with ENOSPC."""
    with _tmpfs(tmp_path / "full", "size=64k") as folder:
        yield folder


@pytest.fixture()
def no_model_load(monkeypatch) -> list[str]:
    """Records (and refuses) any model load: proves a check happened before the slow work."""
    import bindspace.model

    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append("create_model")
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(bindspace.model, "create_model", refuse)
    return calls
