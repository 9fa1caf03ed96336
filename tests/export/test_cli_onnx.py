"""Every model-loading command accepts an exported directory as --checkpoint, end to end."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from bindspace.cli import main

pytestmark = pytest.mark.slow  # uses the session export


def test_export_command_writes_a_checked_directory(tmp_path, tiny_model_dir, tiny_model, capsys):
    from bindspace.index.fingerprint import model_fingerprint

    out = tmp_path / "exported"
    code = main(["export", "--format", "onnx", "--checkpoint", str(tiny_model_dir), "--modalities", "text", "imu",
                 "-o", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "cosine >=" in captured.err and "wrote 2 ONNX towers of imagebind_tiny_test" in captured.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["towers"]) == {"text", "imu"} and manifest["opset"] == 18
    assert manifest["fingerprint"] == model_fingerprint(None, tiny_model_dir)
    assert not list(tmp_path.glob(".exported.partial-*"))  # the work directory is gone


def test_embed(onnx_dir, tiny_model, media_dir, tmp_path):
    from bindspace import preprocess

    images = [media_dir / "image_1.jpg", media_dir / "image_3.png"]
    out = tmp_path / "v.npy"
    assert main(["embed", "--modality", "image", "--checkpoint", str(onnx_dir), "--workers", "0", "-o", str(out),
                 *map(str, images)]) == 0
    with torch.inference_mode():
        want = tiny_model.encode("vision", torch.stack([preprocess.load_image(p) for p in images])).numpy()
    np.testing.assert_allclose(np.load(out), want, atol=1e-5)


def test_embed_ignores_dtype_for_an_export(onnx_dir, tiny_model, tmp_path):
    from bindspace.preprocess import text

    out = tmp_path / "t.npy"
    assert main(["embed", "--modality", "text", "--checkpoint", str(onnx_dir), "--dtype", "bfloat16", "-o", str(out),
                 "a dog", "a car"]) == 0
    with torch.inference_mode():
        want = tiny_model.encode("text", text(["a dog", "a car"])).numpy()
    np.testing.assert_allclose(np.load(out), want, atol=1e-5)  # the graph's own fp32, not bf16


def test_classify(onnx_dir, tiny_model, media_dir, capsys):
    from bindspace.tasks import ZeroShotClassifier

    files = [str(media_dir / "audio_1.wav"), str(media_dir / "audio_2.wav")]
    assert main(["classify", "--modality", "audio", "--labels", "dog,rain,siren", "-k", "3", "--json",
                 "--checkpoint", str(onnx_dir), "--workers", "0", *files]) == 0
    out = json.loads(capsys.readouterr().out)
    library = ZeroShotClassifier(tiny_model, ["dog", "rain", "siren"], modality="audio").predict("audio", files, k=3)
    for entry, pred in zip(out, library):
        assert [p["label"] for p in entry["predictions"]] == list(pred.labels)
        assert [p["probability"] for p in entry["predictions"]] == pytest.approx(pred.probabilities, abs=1e-4)


def test_index_then_search(onnx_dir, tiny_pth, media_dir, tmp_path, capsys):
    pytest.importorskip("lancedb")
    root = tmp_path / "media"
    root.mkdir()
    for name in ("image_1.jpg", "image_2.png", "audio_1.wav", "depth_1.png", "imu_1.npy"):
        shutil.copy(media_dir / name, root / name)
    db = tmp_path / "db"
    assert main(["index", str(root), "--db", str(db), "--checkpoint", str(onnx_dir), "--workers", "0",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "--db", str(db), "--image", str(root / "image_2.png"), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert hits[0]["uri"] == str(root / "image_2.png") and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    # The fp32 export has the torch weights' fingerprint: the .pth searches the same index.
    assert main(["search", "--db", str(db), "--image", str(root / "image_2.png"), "--json", "--dtype", "float32",
                 "--model", "imagebind_tiny_test", "--checkpoint", str(tiny_pth)]) == 0
    again = json.loads(capsys.readouterr().out)["results"]
    assert again[0]["uri"] == hits[0]["uri"] and again[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_serve(onnx_dir, tiny_model, monkeypatch):
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    from fastapi.testclient import TestClient

    from bindspace.preprocess import text

    calls: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    monkeypatch.delenv("BINDSPACE_API_KEY", raising=False)
    assert main(["serve", "--checkpoint", str(onnx_dir), "--port", "8124"]) == 0
    with TestClient(calls["app"]) as client:
        body = client.post("/v1/embed", json={"modality": "text", "texts": ["A dog.", "A car"]}).json()
    with torch.inference_mode():
        want = tiny_model.encode("text", text(["A dog.", "A car"])).numpy()
    np.testing.assert_allclose(body["vectors"], want, atol=1e-5)
