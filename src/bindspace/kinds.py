"""Input kinds: what a file or value holds, which tower embeds it, and the file extensions that name it.

This is the one table of kinds and extensions; the embed command, the indexer's detector, the
server and the training data readers all read it. "vision" is the tower's name, not a kind: given
as a kind it means "image or video, whichever the file is" (decided by `vision_kind`).
"""
from __future__ import annotations

import os
from pathlib import Path

from .modality import Modality

# What a user may ask to embed; "image" and "video" both feed the vision tower.
KINDS: tuple[str, ...] = ("text", "image", "video", "audio", "depth", "thermal", "imu")
MEDIA_KINDS: tuple[str, ...] = KINDS[1:]
# Kinds with a time axis that `segment_seconds` can cut into windows.
SEGMENTABLE: tuple[str, ...] = ("audio", "video")

TOWER: dict[str, Modality] = {
    "text": Modality.TEXT,
    "image": Modality.VISION,
    "video": Modality.VISION,
    "audio": Modality.AUDIO,
    "depth": Modality.DEPTH,
    "thermal": Modality.THERMAL,
    "imu": Modality.IMU,
}

# Extensions (lower case, with the dot) that a folder walk picks up for each kind.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image": (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    "video": (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"),
    "audio": (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma"),
    "depth": (".png", ".tif", ".tiff", ".npy"),
    "thermal": (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy"),
    "imu": (".npy", ".csv"),
}
VIDEO_EXTENSIONS: frozenset[str] = frozenset(EXTENSIONS["video"])


def parse_kind(name: str | Modality, *, allow_vision: bool = True) -> str:
    """A kind name, lower-cased and checked; "vision" is kept (resolve it per file with `vision_kind`)."""
    kind = str(name).strip().lower()
    if kind == "vision" and allow_vision:
        return kind
    if kind not in KINDS:
        extra = ", vision" if allow_vision else ""
        raise ValueError(f"unknown modality {name!r} (choose from {', '.join(KINDS)}{extra})")
    return kind


def vision_kind(path: str | os.PathLike[str]) -> str:
    """"video" for a file with a video extension, else "image": what "vision" means for one file."""
    return "video" if Path(path).suffix.lower() in VIDEO_EXTENSIONS else "image"


def resolve_kind(name: str | Modality, path: str | os.PathLike[str] | None = None) -> str:
    """A concrete kind for one input: "vision" becomes image or video by the file's extension."""
    kind = parse_kind(name)
    if kind == "vision":
        return vision_kind(path) if path is not None else "image"
    return kind


def tower_of(kind: str) -> Modality:
    """The model tower that embeds a kind ("vision" included)."""
    return Modality.VISION if kind == "vision" else TOWER[kind]


def has_extension(path: str | os.PathLike[str], kind: str) -> bool:
    """Whether a file's extension is one a folder walk picks up for `kind`."""
    suffix = Path(path).suffix.lower()
    if kind == "vision":
        return suffix in EXTENSIONS["image"] or suffix in VIDEO_EXTENSIONS
    return suffix in EXTENSIONS.get(kind, ())
