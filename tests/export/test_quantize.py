"""int8 towers: accuracy kept on the parity fixtures, the report, static calibration rules."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow  # needs the session export, and quantizes six towers

TOWERS = ("vision", "text", "audio", "depth", "thermal", "imu")


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, onnx_dir, parity_inputs):
    from bindspace.export import quantize_dir
    from bindspace.modality import as_modality

    inputs = {as_modality(t): x for t, (x, _) in parity_inputs.items()}
    out = tmp_path_factory.mktemp("int8") / "tiny-int8"
    report = quantize_dir(onnx_dir, out, mode="dynamic", inputs=inputs)
    return out, report


@pytest.mark.parametrize("tower", TOWERS)
def test_dynamic_int8_keeps_cosine_on_the_parity_fixtures(int8_dir, parity_inputs, tower):
    import bindspace

    model = bindspace.create_model(checkpoint=int8_dir[0], modalities=[tower])
    x, golden = parity_inputs[tower]
    got = model.encode(tower, x)
    cos = (got * torch.nn.functional.normalize(golden, dim=-1)).sum(-1)
    assert cos.min() >= 0.99


def test_report_per_tower_with_zero_shot_agreement(int8_dir):
    out, report = int8_dir
    assert set(report) == set(TOWERS)
    for tower, row in report.items():
        assert 0.99 <= row["min_cosine"] <= row["mean_cosine"] <= 1.0
        assert ("zero_shot_agreement" in row) == (tower != "text")
    assert report["audio"]["items"] == 9  # 3 files x 3 clips, each clip an item
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8-dynamic" and manifest["report"] == report
    assert manifest["quantization"]["calibration"]["vision"] == "media"


def test_int8_weights_are_smaller_and_fingerprinted_apart(int8_dir, onnx_dir):
    from bindspace.index.fingerprint import model_fingerprint

    def weights(folder, tower):
        return (folder / f"{tower}.onnx.data").stat().st_size

    # audio: nearly all weights are MatMuls (text's are mostly its token table, a float Gather)
    assert weights(int8_dir[0], "audio") < 0.5 * weights(onnx_dir, "audio")
    assert model_fingerprint(None, int8_dir[0]) != model_fingerprint(None, onnx_dir)


def test_static_needs_media_or_synthetic(onnx_dir, tmp_path):
    from bindspace.errors import BindspaceError
    from bindspace.export import quantize_dir

    with pytest.raises(BindspaceError, match="static quantization needs calibration inputs for imu"):
        quantize_dir(onnx_dir, tmp_path / "s", mode="static", modalities=["imu"])
    report = quantize_dir(onnx_dir, tmp_path / "s", mode="static", modalities=["imu", "depth"], synthetic=True)
    # a smoke run: random calibration inputs give rough ranges (real media: the command test below)
    assert set(report) == {"imu", "depth"} and report["depth"]["min_cosine"] >= 0.95
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["precision"] == "int8-static" and set(manifest["towers"]) == {"imu", "depth"}


def test_quantize_command_with_calibration_media(onnx_dir, tmp_path, media_dir, capsys):
    from bindspace.cli import main

    texts = tmp_path / "prompts.txt"
    texts.write_text("a dog barking\nrain on a roof\n\npiano music\n")
    code = main(["quantize", str(onnx_dir), "-o", str(tmp_path / "q"), "--mode", "static", "--modalities", "audio",
                 "text", "--calibrate", f"audio:{media_dir}", "--calibrate", f"text:{texts}", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["audio"]["items"] == 9 and report["text"]["items"] == 3
    assert report["audio"]["min_cosine"] >= 0.99


def test_quantize_refuses_an_int8_source_and_bad_specs(int8_dir, onnx_dir, tmp_path, capsys):
    from bindspace.cli import main

    assert main(["quantize", str(int8_dir[0]), "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "quantize an fp32 export" in err and err.count("\n") == 1
    assert main(["quantize", str(onnx_dir), "-o", str(tmp_path / "y"), "--calibrate", "audio"]) == 1
    err = capsys.readouterr().err
    assert "expected KIND:PATH" in err and err.count("\n") == 1
    assert main(["quantize", str(onnx_dir), "-o", str(tmp_path / "z"), "--calibrate", f"audio:{tmp_path}/none"]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_calibration_media_for_vision_mixes_images_and_video_clips(onnx_dir, media_dir):
    from bindspace.export.calibration import load_calibration
    from bindspace.model.onnx_backend import OnnxModel

    model = OnnxModel(onnx_dir, ["vision", "imu"])
    inputs = load_calibration([f"image:{media_dir}", f"video:{media_dir / 'video_1.mp4'}", f"imu:{media_dir}"], model)
    vision = inputs[model.modalities[0]]
    images = [p for p in media_dir.iterdir() if p.suffix in (".jpg", ".png")]  # depth/thermal PNGs read as images too
    assert tuple(vision.shape) == (len(images) + 15, 3, 2, 224, 224)  # images as 2-frame clips + 15 video clips
    assert torch.equal(vision[0, :, 0], vision[0, :, 1])  # an image is its own frame twice
    assert tuple(inputs[model.modalities[1]].shape) == (1, 6, 2000)
