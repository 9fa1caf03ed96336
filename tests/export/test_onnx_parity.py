"""An fp32 ONNX export reproduces the torch model: every tower, dynamic batch and text length, clips."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow  # the session export of six towers takes ~20 s on 2 cores

TOWERS = ("vision", "text", "audio", "depth", "thermal", "imu")


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


@pytest.mark.parametrize("tower", TOWERS)
def test_fp32_export_matches_torch_and_goldens(onnx_model, tiny_model, parity_inputs, tower):
    x, golden = parity_inputs[tower]
    with torch.inference_mode():
        want = tiny_model.encode(tower, x)
    got = onnx_model.encode(tower, x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max() < 1e-5
    assert (got - unit(golden)).abs().max() < 1e-5  # the parity fixtures, not only our torch model


def test_forward_keeps_the_dict_contract_with_scales(onnx_model, tiny_model, parity_inputs):
    inputs = {t: parity_inputs[t][0] for t in ("text", "audio", "imu")}
    with torch.inference_mode():
        want = tiny_model(inputs)
    got = onnx_model(inputs)
    assert set(got) == set(want)
    for tower in inputs:  # scaled (logit scale applied), not unit vectors
        torch.testing.assert_close(got[tower], want[tower], atol=1e-4, rtol=1e-5)
        assert got[tower].norm(dim=-1).mean() > 2.0
    assert float(onnx_model.logit_scale("text")) == pytest.approx(float(tiny_model.logit_scale("text")), rel=1e-6)


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch(onnx_model, tiny_model, batch):
    g = torch.Generator().manual_seed(batch)
    for tower, shape in [("vision", (3, 224, 224)), ("depth", (1, 224, 224)), ("imu", (6, 2000))]:
        x = torch.randn(batch, *shape, generator=g)
        with torch.inference_mode():
            want = tiny_model.encode(tower, x)
        assert (onnx_model.encode(tower, x) - want).abs().max() < 1e-5


def test_text_any_length_keeps_the_cut_at_the_longest_text(onnx_model, tiny_model):
    from bindspace.preprocess.tokenizer import tokenize

    texts = ["a dog", "a much longer sentence about a dog running through the park at night", "x"]
    full = tokenize(texts)  # (3, 77), zero padded
    with torch.inference_mode():
        want = tiny_model.encode("text", full)
    assert (onnx_model.encode("text", full) - want).abs().max() < 1e-5
    short = full[:, :20]  # already shorter than the context: still exact
    assert (onnx_model.encode("text", short) - want).abs().max() < 1e-5
    assert (onnx_model.encode("text", full[:1]) - want[:1]).abs().max() < 1e-5  # only the short text


def test_video_clips_and_clip_axis(onnx_model, tiny_model):
    g = torch.Generator().manual_seed(7)
    clips = torch.randn(2, 3, 3, 2, 224, 224, generator=g)  # (B, S, C, T, H, W): two videos of 3 clips
    with torch.inference_mode():
        want = tiny_model.encode("vision", clips)
    assert (onnx_model.encode("vision", clips) - want).abs().max() < 1e-5
    mel = torch.randn(2, 3, 1, 128, 204, generator=g)  # audio (B, S, 1, 128, 204)
    with torch.inference_mode():
        want = tiny_model.encode("audio", mel)
    assert (onnx_model.encode("audio", mel) - want).abs().max() < 1e-5


def test_wrong_shape_is_one_clear_error(onnx_model):
    from bindspace.errors import BindspaceError

    with pytest.raises(BindspaceError, match=r"depth input has shape \(2, 3, 224, 224\), expected"):
        onnx_model.encode("depth", torch.zeros(2, 3, 224, 224))


def test_manifest_describes_the_export(onnx_dir, tiny_model_dir):
    from bindspace.index.fingerprint import model_fingerprint

    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    assert manifest["format"] == "bindspace-onnx" and manifest["precision"] == "float32"
    assert manifest["config"]["name"] == "imagebind_tiny_test" and manifest["preprocessing"] >= 1
    assert set(manifest["towers"]) == set(TOWERS)
    vision = manifest["towers"]["vision"]
    assert vision["input"] == {"name": "clips", "shape": ["batch", 3, 2, 224, 224], "dtype": "float32"}
    assert manifest["towers"]["text"]["input"]["shape"] == ["batch", "length"]
    assert vision["check"]["min_cosine"] >= 0.99999
    assert [e["file"] for e in vision["external_data"]] == ["vision.onnx.data"]  # weights outside the graph
    for entry in manifest["towers"].values():
        assert len(entry["graph"]["sha256"]) == 64
    # fp32 vectors equal the torch model's, so the export shares the weights' fingerprint (indexes carry over)
    assert model_fingerprint(None, onnx_dir) == model_fingerprint(None, tiny_model_dir)


def test_no_torch_model_code_behind_an_exported_dir(onnx_model):
    from bindspace.model.onnx_backend import OnnxModel

    assert isinstance(onnx_model, OnnxModel)
    names = {type(m).__module__ for m in onnx_model.modules()}
    assert names == {"bindspace.model.onnx_backend"}  # no ImageBind layers: ONNX Runtime runs the towers
