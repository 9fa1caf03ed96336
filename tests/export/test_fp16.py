"""A float16 export (for GPUs) still runs on ONNX Runtime's CPU provider and stays close to fp32."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow  # two tower exports


def test_fp16_export_is_checked_and_close_to_torch(tmp_path, tiny_model, parity_inputs):
    import bindspace
    from bindspace.export import export_onnx

    out = export_onnx(tiny_model, tmp_path / "f16", modalities=["audio", "text"], dtype="float16",
                      fingerprint="w1-source")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "float16" and manifest["fingerprint"] is None  # not the fp32 weights' vectors
    assert manifest["towers"]["audio"]["input"]["dtype"] == "float16"
    assert manifest["towers"]["text"]["input"]["dtype"] == "int64"
    assert manifest["towers"]["audio"]["check"]["min_cosine"] >= 0.999
    model = bindspace.create_model(checkpoint=out)
    for tower in ("audio", "text"):
        x, _ = parity_inputs[tower]
        with torch.inference_mode():
            want = tiny_model.encode(tower, x)
        got = model.encode(tower, x)  # float32 in, cast by the runtime, float32 out
        assert got.dtype == torch.float32 and (got * want).sum(-1).min() >= 0.999


def test_unknown_export_dtype_is_refused(tiny_model, tmp_path):
    from bindspace.export import export_onnx
    from bindspace.export.onnx_export import ExportError

    with pytest.raises(ExportError, match="cannot export as 'int8'.*bindspace quantize"):
        export_onnx(tiny_model, tmp_path / "x", dtype="int8")
