"""Depth, thermal and IMU inputs read the way Weaviate's multi2vec-bind container reads them.

Existing Weaviate collections hold vectors made this way, so `/vectorize` must match it,
quirks included (our own `/v1/embed` keeps the conventions of docs/inputs.md):

- depth and thermal: any image, converted to 8-bit grayscale, shorter side resized to the
  tower's input size (bicubic), centre-cropped, scaled to [0, 1] and normalised with
  mean 0.48145466 and std 0.26862954 -> (1, size, size);
- IMU: a CSV whose first row is skipped and whose other rows are 6 numbers (T, 6). The
  container *reshapes* that buffer to (6, T) (it does not transpose it: channels end up
  interleaved); `layout="transpose"` gives the correct (6, T) instead. Then zero-padded at
  the end, or truncated, to the tower's length.

The container also reads a media item that is a file path (its smoke tests send IMU CSVs as
paths relative to its working directory). A path is never valid base64 ('.', '_', '-' are
outside the alphabet), so the two cannot be confused; `read_allowed_file` reads one only inside
the folders the server was started with (`--weaviate-paths`), since reading any path a request
names would disclose every file the server can read.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..fsio import real_path_inside
from ..preprocess.image import open_image, resize_center_crop
from .data_url import has_data_scheme
from .errors import TooLarge

GRAY_MEAN = 0.48145466
GRAY_STD = 0.26862954
IMU_LAYOUTS = ("reshape", "transpose")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]*", re.ASCII)  # what decode_base64 accepts (after a data: prefix)


def is_path_like(item: str) -> bool:
    """True for an item that cannot be base64 (nor a base64 data URL): the container reads it as a file path."""
    return not has_data_scheme(item) and _BASE64_TEXT.fullmatch(item) is None


def read_allowed_file(item: str, name: str, roots: Sequence[str], max_bytes: int) -> bytes:
    """The bytes of file path `item` (relative to the working directory) if it lies inside one of `roots`."""
    if not roots:
        raise InputError(name, "not valid base64; it looks like a file path, and this server reads files only "
                         "from folders allowed with --weaviate-paths DIR")
    try:
        # `..` and symlinks are resolved first: a link inside a root pointing outside it is refused.
        path = real_path_inside(os.path.join(os.getcwd(), item), roots)
    except (ValueError, OSError):  # NUL bytes, over-long names
        raise InputError(name, "not valid base64, nor a usable file path") from None
    if path is None:
        # Said the same way whether or not the file exists: nothing outside the roots is disclosed.
        raise InputError(name, f"file path {item[:200]!r} is outside the folders allowed by --weaviate-paths")
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a folder, or a FIFO/device whose open() would block or never end
            raise InputError(name, f"{item[:200]!r} is not a regular file")
        if info.st_size > max_bytes:
            raise TooLarge(f"{name}: file is larger than the limit of {max_bytes} bytes")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError(name, f"no such file: {item[:200]!r}") from None
    except OSError as err:
        raise InputError(name, f"cannot read {item[:200]!r} ({err.strerror or err})") from None
    if len(data) > max_bytes:
        raise TooLarge(f"{name}: file is larger than the limit of {max_bytes} bytes")
    if not data:
        raise InputError(name, f"{item[:200]!r} is empty (0 bytes)")
    return data


def load_gray(data: bytes, name: str, *, size: int) -> torch.Tensor:
    """Depth/thermal as the container reads them: any image -> normalised grayscale (1, size, size)."""
    try:
        gray = open_image(data, name).convert("L")  # Pillow's own "L" conversion, as the container
    except (OSError, ValueError) as err:
        raise InputError(name, f"cannot decode image ({err})") from None
    gray = resize_center_crop(gray, size)
    pixels = torch.from_numpy(np.asarray(gray, dtype=np.uint8).copy()).float().div(255)  # (size, size)
    return ((pixels - GRAY_MEAN) / GRAY_STD).unsqueeze(0)  # (1, size, size)


def load_imu_csv(data: bytes, name: str, *, length: int, layout: str = "reshape") -> torch.Tensor:
    """IMU as the container reads it: CSV, header row skipped, (T, 6) -> (6, length) by `layout`."""
    if layout not in IMU_LAYOUTS:
        raise ValueError(f"layout must be one of {IMU_LAYOUTS}, got {layout!r}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(name, "IMU data must be UTF-8 CSV text") from None
    rows = [line for line in text.splitlines()[1:] if line.strip()]  # the first row is a header, whatever it says
    if not rows:
        raise InputError(name, "CSV has no data rows (the first row is read as a header)")
    values = np.empty((len(rows), 6), dtype=np.float32)  # (T, 6)
    for number, line in enumerate(rows, 2):
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != 6:
            raise InputError(name, f"line {number} has {len(cells)} fields; IMU CSV rows need 6 "
                             "(acc x,y,z, gyro x,y,z)")
        try:
            values[number - 2] = [float(cell) for cell in cells]
        except ValueError:
            raise InputError(name, f"line {number}: cannot read {line.strip()[:60]!r} as 6 numbers") from None
    if not np.isfinite(values).all():
        raise InputError(name, "contains NaN or infinite values")
    if layout == "reshape":
        channels = values.reshape(6, -1)  # (T, 6) buffer read as (6, T): interleaves channels, as the container does
    else:
        channels = values.T  # (T, 6) -> (6, T)
    out = np.zeros((6, length), dtype=np.float32)
    count = min(length, channels.shape[1])
    out[:, :count] = channels[:, :count]
    return torch.from_numpy(out)
