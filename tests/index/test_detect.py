"""Modality detection: magic bytes over extensions, depth vs image, name hints, arrays, CSV."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from bindspace.index.detect import detect_modality


def test_fixture_media(media_dir, tmp_path):
    expected = {
        "image_1.jpg": "image", "image_2.png": "image", "image_3.png": "image",  # 8-bit grey stays an image
        "audio_1.wav": "audio", "video_1.mp4": "video", "imu_1.npy": "imu",
        "depth_1.png": "depth",  # 16-bit single channel
        "thermal_1.png": "thermal",  # 8-bit grey, named thermal
        "texts.json": None,
    }
    got = {name: detect_modality(media_dir / name) for name in expected}
    assert got == expected


def test_content_wins_over_a_wrong_extension(media, media_dir):
    png_as_dat = media.raw("photo.dat", (media_dir / "image_2.png").read_bytes())
    wav_as_jpg = media.raw("sound.jpg", (media_dir / "audio_1.wav").read_bytes())
    mp4_no_ext = media.raw("clip", (media_dir / "video_1.mp4").read_bytes())
    assert detect_modality(png_as_dat) == "image"
    assert detect_modality(wav_as_jpg) == "audio"
    assert detect_modality(mp4_no_ext) == "video"


def test_unrecognisable_content_falls_back_to_the_extension(media):
    # truncated / corrupt files keep their extension's modality, so they are reported, not ignored
    assert detect_modality(media.raw("broken.jpg", b"\x00\x01garbage")) == "image"
    assert detect_modality(media.raw("broken.wav", b"nonsense")) == "audio"
    assert detect_modality(media.raw("empty.mp4", b"")) == "video"
    assert detect_modality(media.raw("notes.txt", b"hello")) is None


def test_depth_versus_image_and_folder_hints(media):
    assert detect_modality(media.gray("a.png", bits=16)) == "depth"
    assert detect_modality(media.gray("b.png", bits=8)) == "image"
    assert detect_modality(media.gray("thermal/c.png", bits=8)) == "thermal"
    assert detect_modality(media.gray("FLIR/sub/d.png", bits=16)) == "thermal"  # nearest hint folder decides
    assert detect_modality(media.image("depth/e.png")) == "depth"  # the depth loader will judge its content
    assert detect_modality(media.gray("x/scene-depth.png", bits=8)) == "depth"  # file-name word
    # a hint never turns audio into a picture
    assert detect_modality(media.audio("thermal/noise.wav")) == "audio"


def test_arrays_by_shape(media):
    assert detect_modality(media.imu("a.npy")) == "imu"
    assert detect_modality(media.imu("b.npy", transpose=True)) == "imu"
    depth = media.path("c.npy")
    np.save(depth, np.ones((48, 64), np.float32))
    assert detect_modality(depth) == "depth"
    thermal = media.path("thermal/d.npy")
    np.save(thermal, np.ones((48, 64), np.float32))
    assert detect_modality(thermal) == "thermal"
    cube = media.path("e.npy")
    np.save(cube, np.ones((4, 5, 6, 7), np.float32))
    assert detect_modality(cube) is None


@pytest.mark.parametrize("header, expected", [
    ("t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0,1,2,3,4,5,6\n", "imu"),
    ("Time (s),Accelerometer X,Accelerometer Y\n", "imu"),
    ("name,price\napple,3\n", None),
])
def test_csv(media, header, expected):
    assert detect_modality(media.raw("rec.csv", header.encode())) == expected


def test_audio_only_mp4_brand_is_audio(media):
    header = b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + b"\x00" * 16
    assert detect_modality(media.raw("song.mp4", header)) == "audio"
    assert detect_modality(media.raw("movie.bin", b"\x00\x00\x00\x20ftypisom" + b"\x00" * 20)) == "video"


def test_unreadable_file_uses_extension(media, media_dir):
    target = media.path("locked.png")
    shutil.copy(media_dir / "image_3.png", target)
    target.chmod(0)
    try:
        assert detect_modality(target) == "image"
    finally:
        target.chmod(0o644)
