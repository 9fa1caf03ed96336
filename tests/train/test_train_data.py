"""Pair manifests, the pair dataset with augmentations, batch order across processes, tar shards."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from bindspace.errors import BindspaceError, InputError
from bindspace.modality import Modality
from bindspace.train import augment as aug
from bindspace.train.config import AugmentConfig
from bindspace.train.data import EpochBatchSampler, ManifestSource, PairDataset, collate_pairs, read_manifest
from bindspace.train.items import ItemLoader
from bindspace.train.shards import ShardSource, expand_shards, index_shard

from .conftest import small_config

V, A = Modality.VISION, Modality.AUDIO


def loaders(augment: bool = True) -> tuple[ItemLoader, ItemLoader]:
    cfg = small_config()
    aug_cfg = AugmentConfig() if augment else None
    return ItemLoader(V, cfg.towers[V], aug_cfg), ItemLoader(A, cfg.towers[A], aug_cfg)


def test_jsonl_and_csv_manifests_resolve_paths(pair_files):
    jsonl = read_manifest(pair_files / "train.jsonl", V, A)
    csv = read_manifest(pair_files / "train.csv", V, A)
    assert [(r.anchor, r.target) for r in jsonl] == [(r.anchor, r.target) for r in csv]
    assert jsonl[0].anchor == str(pair_files / "img0.png") and jsonl[3].target == str(pair_files / "snd3.wav")
    assert jsonl[2].where == f"{pair_files / 'train.jsonl'}:3"
    rooted = read_manifest(pair_files / "train.jsonl", V, A, root="/data")
    assert rooted[0].anchor == "/data/img0.png"


def test_manifest_problems_are_one_line_errors_naming_the_place(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"image": "a.png", "audio": "a.wav"}\n{oops\n')
    with pytest.raises(InputError, match=r"m.jsonl:2: not valid JSON"):
        read_manifest(bad, V, A)
    bad.write_text('{"image": "a.png", "sound": "a.wav"}\n')
    with pytest.raises(InputError, match=r"no column for audio .*columns: image, sound"):
        read_manifest(bad, V, A)
    bad.write_text('{"image": "a.png", "audio": ""}\n')
    with pytest.raises(InputError, match=r"m.jsonl:1: missing value for 'audio'"):
        read_manifest(bad, V, A)
    bad.write_text('{"image": "a.png", "audio": "a.wav", "start": "soon"}\n')
    with pytest.raises(InputError, match="start must be a number"):
        read_manifest(bad, V, A)
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl", V, A)
    custom = tmp_path / "c.csv"
    custom.write_text("frame,sound\nx.png,x.wav\n")
    rows = read_manifest(custom, V, A, anchor_field="frame", target_field="sound")
    assert rows[0].target == str(tmp_path / "x.wav")


def test_dataset_shapes_follow_the_tower_config_and_augmentation_is_reproducible(pair_files):
    anchor, target = loaders()
    ds = PairDataset(read_manifest(pair_files / "train.jsonl", V, A), anchor, target, seed=3)
    a, t = ds[(0, 1)]
    assert a.shape == (3, 16, 16) and t.shape == (1, 128, 204)
    a2, t2 = ds[(0, 1)]
    assert torch.equal(a, a2) and torch.equal(t, t2)  # same (seed, epoch, index): same augmentation
    a3, _ = ds[(1, 1)]
    assert not torch.equal(a, a3)  # another epoch: another crop
    plain = PairDataset(ds.records, *loaders(augment=False))
    p1, q1 = plain[(0, 1)]
    p2, q2 = plain[(5, 1)]
    assert torch.equal(p1, p2) and torch.equal(q1, q2)


def test_eval_audio_equals_the_standard_loader(tmp_path):
    import numpy as np
    import soundfile as sf

    from bindspace.preprocess.audio import load_audio

    t = np.arange(32000) / 16000  # exactly one 2 s clip: every standard clip is this one
    sf.write(tmp_path / "tone.wav", (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    _, target = loaders(augment=False)
    assert torch.allclose(target(str(tmp_path / "tone.wav")), load_audio(str(tmp_path / "tone.wav"))[0], atol=1e-5)


def test_bad_samples_are_skipped_or_raised(pair_files, tmp_path):
    records = read_manifest(pair_files / "train.jsonl", V, A)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    from dataclasses import replace

    records[0] = replace(records[0], anchor=str(tmp_path / "broken.png"))
    anchor, target = loaders()
    skipping = PairDataset(records, anchor, target, seed=0)
    a, _ = skipping[(0, 0)]  # replaced by record 1
    assert torch.equal(a, skipping.load(1, 0)[0])
    raising = PairDataset(records, anchor, target, on_error="raise")
    with pytest.raises(InputError, match="broken.png"):
        raising[(0, 0)]


def test_batch_order_splits_global_batches_by_rank_and_resumes():
    single = EpochBatchSampler(20, 4, seed=1)
    single.set_position(2, 0)
    combined = list(single)
    ranks = []
    for rank in range(2):
        s = EpochBatchSampler(20, 2, rank=rank, world=2, seed=1)
        s.set_position(2, 0)
        ranks.append(list(s))
    assert [r0 + r1 for r0, r1 in zip(*ranks)] == combined  # rank-major = the gathered order
    assert len(combined) == 5 and all(epoch == 2 for batch in combined for epoch, _ in batch)
    single.set_position(2, 3)
    assert list(single) == combined[3:]
    single.set_position(3, 0)
    assert list(single) != combined


def test_manifest_source_with_workers_gives_the_same_batches(pair_files):
    anchor, target = loaders()
    ds = PairDataset(read_manifest(pair_files / "train.jsonl", V, A), anchor, target, seed=0)
    in_process = list(ManifestSource(ds, batch_size=4, seed=2).batches(1, 1))
    workers = list(ManifestSource(ds, batch_size=4, seed=2, num_workers=2).batches(1, 1))
    assert len(in_process) == 2
    for x, y in zip(in_process, workers):
        assert torch.equal(x.anchor, y.anchor) and torch.equal(x.target, y.target)
    with pytest.raises(BindspaceError, match="fewer than one global batch"):
        ManifestSource(ds, batch_size=8, world=2)


def test_collate_reports_mixed_shapes():
    with pytest.raises(BindspaceError, match="different shapes"):
        collate_pairs([(torch.zeros(3, 16, 16), torch.zeros(2)), (torch.zeros(3, 2, 16, 16), torch.zeros(2))])


def write_shard(path: Path, pairs: list[tuple[str, Path, Path]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, image, audio in pairs:
            for ext, source in (("png", image), ("wav", audio)):
                tar.add(source, arcname=f"{key}.{ext}")
            meta = json.dumps({"start": 0.0, "end": 2.5}).encode()
            info = tarfile.TarInfo(f"{key}.json")
            info.size = len(meta)
            tar.addfile(info, io.BytesIO(meta))


@pytest.fixture()
def shards(pair_files, tmp_path) -> list[str]:
    out = []
    for s in range(2):
        path = tmp_path / f"shard-{s:02d}.tar"
        write_shard(path, [(f"s{s}_{i:03d}", pair_files / f"img{j}.png", pair_files / f"snd{j}.wav")
                           for i, j in enumerate(range(s * 6, s * 6 + 6))])
        out.append(str(path))
    return out


def test_shards_index_and_expand(shards, tmp_path):
    samples = list(index_shard(shards[0]))
    assert [s.key for s in samples] == [f"s0_{i:03d}" for i in range(6)]
    assert set(samples[0].members) == {"png", "wav", "json"}
    assert expand_shards([str(tmp_path / "shard-{00..01}.tar")]) == shards
    assert expand_shards([str(tmp_path / "shard-*.tar")]) == shards
    with pytest.raises(InputError, match="no shard matches"):
        expand_shards([str(tmp_path / "none-*.tar")])
    (tmp_path / "bad.tar").write_bytes(b"garbage" * 100)
    with pytest.raises(InputError, match="not an uncompressed tar"):
        list(index_shard(str(tmp_path / "bad.tar")))


def test_shard_stream_is_endless_and_resumes_exactly(shards):
    anchor, target = loaders()

    def source(workers: int) -> ShardSource:
        return ShardSource(shards, anchor, target, batch_size=3, seed=4, num_workers=workers, shuffle_buffer=4)

    stream = source(0).batches(0, 0)
    first = [next(stream) for _ in range(6)]  # 18 samples from 12: the stream wraps around
    assert all(b.anchor.shape == (3, 3, 16, 16) and b.target.shape == (3, 1, 128, 204) for b in first)
    resumed = source(0).batches(0, 4)
    for expected in first[4:]:
        got = next(resumed)
        assert torch.equal(got.anchor, expected.anchor) and torch.equal(got.target, expected.target)
    # Two loader workers (one shard each): resuming after 3 batches continues the same sequence.
    two = source(2).batches(0, 0)
    sequence = [next(two) for _ in range(5)]
    again = source(2).batches(0, 3)
    for expected in sequence[3:]:
        assert torch.equal(next(again).target, expected.target)


def test_augmentations_are_plain_torch_and_keep_shapes():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(3 * 20 * 30, dtype=torch.float32).view(3, 20, 30)
    crop = aug.random_resized_crop(x, (16, 16), gen, scale=(0.3, 0.6))
    assert crop.shape == (3, 16, 16)
    clip = aug.random_resized_crop(torch.rand(3, 2, 20, 30), (8, 8), gen)
    assert clip.shape == (3, 2, 8, 8)
    assert torch.equal(aug.random_hflip(x, torch.Generator().manual_seed(1), p=1.0), x.flip(-1))
    spec = torch.ones(1, 128, 204)
    masked = aug.spec_mask(spec, gen, freq=20, time=30, frames=100)
    zero_cols = (masked[0] == 0).all(dim=0).nonzero().flatten()
    assert zero_cols.numel() <= 30 and (zero_cols < 100).all()
    imu = torch.randn(6, 2000)
    jittered = aug.imu_jitter(imu, gen, noise=0.0, scale=0.1)
    ratio = (jittered / imu).mean(dim=1)
    assert ((ratio > 0.89) & (ratio < 1.11)).all()
    g1, g2 = aug.sample_generator(5, 1, 2), aug.sample_generator(5, 1, 2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    assert not torch.equal(torch.rand(3, generator=aug.sample_generator(5, 1, 3)),
                           torch.rand(3, generator=aug.sample_generator(5, 2, 2)))


def test_loaders_for_video_depth_thermal_imu_and_text(media_dir):
    from bindspace.config import TowerConfig
    from bindspace.train.items import Window

    cfg = AugmentConfig()
    gen = torch.Generator().manual_seed(0)
    video = ItemLoader(V, small_config().towers[V], cfg)
    clip = video(str(media_dir / "video_1.mp4"), window=Window(0.5, 3.0), phase=0.3, gen=gen)
    assert clip.shape == (3, 2, 16, 16)  # a 2-frame clip, as the vision tower's video path expects
    small = TowerConfig(16, 1, 2, (32, 32), (16, 16), add_bias_kv=True, logit_scale=5.0)
    for modality, name in ((Modality.DEPTH, "depth_1.png"), (Modality.THERMAL, "thermal_1.png")):
        x = ItemLoader(modality, small, cfg)(str(media_dir / name), gen=gen)
        assert x.shape == (1, 32, 32) and torch.isfinite(x).all()
    imu_tower = TowerConfig(16, 1, 2, (2000,), (8,), in_channels=6, add_bias_kv=True, logit_scale=5.0)
    imu = ItemLoader(Modality.IMU, imu_tower, cfg)(str(media_dir / "imu_1.npy"), gen=gen)
    assert imu.shape == (6, 2000)
    text = ItemLoader(Modality.TEXT, small_config().towers[Modality.TEXT], cfg)("a dog barking")
    assert text.shape == (77,) and text[0] == 49406
    with pytest.raises(InputError, match="empty text"):
        ItemLoader(Modality.TEXT, small_config().towers[Modality.TEXT], cfg)("  ")


def test_shards_take_every_extension_the_kinds_table_names(pair_files, tmp_path):
    """A .bmp image and a .flac soundtrack (both in bindspace.kinds) are a sample like .png + .wav."""
    import soundfile as sf
    from PIL import Image

    Image.open(pair_files / "img0.png").save(tmp_path / "x.bmp")
    wave, rate = sf.read(pair_files / "snd0.wav", dtype="float32")
    sf.write(tmp_path / "x.flac", wave, rate)
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(2):
            tar.add(tmp_path / "x.bmp", arcname=f"k{i}.bmp")
            tar.add(tmp_path / "x.flac", arcname=f"k{i}.flac")
    anchor, target = loaders(augment=False)
    batch = next(ShardSource([str(path)], anchor, target, batch_size=2, seed=0, num_workers=0).batches(0, 0))
    assert batch.anchor.shape == (2, 3, 16, 16) and batch.target.shape == (2, 1, 128, 204)
    plain = PairDataset(read_manifest(pair_files / "train.jsonl", V, A), anchor, target, augment=False).load(0)
    assert torch.allclose(batch.anchor[0], plain[0], atol=1e-6)  # the same pixels, whatever the container


def test_evaluation_order_keeps_the_short_last_batch():
    sampler = EpochBatchSampler(10, 4, shuffle=False, drop_last=False)
    assert [[i for _, i in b] for b in sampler] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    sampler.set_position(0, 2)
    assert [[i for _, i in b] for b in sampler] == [[8, 9]]
    assert len(EpochBatchSampler(10, 4)) == 2  # training drops the tail: every step has full negatives
    with pytest.raises(ValueError, match="single process"):
        EpochBatchSampler(10, 4, world=2, drop_last=False)
