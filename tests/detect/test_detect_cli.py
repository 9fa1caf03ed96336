"""`bindspace detect` end to end on the tiny preset (24-d space) with a detector saved beside it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from bindspace.cli import main
from bindspace.detect import save_detector

from .conftest import planted_scene


@pytest.fixture()
def detector_dir(planted_detector, tiny_model_dir, tmp_path):
    detector, _ = planted_detector
    detector.space.checkpoint = str(tiny_model_dir)
    try:
        return save_detector(detector, tmp_path / "detector")
    finally:
        detector.space.checkpoint = None


@pytest.fixture()
def scene_png(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(planted_scene(np.random.default_rng(2))[0]).save(path)
    return path


def test_detect_prints_boxes_per_image_and_draws_them(detector_dir, scene_png, media_dir, tmp_path, capsys):
    out_png = tmp_path / "boxes.png"
    code = main(["detect", str(scene_png), "--detector", str(detector_dir), "--text", "a red square",
                 "--audio", str(media_dir / "audio_1.wav"), "--threshold", "0", "--max-detections", "3",
                 "--draw", str(out_png)])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in result] == [str(scene_png)]
    dets = result[0]["detections"]
    assert 1 <= len(dets) <= 3
    assert {d["label"] for d in dets} <= {"a red square", "audio_1"}  # a text names itself, a file its stem
    assert all(len(d["box"]) == 4 and 0 <= d["score"] <= 1 for d in dets)
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    drawn = Image.open(out_png)
    assert min(drawn.size) >= 256  # a 32-px scene is enlarged to be seen
    def colours(img: Image.Image) -> int:
        return len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0))

    assert colours(drawn) > colours(Image.open(scene_png))  # the boxes and labels add colours


def test_several_images_write_json_and_a_folder_of_drawings(detector_dir, scene_png, tmp_path, capsys):
    second = tmp_path / "second.png"
    shutil.copy(scene_png, second)
    code = main(["detect", str(scene_png), str(second), "--detector", str(detector_dir), "--text", "x",
                 "--name", "thing", "-o", str(tmp_path / "out.json"), "--draw", str(tmp_path / "drawn")])
    assert code == 0 and capsys.readouterr().out == ""
    result = json.loads((tmp_path / "out.json").read_text())
    assert len(result) == 2 and result[0]["detections"] == result[1]["detections"]  # same picture, same boxes
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["000_scene.png", "001_second.png"]


@pytest.mark.parametrize(("extra", "code", "needle"), [
    ([], 2, "give at least one class"),
    (["--text", "a", "--name", "x", "--name", "y"], 2, "2 --name values for 1 classes"),
    (["--audio", "MISSING.wav"], 1, "MISSING.wav: no such file (--audio)"),
])
def test_usage_and_missing_files_are_one_line(detector_dir, scene_png, extra, code, needle, capsys):
    assert main(["detect", str(scene_png), "--detector", str(detector_dir), *extra]) == code
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_bad_images_are_one_line_naming_the_file(detector_dir, tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "folder.png").mkdir()
    for name, problem in (("empty.png", "empty"), ("notes.png", "not an image"), ("folder.png", "directory")):
        assert main(["detect", str(tmp_path / name), "--detector", str(detector_dir), "--text", "a"]) == 1
        err = capsys.readouterr().err
        assert name in err and problem in err and err.count("\n") == 1


def test_a_description_that_disagrees_with_the_weights_is_refused(detector_dir, scene_png, capsys):
    meta = json.loads((detector_dir / "detector.json").read_text())
    meta["space"]["embed_dim"] = 64
    meta["config"]["embed_dim"] = 64
    (detector_dir / "detector.json").write_text(json.dumps(meta))
    assert main(["detect", str(scene_png), "--detector", str(detector_dir), "--text", "a"]) == 1
    err = capsys.readouterr().err
    assert "cannot load detector weights" in err and err.count("\n") == 1
