"""Indexing through Ray Data on a local 2-CPU Ray instance gives the same table as a local run."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("ray.data")

from bindspace.index import open_store  # noqa: E402
from bindspace.index.indexer import index_paths  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_index_matches_local(ray_local, tmp_path, media, media_dir, embedder, tiny_model):
    from bindspace.index.indexer import model_info_for
    from bindspace.index.ray_indexer import RayRunner, spec_for_model

    for i in range(5):
        media.image(f"img{i}.png", seed=i)
    media.audio("a.wav", seconds=5.0)
    shutil.copy(media_dir / "depth_1.png", media.path("depth_1.png"))
    media.raw("broken.jpg", b"\xff\xd8\xff\xe0 nope")

    local = open_store(tmp_path / "local", create=True)
    index_paths([media.root], local, embedder, segment_seconds=2.0)

    distributed = open_store(tmp_path / "ray", create=True)
    runner = RayRunner(spec_for_model(tiny_model, batch_size=4), workers=2, batch_files=3)
    summary = index_paths([media.root], distributed, None, runner=runner, model_info=model_info_for(tiny_model),
                          segment_seconds=2.0)
    assert (summary.added, summary.updated, summary.removed) == (7, 0, 0)
    assert [os.path.basename(p) for p, _ in summary.skipped] == ["broken.jpg"]
    assert distributed.model_info() == local.model_info()

    want = {i.id: i for items in local.items_by_uri().values() for i in items}
    got = {i.id: i for items in distributed.items_by_uri().values() for i in items}
    assert sorted(got) == sorted(want) and len(got) == distributed.count() == 9  # 5 images, 3 segments, depth
    for rid in want:
        mine, theirs = distributed.get(rid), local.get(rid)
        assert mine is not None and theirs is not None
        np.testing.assert_allclose(np.asarray(mine.vector), np.asarray(theirs.vector), atol=1e-5)

    # a rerun through Ray embeds nothing
    again = index_paths([media.root], distributed, None, runner=runner, model_info=model_info_for(tiny_model),
                        segment_seconds=2.0)
    assert again.unchanged == 7 and again.added == 0
