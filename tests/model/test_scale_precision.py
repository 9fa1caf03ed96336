"""The bfloat16 path end to end: scales and LayerNorm stay float32, an index records and enforces its precision.

The suite pins float32 (BINDSPACE_DTYPE); these tests ask for bfloat16 explicitly. bf16 is emulated
(slow) on CPUs without AVX-512 BF16 / AMX, so they use the tiny preset.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from bindspace.model import create_model
from bindspace.precision import PrecisionWarning

TINY = "imagebind_tiny_test"
# The tiny preset's scales: text learnable 1/0.07, audio 20, depth 5, thermal 10, imu 5.
SCALES = {"text": 1 / 0.07, "audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}


def bf16_model(checkpoint=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)  # emulated on this CPU: known and fine for a tiny model
        return create_model(TINY, checkpoint=checkpoint, dtype="bfloat16")


@pytest.mark.parametrize("from_checkpoint", [True, False])
def test_scales_and_layer_norms_stay_float32(from_checkpoint, tiny_model_dir):
    model = bf16_model(tiny_model_dir if from_checkpoint else None)
    for modality, scale in SCALES.items():
        assert model.logit_scale(modality).dtype == torch.float32
        assert model.logit_scale(modality).item() == pytest.approx(scale, rel=1e-6)  # bf16: 20.09, 9.94, 14.25
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 and m.bias.dtype == torch.float32 for m in norms)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(m.weight.dtype == torch.bfloat16 for m in linears)  # the rest is low precision
    assert model.precision() == "bfloat16"


def test_bf16_outputs_have_exact_scales_and_follow_the_float32_model(tiny_model_dir):
    low, full = bf16_model(tiny_model_dir), create_model(TINY, checkpoint=tiny_model_dir, dtype="float32")
    torch.manual_seed(0)
    inputs = {"audio": torch.randn(2, 1, 1, 128, 204), "thermal": torch.randn(2, 1, 224, 224)}  # one clip: no averaging
    with torch.no_grad():
        out_low, out_full = low(inputs), full(inputs)
    for modality in inputs:
        assert out_low[modality].dtype == torch.float32
        norms = out_low[modality].norm(dim=-1)
        torch.testing.assert_close(norms, torch.full_like(norms, SCALES[modality]), rtol=1e-5, atol=0)
        cosine = torch.nn.functional.cosine_similarity(out_low[modality], out_full[modality], dim=-1)
        assert cosine.min() > 0.98  # bf16 weights: close to, not equal to, float32


def test_an_index_records_its_precision_and_refuses_the_other(tmp_path, tiny_model_dir, capsys):
    pytest.importorskip("lancedb")
    from bindspace.cli import main
    from bindspace.index import open_store

    folder = tmp_path / "media"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / "a.png")
    db = tmp_path / "db"
    common = [str(folder), "--db", str(db), "--model", TINY, "--checkpoint", str(tiny_model_dir), "--workers", "0",
              "--no-progress"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        assert main(["index", *common, "--dtype", "bfloat16"]) == 0
    info = open_store(str(db)).model_info()
    assert info is not None and info.precision == "bfloat16"
    (folder / "b.png").write_bytes((folder / "a.png").read_bytes()[:-1] + b"\x00")  # a new file to embed
    capsys.readouterr()
    assert main(["index", *common, "--dtype", "float32"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to mix precisions" in err[0] and "bfloat16" in err[0]
    assert open_store(str(db)).count() == 1  # nothing of the other precision was added
