"""Exported copies of the tiny preset (deterministic weights), made once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
pytest.importorskip("onnxscript", reason="the [onnx] extra is not installed")

TINY = "imagebind_tiny_test"


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory, tiny_model, tiny_model_dir) -> Path:
    """All six towers of the tiny model as an fp32 ONNX export (the export-time check included)."""
    from bindspace.export import export_onnx
    from bindspace.index.fingerprint import model_fingerprint

    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    return export_onnx(tiny_model, out, fingerprint=model_fingerprint(None, tiny_model_dir))


@pytest.fixture(scope="session")
def onnx_model(onnx_dir):
    """The fp32 export loaded through create_model (ONNX Runtime backend)."""
    import bindspace

    return bindspace.create_model(checkpoint=onnx_dir)


@pytest.fixture(scope="session")
def parity_inputs(goldens):
    """The parity fixtures' model inputs per tower: tower -> (input batch, expected embeddings)."""
    return {
        "text": (goldens["text.tokens"], goldens["text.embedding"]),
        "vision": (goldens["vision.pixels"], goldens["vision.embedding"]),
        "audio": (goldens["audio.mel"], goldens["audio.embedding"]),
        "depth": (goldens["depth.input"], goldens["depth.embedding"]),
        "thermal": (goldens["thermal.input"], goldens["thermal.embedding"]),
        "imu": (goldens["imu.input"], goldens["imu.embedding"]),
    }
