"""Decoding inputs for a batch job: per-kind loaders, work units, a never-raising Dataset and its collate.

The decoders (PyAV, soundfile, Pillow) are imported when something is decoded, not with this module:
a text-only process (`bindspace search "a dog"`) never loads them.
"""
from __future__ import annotations

import functools
import inspect
import io
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from ..config import TowerConfig
from ..errors import InputError
from ..kinds import parse_kind, vision_kind
from ..preprocess.batching import image_decode_errors

# A trailing video window shorter than this is dropped (audio's loader applies the same rule).
MIN_LAST_SECONDS = 0.5


@functools.cache
def decode_errors() -> tuple[type[BaseException], ...]:
    """What decoding one bad input may raise (imports the decoders; `DECODE_ERRORS` is the same tuple).

    These are reported per input ("skipped x: ...") and the job goes on. Anything else (TypeError,
    AttributeError: a bug; MemoryError, RuntimeError from torch: a resource or model problem) stops
    the job with its traceback. The loaders turn most decoder errors into InputError already; the
    rest are the decoders' own ways of saying "bad data": OSError (unreadable file, truncated image,
    PIL's UnidentifiedImageError), ValueError and EOFError (parsers, .npy/.csv readers, av's
    InvalidDataError), av's FFmpegError, soundfile's errors, PIL's DecompressionBombError and
    SyntaxError (broken PNG chunks).
    """
    import av
    import soundfile

    return (InputError, *image_decode_errors(), av.FFmpegError, soundfile.SoundFileError)


def __getattr__(name: str) -> tuple[type[BaseException], ...]:
    # DECODE_ERRORS, as `except DECODE_ERRORS` reads in callers: built on first use (see decode_errors).
    if name == "DECODE_ERRORS":
        return decode_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def vision_kind_of(item: Any) -> str:
    """What "vision" means for one input: "video" for a video file or video bytes, else "image"."""
    if isinstance(item, (str, os.PathLike)):
        return vision_kind(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about odd headers; only the verdict matters
                with Image.open(io.BytesIO(item)):  # reads the header only
                    return "image"
        except decode_errors():
            return "video"
    return "image"  # arrays, tensors, PIL images: the video loader reads files and bytes only


def item_loader(kind: str, segmented: bool = False) -> Callable[..., Any]:
    """The preprocess function for one item (or for a window/segments of it)."""
    from .. import preprocess

    # `preprocess.audio` / `preprocess.video` are the batch functions, not the modules: import by path.
    from ..preprocess.audio import load_audio_segments
    from ..preprocess.video import load_video_window

    loaders: dict[str, Callable[..., Any]]
    if segmented:
        loaders = {"audio": load_audio_segments, "video": load_video_window}
    else:
        loaders = {
            "image": preprocess.load_image, "video": preprocess.load_video, "audio": preprocess.load_audio,
            "depth": preprocess.load_depth, "thermal": preprocess.load_thermal, "imu": preprocess.load_imu,
        }
    return loaders[kind]


def geometry(kind: str, tower: TowerConfig) -> dict[str, Any]:
    """Loader keyword arguments that make items fit the tower's stem."""
    if kind == "text":
        return {"context_length": tower.input_size[0]}
    if kind == "video":
        return {"size": tower.input_size[-1], "frames_per_clip": tower.patch_size[0]}
    if kind == "audio":
        return {"target_frames": tower.input_size[-1]}
    if kind == "imu":
        return {"length": tower.input_size[-1]}
    return {"size": tower.input_size[-1]}  # image, depth, thermal


def check_options(options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Validate per-kind loader options (e.g. {"depth": {"focal_baseline": 40.0}}) against the loaders."""
    checked: dict[str, dict[str, Any]] = {}
    for key, kwargs in (options or {}).items():
        kind = parse_kind(key, allow_vision=False)
        if kind == "text":
            allowed = {"context_length"}
        else:
            params = inspect.signature(item_loader(kind)).parameters
            allowed = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ValueError(f"unknown {kind} option(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        checked.setdefault(kind, {}).update(kwargs)
    return checked


@dataclass(frozen=True)
class Unit:
    """One piece of work for the loader: an input, or one time window of it."""

    index: int
    name: str
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class Failure:
    """Why an input could not be decoded (picklable, unlike the exception, so workers can send it)."""

    source: str
    problem: str

    def exception(self) -> InputError:
        return InputError(self.source, self.problem)


@dataclass
class Loaded:
    """A decoded unit: rows (R, ...) and, when segmenting, R (start, end) spans; or the error instead."""

    unit: Unit
    rows: torch.Tensor | None = None
    segments: list[tuple[float, float]] | None = None
    error: Failure | None = None
    count: int = 0  # R, kept after collate moves the rows into the batch tensor


@dataclass
class LoadedBatch:
    """Collated units: the good ones' rows concatenated in order, errors passed through."""

    good: list[Loaded] = field(default_factory=list)
    errors: list[Loaded] = field(default_factory=list)
    rows: torch.Tensor | None = None  # (sum of R over good units, ...)
    size: int = 0  # units in the batch, good or bad

    def pin_memory(self) -> LoadedBatch:
        """Called by the DataLoader's pinning thread when the target is a CUDA device."""
        if self.rows is not None:
            self.rows = self.rows.pin_memory()
        return self


def as_failure(exc: BaseException, name: str) -> Failure:
    """A decoding failure (one of decode_errors()) as a one-line problem naming the input."""
    if isinstance(exc, InputError):
        return Failure(exc.source, " ".join(exc.problem.split()))
    # OSError and FFmpeg's errors carry their sentence in strerror: str() adds "[Errno N]" and the path
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split()) or "no details"
    return Failure(name, f"cannot be decoded ({type(exc).__name__}: {text})")


def load_plain(load: Callable[..., torch.Tensor], kwargs: dict[str, Any], item: Any,
               unit: Unit) -> tuple[torch.Tensor, None]:
    """One whole input -> one row."""
    return load(item, unit.name, **kwargs).unsqueeze(0), None  # (...) -> (1, ...)


def load_audio_segments(kwargs: dict[str, Any], seconds: float, item: Any,
                        unit: Unit) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """Consecutive windows of one audio input -> one row per window."""
    from ..preprocess.audio import load_audio_segments as load

    spans, rows = load(item, unit.name, segment_seconds=seconds, **kwargs)
    return rows, [(float(a), float(b)) for a, b in spans]


def load_video_window(kwargs: dict[str, Any], item: Any, unit: Unit) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """One time window of a video -> one row."""
    from ..preprocess.video import load_video_window as load

    assert unit.window is not None
    start, end = unit.window
    return load(item, start, end, unit.name, **kwargs).unsqueeze(0), [unit.window]  # (...) -> (1, ...)


def make_loader(kind: str, kwargs: dict[str, Any], segment_seconds: float | None) -> Callable[[Any, Unit], Any]:
    """A picklable function (item, unit) -> (rows, segments) for the worker processes."""
    if segment_seconds is None:
        return functools.partial(load_plain, item_loader(kind), kwargs)
    if kind == "audio":
        return functools.partial(load_audio_segments, kwargs, segment_seconds)
    return functools.partial(load_video_window, kwargs)


def video_windows(item: Any, name: str, seconds: float) -> list[tuple[float, float]]:
    """Consecutive [k·S, (k+1)·S) windows over a video; a short trailing one is kept only if it is alone."""
    from ..preprocess.video import video_info

    num_frames, fps, duration = video_info(item, name)
    windows = []
    for k in range(max(1, math.ceil(duration / seconds - 1e-9))):
        start, end = k * seconds, min((k + 1) * seconds, duration)
        if math.ceil(start * fps) >= num_frames:  # no frame left to sample
            break
        windows.append((float(start), float(end)))
    if len(windows) > 1 and windows[-1][1] - windows[-1][0] < MIN_LAST_SECONDS:
        windows.pop()
    return windows


class UnitDataset(Dataset[Loaded]):
    """Decodes one unit per index; bad inputs come back as records, bugs and resource errors propagate."""

    def __init__(self, items: Sequence[Any], units: Sequence[Unit], load: Callable[[Any, Unit], Any]) -> None:
        self.items = items
        self.units = units
        self.load = load

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> Loaded:
        unit = self.units[i]
        try:
            rows, segments = self.load(self.items[unit.index], unit)
        except decode_errors() as exc:  # one bad input must not stop the job
            return Loaded(unit, error=as_failure(exc, unit.name))
        return Loaded(unit, rows=rows, segments=segments, count=int(rows.shape[0]))


def collate(loaded: list[Loaded]) -> LoadedBatch:
    """Concatenate the good units' rows (in order) and pass the errors through."""
    batch = LoadedBatch(size=len(loaded))
    for entry in loaded:
        (batch.errors if entry.error is not None else batch.good).append(entry)
    if batch.good:
        parts = [entry.rows for entry in batch.good]
        batch.rows = parts[0] if len(parts) == 1 else torch.cat(parts)  # type: ignore[arg-type]
        for entry in batch.good:
            entry.rows = None  # the rows live in batch.rows now; don't ship them twice
    return batch
