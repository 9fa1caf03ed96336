"""Which modality a file holds: extension, magic bytes, image headers and folder names.

Rules (also in docs/search.md), applied in order:

1. Content first when it is recognisable (the first bytes): JPEG/GIF/BMP/WebP/TIFF/PNG are
   pictures, WAV/FLAC/Ogg/MP3 audio, MP4/MOV (ISO BMFF), Matroska/WebM and AVI video
   (an MP4 whose brand is M4A/M4B is audio), `.npy` arrays are classified by shape.
2. Otherwise the extension decides (so a truncated `photo.jpg` is still indexed as an image
   and then reported as unreadable, rather than silently ignored).
3. A picture or array is refined: a 16-bit or float single-channel image (PNG, TIFF) or a
   2-D array is depth; an array shaped (6, T) or (T, 6) is IMU.
4. Name hint: the nearest parent folder named like a modality (`depth/`, `thermal/`,
   `imu/`, ... see HINTS), else a word of the file name (`thermal_0001.png`,
   `scene-depth.png`; words split at non-alphanumerics), overrides step 3 for pictures and
   arrays: 8-bit grayscale frames in `thermal/` are thermal, and 16-bit PNGs in `thermal/`
   are radiometric thermal. Hints never turn audio or video into something else.
5. CSV files are IMU when their header names accelerometer/gyroscope columns (or they sit
   under an IMU folder); anything else is not media (None).
"""
from __future__ import annotations

import ast
import os
import re
import struct
from pathlib import Path

from ..kinds import EXTENSIONS

HINTS = {
    "depth": "depth", "depths": "depth", "disparity": "depth", "depth_maps": "depth",
    "thermal": "thermal", "infrared": "thermal", "ir": "thermal", "flir": "thermal", "lwir": "thermal",
    "imu": "imu", "inertial": "imu", "accelerometer": "imu", "accel": "imu", "gyro": "imu", "sensors": "imu",
}
# Coarse kind by extension, from the one table in bindspace.kinds; .npy and .csv are refined by content.
_BY_EXTENSION = {
    **{ext: kind for kind in ("image", "video", "audio") for ext in EXTENSIONS[kind]},
    ".npy": "array",
    ".csv": "csv",
}
_PICTURE_HINTABLE = ("depth", "thermal")
_HEAD = 512


# A .npy is taken for a depth map only with a map's proportions (see `_map_shaped`).
MIN_MAP_SIDE = 8
MAX_MAP_ASPECT = 4


def folder_hint(path: str | os.PathLike[str]) -> str | None:
    """The modality named by the nearest parent folder, else by a word of the file name, if any."""
    path = Path(path)
    for parent in path.parent.parts[::-1]:
        hint = HINTS.get(parent.lower())
        if hint:
            return hint
    for word in re.split(r"[^a-z0-9]+", path.stem.lower()):
        if word in HINTS:
            return HINTS[word]
    return None


def detect_modality(path: str | os.PathLike[str]) -> str | None:
    """"image", "video", "audio", "depth", "thermal", "imu", or None for files that are not media."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError:
        head = b""
    kind = _sniff(head) or _BY_EXTENSION.get(path.suffix.lower())
    hint = folder_hint(path)
    if kind in ("png", "tiff"):
        kind = "depth" if _single_channel_deep(kind, head, path) else "image"
    if kind == "image" or kind == "depth":
        return hint if hint in _PICTURE_HINTABLE else kind
    if kind == "array":
        return _array_kind(head, hint)
    if kind == "csv":
        return "imu" if hint == "imu" or _imu_header(head) else None
    return kind


def _sniff(head: bytes) -> str | None:
    """A coarse kind from magic bytes: image/png/tiff/audio/video/array, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith((b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head.startswith((b"fLaC", b"OggS", b"ID3", b"FORM")) or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "audio" if brand in (b"M4A ", b"M4B ", b"M4P ") else "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video"
    if head.startswith(b"\x93NUMPY"):
        return "array"
    return None


def _single_channel_deep(kind: str, head: bytes, path: Path) -> bool:
    """16-bit or float single-channel pictures are depth maps."""
    if kind == "png" and len(head) >= 26 and head[12:16] == b"IHDR":
        bit_depth, colour_type = head[24], head[25]
        return colour_type == 0 and bit_depth == 16  # greyscale, 16 bits per sample
    try:
        from PIL import Image

        with Image.open(path) as image:  # reads the header only
            return image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
    except Exception:  # noqa: BLE001 - an unreadable picture stays a picture and is reported later
        return False


def _array_kind(head: bytes, hint: str | None) -> str | None:
    """Classify a .npy array by its header: (6, T)/(T, 6) -> imu, a map-shaped 2-D (or 1-channel 3-D) -> depth."""
    return _array_verdict(head, hint)[0]


def _array_verdict(head: bytes, hint: str | None) -> tuple[str | None, str]:
    """(kind or None, why not) for a .npy array, from its header and its folder's hint."""
    shape = _npy_shape(head)
    if hint in ("depth", "thermal", "imu"):
        return hint, ""
    if shape is None:
        return "depth", ""  # unreadable header: let the depth loader report the problem
    if len(shape) == 2 and 6 in shape and max(shape) > 6:
        return "imu", ""
    if _map_shaped(_spatial(shape)):
        return "depth", ""
    return None, (f"a {shape} array is neither a depth map (H x W, both sides >= {MIN_MAP_SIDE}, at most "
                  f"{MAX_MAP_ASPECT}:1) nor IMU (6 x T); put it in a folder named depth/, thermal/ or imu/ "
                  "to index it as one (embeddings and other arrays are not media)")


def _spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(H, W) of a 2-D array or a one-channel 3-D one ((1, H, W) or (H, W, 1)); () for other shapes."""
    if len(shape) == 2:
        return shape
    if len(shape) == 3 and shape[0] == 1:
        return shape[1:]
    if len(shape) == 3 and shape[2] == 1:
        return shape[:2]
    return ()


def _map_shaped(spatial: tuple[int, ...]) -> bool:
    """A picture's proportions: no side below MIN_MAP_SIDE, neither side over MAX_MAP_ASPECT x the other.

    Arrays of vectors, e.g. a (1, 64) or (10, 1024) embeddings file, are rows of numbers, not maps.
    """
    if not spatial:
        return False
    short, long = min(spatial), max(spatial)
    return short >= MIN_MAP_SIDE and long <= MAX_MAP_ASPECT * short


def why_not_media(path: str | os.PathLike[str]) -> str | None:
    """Why `detect_modality` took no kind for a .npy file (None for other files: they are simply not media)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError:
        return None
    if not head.startswith(b"\x93NUMPY"):
        return None
    kind, why = _array_verdict(head, folder_hint(path))
    return why if kind is None else None


def _npy_shape(head: bytes) -> tuple[int, ...] | None:
    try:
        major = head[6]
        if major == 1:
            (length,) = struct.unpack("<H", head[8:10])
            start = 10
        else:
            (length,) = struct.unpack("<I", head[8:12])
            start = 12
        header = ast.literal_eval(head[start : start + length].decode("latin1"))
        return tuple(int(x) for x in header["shape"])
    except Exception:  # noqa: BLE001
        return None


def _imu_header(head: bytes) -> bool:
    first = head.decode("utf-8", errors="ignore").splitlines()[0:1]
    if not first:
        return False
    names = first[0].lower()
    return any(word in names for word in ("acc", "gyr", "angvel", "angular"))
