"""Thermal images to the thermal encoder's input: one-channel maps (1, size, size).

The original release ships no thermal loader; this is our own documented convention
(docs/inputs.md, "Thermal"). In short: one channel (colour converted to luma), scaled
to [0, 1] by bit depth (or min-max, or a fixed range), shorter side resized to `size`
with antialiased bicubic, centre crop, then (x - mean) / std with mean 0, std 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .batching import center_crop, load_batch, read_array, shorter_side_to
from .sources import Source, source_name

if TYPE_CHECKING:  # Pillow is imported where an image is decoded (batching.read_array)
    from PIL import Image

    ThermalInput = Source | Image.Image | np.ndarray | torch.Tensor

Scale = Literal["bitdepth", "minmax"] | tuple[float, float]

# ITU-R 601-2 luma, the weights Pillow's convert("L") uses, so arrays and images agree.
LUMA = (0.299, 0.587, 0.114)


def load_thermal(
    item: ThermalInput,
    name: str | None = None,
    *,
    size: int = 224,
    scale: Scale = "bitdepth",
    mean: float = 0.0,
    std: float = 1.0,
) -> torch.Tensor:
    """Load one thermal image as a float32 tensor of shape (1, size, size)."""
    name = name or source_name(item)
    if size < 1:
        raise InputError(name, f"size must be a positive integer, got {size}")
    if not std > 0:
        raise InputError(name, f"std must be > 0, got {std}")
    unit = _to_unit_range(_read_array(item, name), name, scale)
    out = _resize_crop(torch.from_numpy(unit), size)
    return ((out - mean) / std).unsqueeze(0)  # (size, size) -> (1, size, size)


def thermal(items: Sequence[ThermalInput], **options: Any) -> torch.Tensor:
    """Load several thermal images into one (N, 1, size, size) batch; options as for load_thermal."""
    return load_batch("thermal", items, load_thermal, **options)


def _read_array(item: ThermalInput, name: str) -> np.ndarray:
    """Decode any supported input into a 2-D array of raw intensities."""
    return _one_channel(read_array(item, name, _image_array, "image (PNG/TIFF/JPEG)"), name)


def _image_array(image: Image.Image, name: str) -> np.ndarray:
    """Pixel values of a PIL image; 8/16-bit grey and float stay, everything else becomes luma."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)  # native byte order for 16-bit
    if image.mode == "I":
        # Pillow's 32-bit mode usually holds 16-bit PNG/TIFF data: treat it as 16-bit when
        # it fits; otherwise it stays int32, which only 'minmax' or (low, high) can scale.
        values = np.asarray(image)
        fits = values.size == 0 or (values.min() >= 0 and values.max() <= 65535)
        return values.astype(np.uint16) if fits else values
    if image.mode in ("L", "F"):
        return np.asarray(image)
    try:
        return np.asarray(image.convert("L"))
    except (ValueError, OSError) as exc:
        raise InputError(name, f"cannot convert image mode {image.mode} to one channel ({exc})") from None


def _one_channel(array: np.ndarray, name: str) -> np.ndarray:
    """Reduce (H,W), (1,H,W), (H,W,1), (H,W,3) or (H,W,4) arrays to (H,W)."""
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]  # (1, H, W) -> (H, W)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]  # (H, W, 1) -> (H, W)
    elif array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype.kind in "uif":
        rgb = array[:, :, :3].astype(np.float64)  # alpha, if any, is dropped
        luma = rgb @ np.asarray(LUMA)  # (H, W, 3) -> (H, W)
        if array.dtype.kind in "ui":
            # Keep the integer dtype so bit-depth scaling still knows the range.
            limits = np.iinfo(array.dtype)
            luma = np.clip(np.round(luma), limits.min, limits.max).astype(array.dtype)
        array = luma
    if array.ndim != 2:
        raise InputError(name, f"expected a one-channel image (H, W) or RGB (H, W, 3), got shape {tuple(array.shape)}")
    if array.size == 0:
        raise InputError(name, f"empty image (shape {tuple(array.shape)})")
    return array


def _to_unit_range(raw: np.ndarray, name: str, scale: Scale) -> np.ndarray:
    """Scale raw intensities to [0, 1] (float32) by bit depth, min-max or a fixed range."""
    if raw.dtype.kind not in "uif":
        raise InputError(name, f"unsupported data type {raw.dtype} (need integers or floats)")
    values = raw.astype(np.float64)
    if not np.isfinite(values).all():
        raise InputError(name, "contains NaN or infinite values")
    if scale == "bitdepth":
        if raw.dtype.kind == "f":
            if values.min() < 0 or values.max() > 1:
                raise InputError(name, f"float values span [{values.min():g}, {values.max():g}], not [0, 1]; "
                                 "pass scale='minmax' or scale=(low, high) (e.g. a temperature range)")
            return values.astype(np.float32)
        if raw.dtype.kind != "u" or raw.dtype.itemsize > 2:
            raise InputError(name, f"integer data of type {raw.dtype} has no known bit depth; use uint8/uint16 "
                             "or pass scale='minmax' or scale=(low, high)")
        top = 2.0 ** (8 * raw.dtype.itemsize) - 1  # 255 or 65535
        return (values / top).astype(np.float32)
    if scale == "minmax":
        low, high = float(values.min()), float(values.max())
        if high == low:
            return np.zeros(values.shape, dtype=np.float32)  # a constant image carries no contrast
    elif isinstance(scale, tuple) and len(scale) == 2:
        low, high = float(scale[0]), float(scale[1])
        if not high > low:
            raise InputError(name, f"scale=(low, high) needs high > low, got {scale}")
    else:
        raise InputError(name, f"scale must be 'bitdepth', 'minmax' or (low, high), got {scale!r}")
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _resize_crop(values: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to `size` (antialiased bicubic, clamped to [0, 1]), then centre crop."""
    height, width = values.shape
    new_h, new_w = shorter_side_to(height, width, size)
    if (new_h, new_w) != (height, width):
        batch = values[None, None]  # (H, W) -> (1, 1, H, W)
        resized = F.interpolate(batch, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        # Bicubic overshoots at sharp edges; keep the documented [0, 1] range.
        values = resized[0, 0].clamp(0.0, 1.0)
    return center_crop(values, size)

