"""Images to CLIP-normalised (3, 224, 224) tensors, exactly as the original (SPEC.md, Image).

Pillow is imported by the functions that decode or resize (see `batching`), not with the module.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from .batching import image_decode_errors, is_pil_image, load_batch
from .sources import read_bytes, source_name

if TYPE_CHECKING:
    from PIL import Image

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 224
# Our own decompression-bomb limit, checked from the header before any pixel is decoded.
DEFAULT_MAX_PIXELS = 100_000_000


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """CLIP mean/std normalisation of [0,1] pixels shaped (..., 3, H, W)."""
    mean = torch.tensor(IMAGE_MEAN, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    """A Pillow image from an (H,W), (H,W,1|3|4) uint8 or [0,1] float array."""
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(name, f"array must be (H,W) or (H,W,3), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(name, f"array has no pixels, shape {array.shape}")
    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(name, "array contains NaN or infinity")
        if array.min() < 0 or array.max() > 1:
            raise InputError(name, "float array must hold values in [0, 1]")
        # Quantise to bytes so an array goes through the same Pillow path as a file.
        pixels = np.round(array * 255).astype(np.uint8)
    else:
        raise InputError(name, f"array dtype must be uint8 or float, got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(pixels))


def open_image(item: Any, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a path, bytes or binary file into a loaded Pillow image, with a size guard."""
    from PIL import Image

    data = read_bytes(item, name)  # checks paths: missing, directory, empty
    try:
        with warnings.catch_warnings():
            # We enforce our own limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise InputError(name, f"image is {width}x{height}, more than the limit of {max_pixels} pixels")
            if width == 0 or height == 0:
                raise InputError(name, f"image has no pixels ({width}x{height})")
            img.load()
    except Image.DecompressionBombError as err:  # Pillow's own, larger limit fired in open()
        raise InputError(name, f"image is too large ({err})") from None
    except Image.UnidentifiedImageError:
        raise InputError(name, "not an image (format not recognised)") from None
    except image_decode_errors() as err:
        raise InputError(name, f"cannot decode image ({err})") from None
    return img


def to_pil(item: Any, name: str | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any accepted image input as an RGB Pillow image."""
    name = name or source_name(item)
    if is_pil_image(item):
        img = item
    elif isinstance(item, np.ndarray):
        img = _from_array(item, name)
    elif isinstance(item, torch.Tensor):
        raise InputError(name, "tensors are not accepted; pass a numpy array (H,W,3)")
    else:
        img = open_image(item, name, max_pixels)
    try:
        return _wide_to_8bit(img, name).convert("RGB")
    except image_decode_errors() as err:
        raise InputError(name, f"cannot convert image to RGB ({err})") from None


def _wide_to_8bit(img: Image.Image, name: str) -> Image.Image:
    """16-bit and 32-bit grey images as 8-bit grey, scaled as the thermal loader scales them.

    Pillow's own conversion clips such images at 255 (a 16-bit PNG turns almost all white).
    16-bit values (`I;16*`, and `I` within 0..65535) become round(v / 257), i.e. v / 65535
    of full scale; float images (`F`) must lie in [0, 1] like float arrays. Anything else is
    refused: there is no standard way to show it as 8 bits.
    """
    from PIL import Image

    if not (img.mode.startswith("I;16") or img.mode in ("I", "F")):
        return img
    values = np.asarray(img)
    if img.mode == "F":
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
            raise InputError(name, f"float image with values in [{low:g}, {high:g}], not [0, 1]: "
                                   "save it as an 8- or 16-bit image")
        scaled = np.round(values * 255.0)
    else:
        if values.min() < 0 or values.max() > 65535:
            raise InputError(name, f"32-bit integer image with values in [{values.min()}, {values.max()}], "
                                   "beyond 16 bits: save it as an 8- or 16-bit image")
        scaled = np.round(values.astype(np.float64) / 257.0)
    return Image.fromarray(scaled.astype(np.uint8))


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size` (bicubic, the longer side truncated), then the centred size x size window."""
    from PIL import Image

    width, height = img.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def load_image(item: Any, name: str | None = None, *, size: int = IMAGE_SIZE,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """One image as a normalised float tensor (3, size, size)."""
    # No EXIF orientation handling: the original ignores it, and so must we for parity.
    img = resize_center_crop(to_pil(item, name, max_pixels=max_pixels), size)
    pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())  # (size, size, 3)
    pixels = pixels.permute(2, 0, 1).float().div(255)  # (3, size, size)
    return normalize(pixels)


def image(items: Sequence[Any] | Any, **kwargs: Any) -> torch.Tensor:
    """A batch of images as (N, 3, size, size)."""
    return load_batch("image", items, load_image, **kwargs)
