"""`bindspace index --ray --dtype int8`: the int8 towers reach the Ray workers (tiny preset, imu tower)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bindspace.errors import BindspaceError
from bindspace.index.ray_indexer import EmbedActor, ModelSpec, _our_error, check_fingerprint

TINY = "imagebind_tiny_test"


def test_an_int8_spec_without_its_builder_is_refused_not_cast_to_torch_int8():
    spec = ModelSpec(name=TINY, checkpoint="unused", dtype="int8")
    with pytest.raises(BindspaceError, match="int8 on Ray needs ModelSpec.build"):
        EmbedActor(spec, None)


def test_a_worker_making_other_vectors_than_the_index_is_refused_in_one_line():
    spec = ModelSpec(name=TINY, checkpoint="x", dtype="int8", fingerprint="int8-aaa")
    check_fingerprint(spec, "int8-aaa")  # the same recipe: fine
    check_fingerprint(ModelSpec(name=TINY, checkpoint="x"), "anything")  # nothing expected: nothing checked
    with pytest.raises(BindspaceError) as err:
        check_fingerprint(spec, "int8-bbb")
    assert "int8-bbb" in str(err.value) and "int8-aaa" in str(err.value) and "CPU kind" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_worker_of_another_cpu_kind_is_refused_before_it_quantizes_anything(tiny_model_dir, monkeypatch):
    """The int8 fingerprint names the recipe of the worker's CPU kind: known before any export or quantization."""
    import bindspace.model
    from bindspace.cli.common import int8_weights_fingerprint
    from bindspace.cli.index import int8_model

    def no_build(*args, **kwargs):
        raise AssertionError("the worker built its int8 towers before checking its CPU kind")

    monkeypatch.setattr(bindspace.model, "create_model", no_build)
    here = int8_weights_fingerprint(str(tiny_model_dir))
    spec = ModelSpec(name=TINY, checkpoint=str(tiny_model_dir), dtype="int8", fingerprint=here + "-other-kind")
    with pytest.raises(BindspaceError, match="CPU kind"):
        int8_model(spec, "cpu")
    with pytest.raises(AssertionError, match="built its int8 towers"):  # the same kind goes on to build
        int8_model(ModelSpec(name=TINY, checkpoint=str(tiny_model_dir), dtype="int8", fingerprint=here), "cpu")


def test_the_workers_error_is_found_inside_rays_wrapping():
    ours = BindspaceError("the Ray worker on n1 makes vectors of model int8-b, the index holds int8-a")

    class Wrapped(RuntimeError, BindspaceError):  # Ray's as_instanceof_cause: both classes, traceback text
        def __init__(self, cause):
            super().__init__("Traceback (most recent call last):\n ...")
            self.cause = cause

    try:
        try:
            raise Wrapped(ours)
        except Wrapped as inner:
            raise RuntimeError("Ray Data: the actor pool failed") from inner
    except RuntimeError as outer:
        assert _our_error(outer) is ours
    assert _our_error(RuntimeError("unrelated")) is None


@pytest.mark.slow  # starts a local Ray and quantizes the tiny imu tower in a worker (3 min at load 15 on 2 cores)
def test_cli_index_ray_dtype_int8_embeds_with_the_int8_towers_in_the_workers(tmp_path, media, tiny_model_dir):
    pytest.importorskip("ray.data")
    pytest.importorskip("onnxruntime")
    import bindspace
    from bindspace.embedding import Embedder
    from bindspace.index import open_store

    files = [media.imu(f"walk_imu_{i}.npy", seed=i) for i in range(3)]
    cache = tmp_path / "cache"
    env = {**os.environ, "BINDSPACE_CACHE": str(cache)}
    db = tmp_path / "db"
    done = subprocess.run(
        [sys.executable, "-m", "bindspace.cli", "index", str(media.root), "--db", str(db), "--ray", "",
         "--model", TINY, "--checkpoint", str(tiny_model_dir), "--dtype", "int8", "--modalities", "imu",
         "--workers", "1", "--no-progress", "--ann", "no"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # The worker built the int8 imu tower into the cache (a float32 worker would build nothing).
    assert [p.name for p in cache.glob("int8/*/imu")] == ["imu"]

    os.environ["BINDSPACE_CACHE"] = str(cache)  # the same cache entry here: no second build
    try:
        local = bindspace.create_model(checkpoint=str(tiny_model_dir), modalities=["imu"], dtype="int8")
    finally:
        del os.environ["BINDSPACE_CACHE"]
    store = open_store(db)
    info = store.model_info()
    assert info is not None and info.checksum == local.fingerprint and info.checksum.startswith("int8-")
    want = Embedder(local, progress=False).embed("imu", [str(f) for f in files]).vectors
    fp32 = bindspace.create_model(TINY, checkpoint=str(tiny_model_dir), modalities=["imu"])
    float_vectors = Embedder(fp32, progress=False).embed("imu", [str(f) for f in files]).vectors
    by_uri = store.items_by_uri()
    assert len(by_uri) == 3
    for f, mine, theirs in zip(files, want, float_vectors):
        [item] = by_uri[str(f)]
        row = store.get(item.id)
        assert row is not None
        got = np.asarray(row.vector, dtype=np.float32)
        np.testing.assert_allclose(got, mine, atol=1e-6, rtol=0)  # the worker's int8 vectors
        assert np.abs(got - theirs).max() > 1e-4  # not the float32 ones
