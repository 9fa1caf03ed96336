"""Thermal loader: bit-depth scaling, colour to luma, min-max / fixed range, resize, errors."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bindspace.errors import InputError
from bindspace.preprocess.thermal import load_thermal, thermal

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"


def full(value: float, size: int = 224) -> torch.Tensor:
    return torch.full((1, size, size), value)


def test_fixture_png_scaled_to_unit_range() -> None:
    raw = np.asarray(Image.open(MEDIA / "thermal_1.png")) / 255.0
    out = load_thermal(MEDIA / "thermal_1.png")
    assert out.shape == (1, 224, 224) and out.dtype == torch.float32
    assert out.min() >= raw.min() - 1e-6 and out.max() <= raw.max() + 1e-6
    assert abs(out.mean().item() - raw.mean()) < 0.05


def test_eight_and_sixteen_bit_scaling(tmp_path: Path) -> None:
    Image.fromarray(np.full((240, 320), 128, dtype=np.uint8)).save(tmp_path / "t8.png")
    Image.fromarray(np.full((240, 320), 30000, dtype=np.uint16)).save(tmp_path / "t16.png")
    Image.fromarray(np.full((240, 320), 30000, dtype=np.uint16)).save(tmp_path / "t16.tiff")
    assert torch.allclose(load_thermal(tmp_path / "t8.png"), full(128 / 255))
    assert torch.allclose(load_thermal(tmp_path / "t16.png"), full(30000 / 65535))
    assert torch.allclose(load_thermal(tmp_path / "t16.tiff"), full(30000 / 65535))
    assert torch.allclose(load_thermal(np.full((30, 30), 30000, dtype=np.uint16)), full(30000 / 65535))


def test_jpeg_bytes_and_file_objects(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((100, 150), 200, dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    assert torch.allclose(load_thermal(data), full(200 / 255), atol=2 / 255)
    assert torch.allclose(load_thermal(io.BytesIO(data)), full(200 / 255), atol=2 / 255)


def test_rgb_becomes_luma_for_images_and_arrays() -> None:
    colour = (200, 40, 90)
    luma = (0.299 * 200 + 0.587 * 40 + 0.114 * 90) / 255
    from_image = load_thermal(Image.new("RGB", (64, 64), colour))
    from_array = load_thermal(np.tile(np.array(colour, dtype=np.uint8), (64, 64, 1)))
    assert torch.allclose(from_image, full(luma), atol=1 / 255)
    assert torch.allclose(from_array, full(luma), atol=1 / 255)


def test_minmax_and_fixed_range() -> None:
    ramp = np.tile(np.linspace(10.0, 20.0, 224), (224, 1))  # e.g. degrees Celsius
    minmax = load_thermal(ramp, scale="minmax")[0]
    assert minmax.min() == 0 and minmax.max() == 1
    fixed = load_thermal(ramp, scale=(0.0, 40.0))[0]
    assert torch.allclose(fixed[0], torch.from_numpy(ramp[0] / 40).float())
    clipped = load_thermal(ramp, scale=(12.0, 18.0))[0]
    assert clipped[0, 0] == 0 and clipped[0, -1] == 1
    assert torch.equal(load_thermal(np.full((50, 50), 7.0), scale="minmax"), full(0.0))


def test_mean_std() -> None:
    out = load_thermal(np.full((224, 224), 0.75, dtype=np.float32), mean=0.5, std=0.5)
    assert torch.allclose(out, full(0.5))


def test_resize_shorter_side_then_centre_crop() -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 224, dtype=np.float32), (112, 1))  # (112, 224)
    out = load_thermal(ramp, size=112)[0]  # no resize: a plain centre crop of columns 56..168
    assert out.shape == (112, 112)
    assert torch.allclose(out[0], torch.from_numpy(ramp[0, 56:168]))
    upscaled = load_thermal(ramp)[0]  # (112, 224) -> (224, 448) -> crop
    assert upscaled.shape == (224, 224)
    assert (upscaled[:, 1:] >= upscaled[:, :-1] - 1e-6).all(), "a ramp stays a ramp"
    assert abs(upscaled[:, 111:113].mean().item() - 0.5) < 0.01


def test_bicubic_overshoot_is_clamped() -> None:
    checker = (np.indices((300, 300)).sum(axis=0) // 7 % 2).astype(np.uint8) * 255
    out = load_thermal(checker)
    assert out.min() >= 0 and out.max() <= 1


def test_batch() -> None:
    batch = thermal([MEDIA / "thermal_1.png", np.zeros((10, 10), dtype=np.uint8)])
    assert batch.shape == (2, 1, 224, 224)


def test_errors_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"<ndarray>.*not \[0, 1\].*scale="):
        load_thermal(np.full((10, 10), 30.0))
    with pytest.raises(InputError, match="<ndarray>.*no known bit depth"):
        load_thermal(np.full((10, 10), 3, dtype=np.int64))
    with pytest.raises(InputError, match="cam: contains NaN"):
        load_thermal(np.full((10, 10), np.nan), "cam")
    with pytest.raises(InputError, match="cam: expected a one-channel image"):
        load_thermal(np.zeros((2, 10, 10)), "cam")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(InputError, match=re.escape(str(junk)) + ".*not a readable image"):
        load_thermal(junk)
    with pytest.raises(InputError, match="high > low"):
        load_thermal(np.zeros((10, 10)), scale=(5.0, 5.0))
    with pytest.raises(InputError, match="scale must be"):
        load_thermal(np.zeros((10, 10)), scale="percentile")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="<ndarray #1>: contains NaN"):
        thermal([np.zeros((10, 10)), np.full((10, 10), np.inf)])
    with pytest.raises(InputError, match="empty batch"):
        thermal([])
