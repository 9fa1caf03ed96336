"""Depth loader: units, disparity, invalid pixels, mask-aware resize, errors."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from bindspace.errors import InputError
from bindspace.preprocess.depth import DEFAULT_FOCAL_BASELINE, depth, load_depth

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"
FB = DEFAULT_FOCAL_BASELINE


def png16(path: Path, millimetres: np.ndarray) -> Path:
    """Write a 16-bit greyscale PNG of millimetre depths."""
    Image.fromarray(millimetres.astype(np.uint16)).save(path)
    return path


def test_default_focal_baseline_is_kinect() -> None:
    assert FB == pytest.approx(518.857901 * 0.075)


def test_fixture_png_is_disparity_in_expected_range() -> None:
    raw = np.asarray(Image.open(MEDIA / "depth_1.png")).astype(np.float64)
    out = load_depth(MEDIA / "depth_1.png")
    assert out.shape == (1, 224, 224) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()
    # Mask-aware bilinear only averages valid pixels: every non-zero value lies within
    # the disparity range of the valid input pixels.
    metres = raw[raw > 0] / 1000.0
    nonzero = out[out > 0]
    assert nonzero.min() >= FB / metres.max() * (1 - 1e-5)
    assert nonzero.max() <= FB / metres.min() * (1 + 1e-5)
    assert (out == 0).any(), "the fixture has invalid (0) pixels; some must survive the resize"


def test_constant_two_metres_png(tmp_path: Path) -> None:
    path = png16(tmp_path / "d.png", np.full((480, 640), 2000))
    out = load_depth(path)
    assert torch.allclose(out, torch.full((1, 224, 224), FB / 2), rtol=1e-6)


@pytest.mark.parametrize("kind", ["path_str", "bytes", "file", "pil", "npy", "array", "tensor"])
def test_all_input_kinds_agree(tmp_path: Path, kind: str) -> None:
    metres = np.full((240, 320), 2.0, dtype=np.float32)
    png = png16(tmp_path / "d.png", metres * 1000)
    np.save(tmp_path / "d.npy", metres)
    item: Any = {
        "path_str": str(png),
        "bytes": png.read_bytes(),
        "file": io.BytesIO(png.read_bytes()),
        "pil": Image.open(png),
        "npy": tmp_path / "d.npy",
        "array": metres,
        "tensor": torch.from_numpy(metres),
    }[kind]
    assert torch.allclose(load_depth(item), torch.full((1, 224, 224), FB / 2), rtol=1e-6)


def test_custom_focal_baseline_and_size() -> None:
    out = load_depth(np.full((100, 100), 4.0), focal_baseline=10.0, size=64)
    assert out.shape == (1, 64, 64)
    assert torch.allclose(out, torch.full_like(out, 2.5))


def test_invalid_pixels_become_zero() -> None:
    metres = np.full((224, 224), 2.0)
    metres[0, :4] = [0.0, -1.0, np.nan, np.inf]
    out = load_depth(metres)[0]  # same size: no resize, exact values
    assert torch.equal(out[0, :4], torch.zeros(4))
    assert torch.allclose(out[1:], torch.full((223, 224), FB / 2))


def test_max_depth_marks_far_pixels_invalid() -> None:
    metres = np.full((224, 224), 2.0)
    metres[:, 100:] = 9.0
    out = load_depth(metres, max_depth=5.0)[0]
    assert (out[:, 100:] == 0).all()
    assert torch.allclose(out[:, :100], torch.full((224, 100), FB / 2))


def test_resize_never_blends_holes_into_valid_values() -> None:
    metres = np.full((448, 448), 2.0)
    metres[:, :224] = 0.0  # left half invalid
    out = load_depth(metres)[0]
    nonzero = out[out != 0]
    assert torch.allclose(nonzero, torch.full_like(nonzero, FB / 2), rtol=1e-5)
    # the hole keeps its place: left half zero, right half valid
    assert (out[:, :110] == 0).all() and (out[:, 114:] > 0).all()


def test_shorter_side_resize_then_centre_crop() -> None:
    metres = np.full((300, 600), 2.0)
    metres[:, :150] = 1.0  # outside the centre crop (columns 150..450 of 600)
    metres[:, 450:] = 4.0
    out = load_depth(metres)[0]
    assert out.shape == (224, 224)
    assert torch.allclose(out[:, 3:-3], torch.full((224, 218), FB / 2), rtol=1e-5)


def test_depth_scale_for_integer_and_float_data(tmp_path: Path) -> None:
    png = png16(tmp_path / "d.png", np.full((50, 50), 200))  # e.g. 200 units of 1 cm
    assert torch.allclose(load_depth(png, depth_scale=0.01), torch.full((1, 224, 224), FB / 2))
    millimetres = np.full((50, 50), 2000.0)
    assert torch.allclose(load_depth(millimetres, depth_scale=0.001), torch.full((1, 224, 224), FB / 2))


def test_eight_bit_depth_needs_explicit_scale(tmp_path: Path) -> None:
    path = tmp_path / "d8.png"
    Image.fromarray(np.full((50, 50), 200, dtype=np.uint8)).save(path)
    with pytest.raises(InputError, match=re.escape(str(path)) + ".*8-bit.*depth_scale") as info:
        load_depth(path)
    # The advice must be something a CLI user can do (the commands have no depth_scale option)
    # as well as what a Python user can pass; following either gives the same input.
    assert "16-bit PNG in millimetres" in str(info.value) and "float32 .npy in metres" in str(info.value)
    assert "Embedder(options={'depth': {'depth_scale'" in str(info.value) and "\n" not in str(info.value)
    expected = torch.full((1, 224, 224), FB / 2)
    assert torch.allclose(load_depth(path, depth_scale=0.01), expected)
    millimetres = tmp_path / "d16.png"
    Image.fromarray(np.full((50, 50), 200 * 10, dtype=np.uint16)).save(millimetres)  # 200 cm as mm
    assert torch.allclose(load_depth(millimetres), expected)
    metres = tmp_path / "d.npy"
    np.save(metres, np.full((50, 50), 2.0, dtype=np.float32))
    assert torch.allclose(load_depth(metres), expected)


def test_normalize_mean_std() -> None:
    out = load_depth(np.full((224, 224), 2.0), normalize=(FB / 2 - 1.0, 2.0))
    assert torch.allclose(out, torch.full_like(out, 0.5))


def test_batch_shape_and_names() -> None:
    batch = depth([np.full((30, 40), 1.0), MEDIA / "depth_1.png"])
    assert batch.shape == (2, 1, 224, 224)
    with pytest.raises(InputError, match=re.escape("<ndarray #1>")):
        depth([np.full((30, 40), 1.0), np.zeros((30, 40))])


def test_errors_name_the_input(tmp_path: Path) -> None:
    rgb = tmp_path / "colour.png"
    Image.new("RGB", (20, 20), (10, 20, 30)).save(rgb)
    with pytest.raises(InputError, match=re.escape(str(rgb)) + ".*single-channel"):
        load_depth(rgb)
    zeros = png16(tmp_path / "zeros.png", np.zeros((20, 20)))
    with pytest.raises(InputError, match=re.escape(str(zeros)) + ".*no valid depth"):
        load_depth(zeros)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=re.escape(str(junk)) + ".*not a readable depth image"):
        load_depth(junk)
    with pytest.raises(InputError, match="missing.png: no such file"):
        load_depth(tmp_path / "missing.png")
    with pytest.raises(InputError, match="mine: expected a 2-D depth map"):
        load_depth(np.ones((3, 20, 20)), "mine")
    with pytest.raises(InputError, match="empty batch"):
        depth([])
    assert depth(str(MEDIA / "depth_1.png")).shape == (1, 1, 224, 224)  # a single input is a batch of one
    with pytest.raises(InputError, match="focal_baseline must be > 0"):
        load_depth(np.ones((5, 5)), focal_baseline=0)
