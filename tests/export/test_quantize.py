"""int8 towers: accuracy kept on the parity fixtures, the report, static calibration rules, CPU kinds."""
from __future__ import annotations

import json
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow  # needs the session export, and quantizes six towers

TOWERS = ("vision", "text", "audio", "depth", "thermal", "imu")


def expected_min_cosine(recipe, kind: str) -> float:
    """The least per-item cosine to fp32 a recipe must keep on a CPU kind, from what its kernels do.

    Without saturation the only error is rounding: 8-bit per-channel weights and 8-bit per-batch
    activations give relative errors near 2^-9 per product, which after a dozen residual blocks
    and the final normalisation cost about 1e-3 of cosine (measured here: >= 0.9995 with uint8
    weights on AVX2, >= 0.999 with int8 weights on AVX-512 VNNI/AMX). 7-bit weights double the
    weight step (measured >= 0.9986). Where the kernel saturates (int8 weights on an int16-pair
    kernel), errors are unbounded (0.94 measured): no tolerance, the loader must warn instead.
    """
    if recipe.saturates_on(kind):
        raise AssertionError(f"{recipe.key()} saturates on {kind}: no accuracy to expect")
    return 0.999 if recipe.weight_bits == 8 else 0.995


def this_kind() -> str:
    from bindspace.precision import cpu_flags, cpu_kind

    return cpu_kind(cpu_flags())


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, onnx_dir, parity_inputs):
    from bindspace.export import quantize_dir
    from bindspace.modality import as_modality

    inputs = {as_modality(t): x for t, (x, _) in parity_inputs.items()}
    out = tmp_path_factory.mktemp("int8") / "tiny-int8"
    report = quantize_dir(onnx_dir, out, mode="dynamic", inputs=inputs)
    return out, report


from bindspace.model.int8_recipe import Recipe  # noqa: E402


@pytest.mark.parametrize("tower", TOWERS)
def test_dynamic_int8_keeps_cosine_on_the_parity_fixtures(int8_dir, parity_inputs, tower):
    import bindspace

    model: Any = bindspace.create_model(checkpoint=int8_dir[0], modalities=[tower])
    x, golden = parity_inputs[tower]
    got = model.encode(tower, x)
    cos = (got * torch.nn.functional.normalize(golden, dim=-1)).sum(-1)
    recipe = Recipe.from_dict(model.manifest["quantization"]["recipe"])
    assert recipe.cpu_kind == this_kind()  # chosen for this machine by default
    assert cos.min() >= expected_min_cosine(recipe, this_kind())
    assert model.kind_warning is None


def test_report_per_tower_with_zero_shot_agreement(int8_dir):
    out, report = int8_dir
    assert set(report) == set(TOWERS)
    for tower, row in report.items():
        assert 0.999 <= row["min_cosine"] <= row["mean_cosine"] <= 1.0  # the recipe for this kind (see above)
        assert ("zero_shot_agreement" in row) == (tower != "text")
    assert report["audio"]["items"] == 9  # 3 files x 3 clips, each clip an item
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8-dynamic" and manifest["report"] == report
    assert manifest["quantization"]["calibration"]["vision"] == "media"
    assert manifest["quantization"]["recipe"]["cpu_kind"] == this_kind()


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
    # scored on held-out rows only: every third of the 9 audio clips and of the 3 texts
    assert report["audio"]["items"] == 3 and report["text"]["items"] == 1
    assert report["audio"]["min_cosine"] >= 0.99
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["quantization"]["report_rows"] == "held out from calibration"


def test_static_report_scores_rows_calibration_never_saw(onnx_dir, parity_inputs, tmp_path, monkeypatch):
    import bindspace.export.quantize as quantize
    from bindspace.modality import Modality

    seen: dict[str, list] = {}
    calibrate, report = quantize._quantize_graph, quantize.quality_report

    def spy_calibration(src, dst, recipe, feeds):
        seen["calibrated"] = [next(iter(f.values())) for f in feeds]
        return calibrate(src, dst, recipe, feeds)

    def spy_report(fp32, int8, inputs):
        seen["scored"] = [row.numpy() for row in inputs[Modality.AUDIO]]
        return report(fp32, int8, inputs)

    monkeypatch.setattr(quantize, "_quantize_graph", spy_calibration)
    monkeypatch.setattr(quantize, "quality_report", spy_report)
    mel = parity_inputs["audio"][0]  # (3 items, 3 clips, 1, 128, 204) -> 9 rows
    quantize.quantize_dir(onnx_dir, tmp_path / "s", mode="static", modalities=["audio"], inputs={Modality.AUDIO: mel})
    assert len(seen["calibrated"]) == 6 and len(seen["scored"]) == 3
    for scored in seen["scored"]:
        assert not any(abs(c[0] - scored).max() == 0 for c in seen["calibrated"])


def test_int8_built_for_another_kind_warns_in_one_line_or_stays_accurate(onnx_dir, parity_inputs, tmp_path,
                                                                        monkeypatch):
    """A VNNI directory made here (int8 weights), then run on this machine's real kernels."""
    import warnings

    import bindspace.model.int8_recipe as recipe_module
    from bindspace.export import quantize_dir
    from bindspace.model.int8_recipe import KindWarning, forced_recipe
    from bindspace.model.onnx_backend import OnnxModel

    vnni = forced_recipe("avx512-vnni")
    quantize_dir(onnx_dir, tmp_path / "v", modalities=["thermal"], recipe=vnni)
    x, golden = parity_inputs["thermal"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = OnnxModel(tmp_path / "v")
    cos = (model.encode("thermal", x) * torch.nn.functional.normalize(golden, dim=-1)).sum(-1)
    said = [w for w in caught if issubclass(w.category, KindWarning)]
    if vnni.saturates_on(this_kind()):  # e.g. AVX2: the kernel this test really ran saturates
        assert len(said) == 1 and "\n" not in str(said[0].message) and "avx512-vnni" in str(said[0].message)
    else:  # VNNI/AMX/ARM: it stays accurate, and says nothing
        assert not said and cos.min() >= expected_min_cosine(vnni, this_kind())
    # the same directory on a faked VNNI CPU is silent, on a faked AVX2 CPU it warns
    monkeypatch.setattr(recipe_module, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert OnnxModel(tmp_path / "v").kind_warning is None
    monkeypatch.setattr(recipe_module, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(KindWarning, match="built for avx512-vnni CPUs"):
        OnnxModel(tmp_path / "v")


def test_a_manifest_from_before_recipes_is_treated_as_int8_weights(int8_dir, tmp_path, monkeypatch):
    import shutil

    import bindspace.model.int8_recipe as recipe_module
    from bindspace.export import manifest as mf
    from bindspace.model.int8_recipe import KindWarning
    from bindspace.model.onnx_backend import OnnxModel

    old = tmp_path / "old"
    shutil.copytree(int8_dir[0], old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["quantization"] = {"mode": "dynamic", "weights": "int8 per channel"}  # what it used to say
    mf.write_manifest(old, manifest)
    monkeypatch.setattr(recipe_module, "cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.warns(KindWarning, match="this avx2 CPU"):
        OnnxModel(old, ["imu"])


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
