"""Request media to model inputs (base64 and uploads, with limits) and indexed files to thumbnails."""
from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch
from PIL import Image

from ..embedding.loading import DECODE_ERRORS, item_loader, vision_kind_of
from ..errors import InputError, first_line
from ..kinds import KINDS as _KINDS
from ..kinds import tower_of, vision_kind
from ..modality import Modality
from .data_url import DATA_URL_FORM, has_data_scheme, parse_data_url
from .errors import ApiError, TooLarge

# Kinds a request may name: the table's kinds, plus "vision" ("image or video, whichever the bytes are").
KINDS: tuple[str, ...] = (*_KINDS, "vision")
THUMBNAIL_SIZE = 320
# A thumbnail request must not become a decompression bomb either.
THUMBNAIL_MAX_PIXELS = 100_000_000

_EXTRA_TYPES = {
    ".npy": "application/octet-stream",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".csv": "text/csv",
}


def parse_kind(name: str) -> str:
    """A request's modality name, lower-cased and checked ("vision" kept: resolved per item by its bytes)."""
    from ..kinds import parse_kind as parse_table_kind

    try:
        return parse_table_kind(name)
    except ValueError:
        raise ApiError(f"unknown modality {name!r} (choose from {', '.join(KINDS)})", status=422,
                       kind="bad_modality") from None


def data_url_type(text: str) -> str | None:
    """The media type of a base64 `data:` URL, lower-cased ("image/png"), or None when `text` is not one."""
    url = parse_data_url(text)
    return url.media_type if url else None


def decode_base64(data: str, name: str, max_bytes: int) -> bytes:
    """Bytes from base64 text (a `data:` URL prefix is allowed); over `max_bytes` -> 413."""
    if not isinstance(data, str):
        raise InputError(name, "expected a base64 string")
    text = data.strip()
    if has_data_scheme(text):
        url = parse_data_url(text)
        if url is None:
            raise InputError(name, f"a data: URL must read {DATA_URL_FORM}")
        text = url.payload
    # 4 base64 characters carry 3 bytes: refuse before decoding anything huge.
    if len(text) // 4 * 3 > max_bytes + 3:
        raise TooLarge(f"{name}: item is larger than the limit of {max_bytes} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(name, "not valid base64") from None
    if not raw:
        raise InputError(name, "empty input (0 bytes)")
    if len(raw) > max_bytes:
        raise TooLarge(f"{name}: item is larger than the limit of {max_bytes} bytes")
    return raw


# (resolved kind) -> loader keyword arguments that fit the model's stem (sizes, lengths).
OptionsFor = Callable[[str], Mapping[str, Any]]


def load_media(kind: str, data: bytes, name: str, options_for: OptionsFor | None = None
               ) -> tuple[Modality, str, torch.Tensor]:
    """One media item -> (tower, resolved kind, model input without batch axis); InputError if bad."""
    if kind == "vision":
        # Request bytes have no file name, so "vision" is decided by content, not by extension.
        kind = vision_kind_of(data)
    options = dict(options_for(kind)) if options_for is not None else {}
    try:
        tensor = item_loader(kind)(data, name, **options)
    except InputError:
        raise
    except DECODE_ERRORS as err:  # anything else is a bug or a resource problem: a 500 with its traceback
        raise InputError(name, f"cannot decode {kind} ({type(err).__name__}: {_short(err)})") from None
    return tower_of(kind), kind, tensor


def tokenize_text(text: str, name: str, max_chars: int, context_length: int = 77) -> torch.Tensor:
    """One text as token ids (context_length,); over `max_chars` characters -> 413."""
    from ..preprocess.tokenizer import tokenize

    if not isinstance(text, str):
        raise InputError(name, "expected a string")
    if len(text) > max_chars:
        raise TooLarge(f"{name}: text has {len(text)} characters, more than the limit of {max_chars}")
    return tokenize([text], context_length)[0]


def media_type(path: str, modality: str) -> str:
    """The Content-Type to serve an indexed file with."""
    ext = os.path.splitext(path)[1].lower()
    if ext in _EXTRA_TYPES:
        return _EXTRA_TYPES[ext]
    guessed, _ = mimetypes.guess_type(path)
    if guessed:
        return guessed
    return {"audio": "audio/wav", "video": "video/mp4"}.get(modality, "application/octet-stream")


def local_path(uri: str) -> str | None:
    """The local file an indexed URI names, or None when it lives at a remote URI."""
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    if "://" in uri:
        return None
    return uri


def is_video_path(path: str) -> bool:
    """True for files whose extension says video (the kinds table's video extensions)."""
    return vision_kind(path) == "video"


@dataclass(frozen=True)
class Thumbnail:
    """A JPEG rendering of an indexed file."""

    data: bytes
    width: int
    height: int


def make_thumbnail(path: str, modality: str, *, at: float = 0.0, size: int = THUMBNAIL_SIZE) -> Thumbnail:
    """A JPEG no larger than size x size of an image, depth/thermal map or video frame at `at` s."""
    name = os.path.basename(path)
    try:
        if modality == "video" or (modality == "vision" and is_video_path(path)):
            img = _video_frame(path, max(0.0, at))
        elif path.lower().endswith(".npy"):
            img = _array_image(np.load(path, allow_pickle=False), name)
        else:
            img = _open_image(path, name, size)
        img.thumbnail((size, size))
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=82)
    except InputError:
        raise
    except DECODE_ERRORS as err:
        raise InputError(name, f"cannot make a thumbnail ({type(err).__name__}: {_short(err)})") from None
    return Thumbnail(out.getvalue(), img.width, img.height)


def _open_image(path: str, name: str, size: int) -> Image.Image:
    """An 8-bit RGB or grey Pillow image of a file (16-bit and float maps are stretched to 0..255)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(path)
        if img.width * img.height > THUMBNAIL_MAX_PIXELS:
            raise InputError(name, f"image is {img.width}x{img.height}, too large for a thumbnail")
        img.draft("RGB", (size, size))  # JPEG decoders can skip straight to a smaller scale
        img.load()
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return _array_image(np.asarray(img), name)
    return img.convert("RGB") if img.mode not in ("RGB", "L") else img


def _array_image(array: np.ndarray, name: str) -> Image.Image:
    """A grey image of a 2-D array, min..max stretched (how depth/thermal maps are usually viewed)."""
    array = np.squeeze(np.asarray(array, dtype=np.float64))
    if array.ndim != 2 or array.size == 0:
        raise InputError(name, f"cannot show an array of shape {array.shape} as an image")
    finite = np.isfinite(array)
    if not finite.any():
        raise InputError(name, "array holds no finite values")
    low, high = array[finite].min(), array[finite].max()
    scaled = np.zeros_like(array) if high <= low else (array - low) / (high - low) * 255.0
    scaled[~finite] = 0
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def _video_frame(path: str, at: float) -> Image.Image:
    """The first frame shown at or after `at` seconds (the first frame if the video is shorter)."""
    import av

    name = os.path.basename(path)
    with av.open(path, metadata_errors="ignore") as container:
        if not container.streams.video:
            raise InputError(name, "no video stream")
        stream = container.streams.video[0]
        if at > 0 and stream.time_base:
            container.seek(int(at / stream.time_base), stream=stream)  # lands on the keyframe before
        first = None
        for frame in container.decode(stream):
            first = first or frame
            if frame.time is None or frame.time >= at - 1e-3:
                return frame.to_image()
        if first is not None:
            return first.to_image()
    if at > 0:
        return _video_frame(path, 0.0)  # seeking past the end: show the start instead
    raise InputError(name, "video has no decodable frame")


def _short(err: BaseException) -> str:
    """The first line of an exception message, at most 160 characters."""
    text = first_line(err)
    return text[:160]
