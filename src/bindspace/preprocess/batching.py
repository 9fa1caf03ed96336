"""Shared helpers of the per-modality loaders: batches, and arrays that may come as .npy or images.

Pillow is imported when an image is decoded, not with this module: a text-only process (a
`bindspace search "a dog"`) never loads it.
"""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from .sources import read_bytes, source_name

if TYPE_CHECKING:
    from PIL import Image

NPY_MAGIC = b"\x93NUMPY"
_SINGLE = (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, torch.Tensor)


def image_decode_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for corrupt, truncated or absurdly large (decompression bomb) files."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def is_pil_image(item: Any) -> bool:
    """Whether `item` is a Pillow image; Pillow is not imported for this (a caller's image has loaded it)."""
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(item, module.Image)


def load_batch(kind: str, items: Any, load_one: Callable[..., torch.Tensor], **options: Any) -> torch.Tensor:
    """Stack `load_one(item, name, **options)` over a list of inputs; a single input makes a batch of one."""
    if isinstance(items, _SINGLE) or is_pil_image(items) or hasattr(items, "read"):
        items = [items]
    items = list(items)
    if not items:
        raise InputError(kind, "empty batch: give at least one input")
    return torch.stack([load_one(item, source_name(item, i), **options) for i, item in enumerate(items)])


def read_array(item: Any, name: str, image_array: Callable[[Image.Image, str], np.ndarray], what: str) -> np.ndarray:
    """Raw values from a tensor, an array, a PIL image, or the bytes of a .npy file or an image file."""
    if isinstance(item, torch.Tensor):
        return item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        return item
    if is_pil_image(item):
        return image_array(item, name)
    data = read_bytes(item, name)
    if data.startswith(NPY_MAGIC):
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(name, f"unreadable .npy array ({exc})") from None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image_array(image, name)
    except image_decode_errors() as exc:
        raise InputError(name, f"not a readable {what} or .npy array ({exc})") from None


def shorter_side_to(height: int, width: int, size: int) -> tuple[int, int]:
    """Output (H, W) with the shorter side equal to `size`, as for images."""
    if height <= width:
        return size, max(size, int(size * width / height))
    return max(size, int(size * height / width)), size


def center_crop(values: torch.Tensor, size: int) -> torch.Tensor:
    """The centred size x size window of a (..., H, W) tensor (offsets rounded as for images)."""
    height, width = values.shape[-2:]
    top = int(round((height - size) / 2))
    left = int(round((width - size) / 2))
    return values[..., top : top + size, left : left + size].contiguous()
