"""Dataset adapters of the recipes, on miniature copies of each dataset's layout."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from bindspace.errors import ConfigError, InputError
from bindspace.fsio import umask
from bindspace.train.recipes import prepare
from bindspace.train.recipes.sunrgbd import sunrgbd_depth_metres


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_llvip_pairs_by_file_name(tmp_path):
    for side in ("visible", "infrared"):
        (tmp_path / side / "train").mkdir(parents=True)
        for n in ("010001", "010002"):
            Image.new("RGB", (8, 8)).save(tmp_path / side / "train" / f"{n}.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "visible" / "train" / "010003.jpg")  # no infrared partner
    assert prepare("llvip", tmp_path, tmp_path / "m.jsonl") == 2
    got = rows(tmp_path / "m.jsonl")
    assert got[0]["image"].endswith("visible/train/010001.jpg")
    assert got[0]["thermal"].endswith("infrared/train/010001.jpg")
    with pytest.raises(InputError, match="visible/test"):
        prepare("llvip", tmp_path, tmp_path / "t.jsonl", split="test")


def test_sunrgbd_undoes_the_bit_rotation_into_metres(tmp_path):
    scene = tmp_path / "SUNRGBD" / "kv1" / "scene1"
    (scene / "image").mkdir(parents=True)
    (scene / "depth_bfx").mkdir()
    Image.new("RGB", (8, 6)).save(scene / "image" / "0001.jpg")
    metres = np.array([[1.234, 0.0], [2.5, 4.0]])
    mm = (metres * 1000).round().astype(np.uint16)
    stored = ((mm << 3) | (mm >> 13)).astype(np.uint16)  # how SUN RGB-D writes its PNGs
    Image.fromarray(stored).save(scene / "depth_bfx" / "0001.png")
    assert np.allclose(sunrgbd_depth_metres(scene / "depth_bfx" / "0001.png"), metres, atol=1e-6)
    assert prepare("sunrgbd", tmp_path, tmp_path / "out" / "s.jsonl") == 1
    row = rows(tmp_path / "out" / "s.jsonl")[0]
    assert row["image"].endswith("image/0001.jpg")
    assert np.allclose(np.load(row["depth"]), metres, atol=1e-6)


def test_audioset_windows_from_the_segments_csv_and_val_split(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for ytid in ("abc", "def", "ghi", "zzz"):
        (clips / f"{ytid}.mp4").write_bytes(b"video")
    (tmp_path / "seg.csv").write_text('# header\n# YTID, start_seconds, end_seconds, positive_labels\n'
                                      'abc, 30.000, 40.000, "/m/09x0r"\ndef, 0.0, 10.0, "/m/0"\nghi, 5, 15, "/m/1"\n')
    count = prepare("audioset", clips, tmp_path / "a.jsonl", segments=str(tmp_path / "seg.csv"), val_fraction=0.5)
    assert count == 3  # zzz is not a listed segment
    train, val = rows(tmp_path / "a.jsonl"), rows(tmp_path / "a_val.jsonl")
    assert len(train) + len(val) == 3 and val
    first = train[0]
    assert first["video"] == first["audio"] and (first["start"], first["end"]) == (30.0, 40.0)
    (tmp_path / "bad.csv").write_text("abc, soon, 10\n")
    with pytest.raises(InputError, match="row 1"):
        prepare("audioset", clips, tmp_path / "b.jsonl", segments=str(tmp_path / "bad.csv"))


def test_ego4d_cuts_aligned_imu_windows(tmp_path, media_dir):
    (tmp_path / "full_scale").mkdir()
    (tmp_path / "imu").mkdir()
    shutil.copy(media_dir / "video_1.mp4", tmp_path / "full_scale" / "uid1.mp4")  # 3 s long
    t = np.arange(0, 3.5, 0.005)  # 200 Hz for 3.5 s
    lines = ["canonical_timestamp_ms,accl_x,accl_y,accl_z,gyro_x,gyro_y,gyro_z"]
    lines += [f"{ms},{s},{2 * s},9.8,0,0,{-s}" for ms, s in zip(t * 1000, t)]
    (tmp_path / "imu" / "uid1.csv").write_text("\n".join(lines) + "\n")
    assert prepare("ego4d", tmp_path, tmp_path / "e.jsonl", window_seconds=1.0) == 3  # starts 0, 1, 2 s
    got = rows(tmp_path / "e.jsonl")
    assert [(r["start"], r["end"]) for r in got] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    window = np.load(got[1]["imu"])
    assert window.shape == (6, 200)
    assert np.allclose(window[0], 1.0 + np.arange(200) / 200, atol=1e-5)  # acc_x is the time itself
    assert np.allclose(window[5], -window[0]) and np.allclose(window[2], 9.8)


def test_unknown_recipe_and_adapterless_recipe():
    with pytest.raises(ConfigError, match="available: audioset"):
        prepare("nope", ".", "x.jsonl")
    with pytest.raises(ConfigError, match="no dataset adapter"):
        prepare("lora", ".", "x.jsonl")


def test_manifest_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    from bindspace.train.recipes.manifest import write_jsonl

    path = tmp_path / "pairs.jsonl"
    assert write_jsonl([{"image": "a.png", "depth": "a.npy"}], path) == 1
    before = path.read_text()
    with pytest.raises(TypeError):  # a row that cannot be written fails half-way through the file
        write_jsonl([{"image": "b.png", "depth": "b.npy"}, {"image": object()}], path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask())  # a plain open()'s permissions
