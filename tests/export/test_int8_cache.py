"""--dtype int8 / create_model(dtype="int8"): first build, reuse, corrupt entry rebuilt, two processes at once."""
from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow  # exports and quantizes the tiny imu tower (about 10-20 s each build here)

TINY = "imagebind_tiny_test"


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "int8").glob("*/imu") if p.is_dir())


def test_first_use_builds_then_reuses_then_rebuilds_a_corrupt_entry(tmp_path, monkeypatch, tiny_model_dir, goldens,
                                                                     capsys):
    import bindspace
    import bindspace.export.onnx_export as onnx_export

    monkeypatch.setenv("BINDSPACE_CACHE", str(tmp_path / "cache"))
    builds = []
    real_export = onnx_export.export_onnx

    def counted_export(*args, **kwargs):
        builds.append(1)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_onnx", counted_export)

    model: Any = bindspace.create_model(checkpoint=tiny_model_dir, modalities=["imu"], dtype="int8")
    assert len(builds) == 1
    err = capsys.readouterr().err
    assert "int8 imu tower built in" in err and "MiB" in err
    [entry] = _entries(tmp_path / "cache")
    graph = entry / "imu.onnx.data"
    stamp = graph.stat().st_mtime_ns
    cos = (model.encode("imu", goldens["imu.input"]) * torch.nn.functional.normalize(goldens["imu.embedding"], dim=-1))
    assert cos.sum(-1).min() >= 0.99
    assert model.fingerprint.startswith("int8-")

    again: Any = bindspace.create_model(checkpoint=tiny_model_dir, modalities=["imu"], dtype="int8")
    assert len(builds) == 1 and graph.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert again.fingerprint == model.fingerprint
    reference = model.encode("imu", goldens["imu.input"])
    assert torch.equal(again.encode("imu", goldens["imu.input"]), reference)
    del model, again  # their sessions map the weights file, which the next step truncates in place
    gc.collect()

    graph.write_bytes(graph.read_bytes()[:100])  # a truncated weights file: never used
    rebuilt: Any = bindspace.create_model(checkpoint=tiny_model_dir, modalities=["imu"], dtype="int8")
    assert len(builds) == 2 and graph.stat().st_size > 100
    assert torch.equal(rebuilt.encode("imu", goldens["imu.input"]), reference)  # the same build again
    del rebuilt
    gc.collect()
    (entry / "manifest.json").write_text("{")  # a partial manifest
    bindspace.create_model(checkpoint=tiny_model_dir, modalities=["imu"], dtype="int8")
    assert len(builds) == 3 and _entries(tmp_path / "cache") == [entry]
    assert not [p for p in entry.parent.iterdir() if ".build-" in p.name or ".corrupt-" in p.name]


def test_the_cache_honours_xdg_and_the_key_covers_weights_and_recipe(tmp_path, monkeypatch):
    from bindspace.export.int8_cache import cache_key, int8_root
    from bindspace.model.int8_recipe import forced_recipe

    monkeypatch.delenv("BINDSPACE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert int8_root() == tmp_path / "xdg" / "bindspace" / "int8"
    monkeypatch.setenv("BINDSPACE_CACHE", str(tmp_path / "mine"))
    assert int8_root() == tmp_path / "mine" / "int8"
    avx2, amx = forced_recipe("avx2"), forced_recipe("amx")
    assert cache_key("w1-a", avx2) == cache_key("w1-a", avx2)
    assert len({cache_key("w1-a", avx2), cache_key("w1-b", avx2), cache_key("w1-a", amx)}) == 3


def test_int8_refuses_random_weights_and_exported_dirs(tmp_path):
    import bindspace
    from bindspace.errors import BindspaceError

    with pytest.raises(BindspaceError, match="quantizes real weights"):
        bindspace.create_model(TINY, modalities=["imu"], dtype="int8")


def _build_in_a_process(cache: str, checkpoint: str, src: str, out: multiprocessing.Queue) -> None:
    os.environ["BINDSPACE_CACHE"] = cache
    sys.path.insert(0, src)
    import torch

    torch.set_num_threads(1)
    import bindspace

    model = bindspace.create_model(checkpoint=checkpoint, modalities=["imu"], dtype="int8")
    out.put(str(model.path))


def test_two_processes_at_once_end_with_one_valid_entry(tmp_path, tiny_model_dir):
    import bindspace
    from bindspace.export.int8_cache import valid_entry
    from bindspace.modality import Modality

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    src = str(Path(bindspace.__file__).parents[1])
    jobs = [context.Process(target=_build_in_a_process, args=(str(tmp_path / "c"), str(tiny_model_dir), src, queue))
            for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=600)
    assert [job.exitcode for job in jobs] == [0, 0]
    paths = {queue.get(timeout=5) for _ in jobs}
    [entry] = _entries(tmp_path / "c")
    assert paths == {str(entry)} and valid_entry(entry, Modality.IMU)
    assert not [p for p in entry.parent.iterdir() if ".build-" in p.name or ".partial-" in p.name]


def test_embed_command_with_dtype_int8(tmp_path, monkeypatch, tiny_model_dir, media_dir):
    import numpy as np

    from bindspace.cli import main

    monkeypatch.setenv("BINDSPACE_CACHE", str(tmp_path / "cache"))
    imu = sorted(p for p in media_dir.iterdir() if p.suffix == ".npy")
    if not imu:
        pytest.skip("no imu fixture file")
    out = tmp_path / "v.npy"
    assert main(["embed", "--modality", "imu", "--checkpoint", str(tiny_model_dir), "--dtype", "int8",
                 "-o", str(out), str(imu[0])]) == 0
    vectors = np.load(out)
    assert vectors.shape[0] == 1 and abs(float(np.linalg.norm(vectors[0])) - 1) < 1e-4
