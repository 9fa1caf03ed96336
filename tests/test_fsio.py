"""bindspace.fsio: atomic writes keep the old file on failure, leave no temp files, and follow the umask."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bindspace.fsio import atomic_open, atomic_path, atomic_write


@pytest.fixture
def umask_027() -> Iterator[int]:
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_bytes_text_and_callable(tmp_path: Path) -> None:
    assert atomic_write(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "b.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    atomic_write(tmp_path / "c.npy", lambda tmp: np.save(tmp, np.arange(3)))
    assert np.load(tmp_path / "c.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.npy"]


def test_permissions_follow_umask(tmp_path: Path, umask_027: int) -> None:
    # mkstemp creates 0600 files; the result must look like a plain open() under the umask
    assert _mode(atomic_write(tmp_path / "a", b"x")) == 0o640
    with atomic_open(tmp_path / "b", "w") as handle:
        handle.write("x")
    assert _mode(tmp_path / "b") == 0o640
    os.umask(0o002)
    assert _mode(atomic_write(tmp_path / "c", b"x")) == 0o664


@pytest.mark.parametrize("how", ["write", "open", "path"])
def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path, how: str) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        if how == "write":
            atomic_write(target, boom)
        elif how == "open":
            with atomic_open(target, "w") as handle:
                handle.write("half")
                raise RuntimeError("disk full")
        else:
            with atomic_path(target) as tmp:
                boom(tmp)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_model_dir_files_follow_umask(tmp_path: Path, umask_027: int, tiny_state: dict[str, torch.Tensor]) -> None:
    """Issue 16: safetensors files in model directories were written 0600."""
    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.presets import get_config

    out = save_model_dir({k: v for k, v in tiny_state.items() if ".imu." in k}, get_config("imagebind_tiny_test"),
                         tmp_path / "m")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["imu.safetensors", "manifest.json"]
    assert {_mode(out / n) for n in names} == {0o640}


def test_embedding_writers_follow_umask_and_keep_old_file(tmp_path: Path, umask_027: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from bindspace.embedding import output

    table = output.EmbeddingTable(np.eye(2, dtype=np.float32), names=["a", "b"], indices=[0, 1])
    for suffix in (".npy", ".jsonl"):
        assert _mode(output.write_embeddings(tmp_path / f"e{suffix}", table)) == 0o640
    before = (tmp_path / "e.npy").read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", fail)
    with pytest.raises(OSError, match="No space"):
        output.write_embeddings(tmp_path / "e.npy", output.EmbeddingTable(np.zeros((3, 2), np.float32)))
    assert (tmp_path / "e.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl", "e.npy"]


def test_publish_dir_replaces_only_an_empty_placeholder(tmp_path):
    from bindspace.fsio import publish_dir

    work = tmp_path / ".out.partial"
    work.mkdir()
    (work / "a.onnx").write_bytes(b"graph")
    (tmp_path / "out").mkdir()  # an empty placeholder, e.g. made by the output check
    assert publish_dir(work, tmp_path / "out") == tmp_path / "out"
    assert (tmp_path / "out" / "a.onnx").read_bytes() == b"graph" and not work.exists()

    again = tmp_path / ".again.partial"
    again.mkdir()
    with pytest.raises(OSError):  # a folder that holds files is never replaced
        publish_dir(again, tmp_path / "out")
    assert (tmp_path / "out" / "a.onnx").exists()


def test_publish_dir_with_replace_swaps_an_older_folder_whole(tmp_path):
    from bindspace.fsio import publish_dir

    out = tmp_path / "bridge"
    out.mkdir()
    (out / "old.json").write_text("old")
    work = tmp_path / ".bridge.partial"
    work.mkdir()
    (work / "new.json").write_text("new")
    publish_dir(work, out, replace=True)
    assert [p.name for p in out.iterdir()] == ["new.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge"]  # no work or moved-aside folder left


def test_work_dir_is_removed_when_the_build_fails_and_gone_once_published(tmp_path):
    from bindspace.fsio import publish_dir, work_dir

    with pytest.raises(RuntimeError), work_dir(tmp_path / "out") as work:
        (work / "half.onnx").write_bytes(b"x")
        raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []
    with work_dir(tmp_path / "out") as work:
        (work / "a.onnx").write_bytes(b"graph")
        publish_dir(work, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
