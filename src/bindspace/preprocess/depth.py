"""Depth maps to the depth encoder's input: disparity maps (1, size, size).

The original release ships no depth loader; this is our own documented convention
(docs/inputs.md, "Depth"). In short: read depth in metres, convert valid pixels to
disparity = focal_baseline / depth, set invalid pixels to 0, resize the shorter side
to `size` with a mask-aware bilinear filter, centre crop, optionally normalise.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .batching import center_crop, load_batch, read_array, shorter_side_to
from .sources import Source, source_name

if TYPE_CHECKING:  # Pillow is imported where an image is decoded (batching.read_array)
    from PIL import Image

    DepthInput = Source | Image.Image | np.ndarray | torch.Tensor

# Kinect v1 constants as commonly used for NYU Depth v2 / SUN RGB-D data: the focal
# length (px, at 640x480) of the colour camera that the depth maps are registered to,
# and the ~7.5 cm projector-to-IR-camera baseline. Other sensors: pass your own.
KINECT_FOCAL_PX = 518.857901
KINECT_BASELINE_M = 0.075
DEFAULT_FOCAL_BASELINE = KINECT_FOCAL_PX * KINECT_BASELINE_M  # ~38.914 m*px
MILLIMETRES = 0.001  # metres per unit of 16-bit depth PNGs (Kinect, NYU, SUN RGB-D style)

_SINGLE_CHANNEL_MODES = {"L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}



def load_depth(
    item: DepthInput,
    name: str | None = None,
    *,
    size: int = 224,
    depth_scale: float | None = None,
    focal_baseline: float = DEFAULT_FOCAL_BASELINE,
    max_depth: float | None = None,
    normalize: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Load one depth map as a float32 disparity map of shape (1, size, size)."""
    name = name or source_name(item)
    _check_options(name, size, depth_scale, focal_baseline, max_depth, normalize)
    metres = _to_metres(_read_array(item, name), name, depth_scale)
    disparity, valid = _to_disparity(metres, name, focal_baseline, max_depth)
    out = _resize_crop_masked(disparity, valid, size)
    if normalize is not None:
        mean, std = normalize
        out = (out - mean) / std
    return out.unsqueeze(0)  # (size, size) -> (1, size, size)


def depth(items: Sequence[DepthInput], **options: Any) -> torch.Tensor:
    """Load several depth maps into one (N, 1, size, size) batch; options as for load_depth."""
    return load_batch("depth", items, load_depth, **options)


def _check_options(
    name: str,
    size: int,
    depth_scale: float | None,
    focal_baseline: float,
    max_depth: float | None,
    normalize: tuple[float, float] | None,
) -> None:
    """Reject option values that would silently produce garbage."""
    if size < 1:
        raise InputError(name, f"size must be a positive integer, got {size}")
    if depth_scale is not None and not depth_scale > 0:
        raise InputError(name, f"depth_scale must be > 0 metres per unit, got {depth_scale}")
    if not focal_baseline > 0:
        raise InputError(name, f"focal_baseline must be > 0, got {focal_baseline}")
    if max_depth is not None and not max_depth > 0:
        raise InputError(name, f"max_depth must be > 0 metres, got {max_depth}")
    if normalize is not None and not normalize[1] > 0:
        raise InputError(name, f"normalize std must be > 0, got {normalize[1]}")


def _read_array(item: DepthInput, name: str) -> np.ndarray:
    """Decode any supported input into a 2-D array of raw depth values."""
    return _as_2d(read_array(item, name, _image_array, "depth image (PNG/TIFF)"), name)


def _image_array(image: Image.Image, name: str) -> np.ndarray:
    """The pixel values of a single-channel PIL image; colour images are refused."""
    if image.mode not in _SINGLE_CHANNEL_MODES:
        raise InputError(
            name,
            f"depth must be a single-channel image (16-bit PNG/TIFF), got mode {image.mode}; "
            "colour-mapped depth cannot be converted back to distances",
        )
    return np.asarray(image)


def _as_2d(array: np.ndarray, name: str) -> np.ndarray:
    """Accept (H, W), (1, H, W) and (H, W, 1); anything else is an error."""
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[2]):
        array = np.squeeze(array, axis=0 if array.shape[0] == 1 else 2)  # (1,H,W) | (H,W,1) -> (H,W)
    if array.ndim != 2:
        raise InputError(name, f"expected a 2-D depth map (H, W), got shape {tuple(array.shape)}")
    if array.size == 0:
        raise InputError(name, f"empty depth map (shape {tuple(array.shape)})")
    return array


def _to_metres(raw: np.ndarray, name: str, depth_scale: float | None) -> np.ndarray:
    """Convert raw values to metres (float64): integers are sensor units, floats are metres."""
    kind = raw.dtype.kind
    if kind in "ui":
        if raw.dtype.itemsize == 1 and depth_scale is None:
            # 8-bit depth is always some lossy, dataset-specific quantisation: guessing
            # a unit would give plausible-looking but wrong disparities.
            raise InputError(
                name,
                "8-bit depth has no standard unit; convert it to a 16-bit PNG in millimetres or a "
                "float32 .npy in metres (what the bindspace commands read), or from Python give its unit "
                "as depth_scale= metres per unit (Embedder(options={'depth': {'depth_scale': ...}}))",
            )
        scale = MILLIMETRES if depth_scale is None else depth_scale
    elif kind == "f":
        scale = 1.0 if depth_scale is None else depth_scale
    else:
        raise InputError(name, f"unsupported depth data type {raw.dtype} (need integers or floats)")
    return raw.astype(np.float64) * scale


def _to_disparity(
    metres: np.ndarray, name: str, focal_baseline: float, max_depth: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Disparity (float32) and validity mask; invalid pixels get disparity 0."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(metres) & (metres > 0)
        if max_depth is not None:
            valid &= metres <= max_depth
    if not valid.any():
        raise InputError(name, "no valid depth pixels (all are 0, negative, NaN, infinite or beyond max_depth)")
    disparity = np.zeros(metres.shape, dtype=np.float64)
    disparity[valid] = focal_baseline / metres[valid]
    return disparity.astype(np.float32), valid


def _resize_crop_masked(disparity: np.ndarray, valid: np.ndarray, size: int) -> torch.Tensor:
    """Shorter side to `size` with mask-normalised bilinear, then centre crop to (size, size)."""
    values = torch.from_numpy(disparity)
    mask = torch.from_numpy(valid).to(torch.float32)
    height, width = values.shape
    new_h, new_w = shorter_side_to(height, width, size)
    if (new_h, new_w) != (height, width):
        # Filter value*mask and mask together and divide: each output pixel is a weighted
        # mean of VALID input pixels only, so holes never drag edges towards 0. Pixels
        # that are mostly holes (mask weight < 0.5) stay holes.
        stacked = torch.stack([values * mask, mask]).unsqueeze(0)  # (1, 2, H, W)
        resized = F.interpolate(stacked, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        weighted, weight = resized[0, 0], resized[0, 1]
        keep = weight >= 0.5
        values = torch.where(keep, weighted / weight.clamp_min(1e-12), torch.zeros_like(weighted))
    return center_crop(values, size)

