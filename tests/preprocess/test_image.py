"""Image preprocessing: parity with the original pixels, every input kind, and guarded failures."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bindspace.errors import InputError
from bindspace.preprocess.image import IMAGE_MEAN, IMAGE_STD, image, load_image, normalize

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"
GOLDENS = Path(__file__).resolve().parents[1] / "fixtures" / "goldens_tiny.safetensors"
NAMES = ["image_1.jpg", "image_2.png", "image_3.png"]  # sorted, as the goldens were made


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares the given size but holds no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(90, 130, 3), dtype=np.uint8)


def test_matches_original_pixels() -> None:
    golden = load_file(str(GOLDENS))["vision.pixels"]
    pixels = image([MEDIA / n for n in NAMES])
    assert pixels.shape == (3, 3, 224, 224) and pixels.dtype == torch.float32
    assert (pixels - golden).abs().max().item() <= 1e-5


def test_every_input_kind_gives_the_same_tensor(rgb: np.ndarray, tmp_path: Path) -> None:
    data = _png_bytes(rgb)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    expected = load_image(path)
    assert expected.shape == (3, 224, 224)
    assert torch.equal(load_image(str(path)), expected)
    assert torch.equal(load_image(data), expected)
    assert torch.equal(load_image(io.BytesIO(data)), expected)
    assert torch.equal(load_image(Image.open(io.BytesIO(data))), expected)
    assert torch.equal(load_image(rgb), expected)
    assert torch.equal(load_image(rgb.astype(np.float64) / 255), expected)  # floats in [0,1]


def test_grayscale_and_alpha_become_rgb(rgb: np.ndarray) -> None:
    gray = rgb[:, :, 0]
    out = load_image(gray)
    assert out.shape == (3, 224, 224)
    # Equal channels before normalisation.
    raw = out * torch.tensor(IMAGE_STD).view(3, 1, 1) + torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    assert torch.allclose(raw[0], raw[1], atol=1e-6) and torch.allclose(raw[1], raw[2], atol=1e-6)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert torch.equal(load_image(rgba), load_image(rgb))  # alpha dropped, as the original


@pytest.mark.parametrize("shape", [(300, 100), (100, 300), (224, 224), (10, 11)])
def test_shorter_side_resize_then_centre_crop(shape: tuple[int, int]) -> None:
    array = np.zeros(shape + (3,), np.uint8)
    array[:, :, 1] = 255
    out = load_image(array, size=32)
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out[1], torch.full((32, 32), (1 - IMAGE_MEAN[1]) / IMAGE_STD[1]), atol=1e-5)


def test_centre_crop_offsets_follow_round() -> None:
    # 448x224 -> resized to 448x224 (no change), crop offset round(224/2)=112 along width.
    array = np.zeros((224, 448, 3), np.uint8)
    array[:, 112:336] = 255
    out = load_image(array)
    assert torch.allclose(out[0], torch.full((224, 224), (1 - IMAGE_MEAN[0]) / IMAGE_STD[0]), atol=1e-5)


def test_normalize_helper_broadcasts_over_leading_axes() -> None:
    ones = torch.ones(4, 2, 3, 5, 5)
    out = normalize(ones)
    for c in range(3):
        assert torch.allclose(out[:, :, c], torch.tensor((1 - IMAGE_MEAN[c]) / IMAGE_STD[c]))


def test_batch_shape(rgb: np.ndarray) -> None:
    assert image([rgb, rgb[:50]], size=64).shape == (2, 3, 64, 64)
    assert image(MEDIA / NAMES[0]).shape == (1, 3, 224, 224)  # a single path is a batch of one


# ---- failures: each is an InputError that names the input ---------------------------


def _assert_input_error(item: object, label: str, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as info:
        load_image(item, **kwargs)
    assert label in str(info.value)
    return info.value


def test_missing_empty_and_directory(tmp_path: Path) -> None:
    _assert_input_error(tmp_path / "nope.jpg", "nope.jpg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _assert_input_error(empty, "empty.png")
    _assert_input_error(tmp_path, str(tmp_path))
    _assert_input_error(b"", "<bytes>")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture\n" * 10)
    err = _assert_input_error(fake, "notes.jpg")
    assert "not an image" in err.problem


def test_corrupt_bytes_are_named() -> None:
    err = _assert_input_error(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, "upload.png", name="upload.png")
    assert err.source == "upload.png"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(rgb: np.ndarray, tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _assert_input_error(path, "cut.")


def test_decompression_bomb_checked_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(12_000, 12_000))  # 144 Mpx declared in a 60-byte file
    err = _assert_input_error(bomb, "bomb.png")
    assert "12000x12000" in err.problem
    bomb.write_bytes(_png_header(100_000, 100_000))  # past Pillow's own hard limit too
    _assert_input_error(bomb, "bomb.png")


def test_pixel_limit_is_configurable(rgb: np.ndarray) -> None:
    _assert_input_error(_png_bytes(rgb), "small.png", name="small.png", max_pixels=1000)
    assert load_image(_png_bytes(rgb), max_pixels=rgb.shape[0] * rgb.shape[1]).shape == (3, 224, 224)


@pytest.mark.parametrize("array", [
    np.zeros((4, 4, 2), np.uint8),
    np.zeros((4, 4, 3, 1), np.uint8),
    np.zeros((0, 4, 3), np.uint8),
    np.full((4, 4, 3), np.nan, np.float32),
    np.full((4, 4, 3), np.inf, np.float64),
    np.full((4, 4, 3), 2.0, np.float32),
    np.zeros((4, 4, 3), np.int64),
])
def test_bad_arrays(array: np.ndarray) -> None:
    _assert_input_error(array, "frame-7", name="frame-7")


def test_unsupported_type_and_empty_batch() -> None:
    _assert_input_error(12345, "int")
    _assert_input_error(torch.zeros(3, 4, 4), "tensor")
    with pytest.raises(InputError):
        image([])


def test_batch_error_names_the_bad_item(rgb: np.ndarray, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.jpg"):
        image([rgb, bad])


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_is_scaled_to_8bit_not_clipped(fmt: str) -> None:
    """Issue 16: a 16-bit grey PNG came out 99.5 % white (Pillow clips at 255)."""
    levels = np.arange(256, dtype=np.uint8)
    grey8 = np.tile(levels, (256, 1))  # (256, 256): every level once per row
    grey16 = grey8.astype(np.uint16) * 257  # the same picture in 16 bits (v·257 spans 0..65535)
    data16 = _encoded(grey16, fmt)
    assert Image.open(io.BytesIO(data16)).mode.startswith("I;16")
    torch.testing.assert_close(load_image(data16), load_image(_encoded(grey8, "PNG")), atol=0, rtol=0)


def test_32bit_and_float_grey_images() -> None:
    grey8 = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    expected = load_image(_encoded(grey8, "PNG"))
    as_int32 = _encoded(grey8.astype(np.int32) * 257, "TIFF")
    assert Image.open(io.BytesIO(as_int32)).mode == "I"
    torch.testing.assert_close(load_image(as_int32), expected, atol=0, rtol=0)
    as_float = _encoded(grey8.astype(np.float32) / 255, "TIFF")
    torch.testing.assert_close(load_image(as_float), expected, atol=0, rtol=0)
    with pytest.raises(InputError, match="beyond 16 bits"):
        load_image(_encoded(np.full((8, 8), 70000, np.int32), "TIFF"), "big.tif")
    with pytest.raises(InputError, match=r"big.tif: float image with values in \[3, 3\], not \[0, 1\]"):
        load_image(_encoded(np.full((8, 8), 3.0, np.float32), "TIFF"), "big.tif")
