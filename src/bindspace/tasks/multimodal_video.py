"""Video embeddings from frames and sound together.

The ImageBind paper reports better text->video retrieval when a video's vision and audio
embeddings are combined. Here each video is embedded by the vision tower (its clips
averaged) and, when it has a readable audio track, by the audio tower (the track decoded
from the container by `bindspace.preprocess.load_audio`, which falls back to PyAV); the two
unit vectors are summed with weights and renormalised. A video without an audio track (or
whose audio cannot be decoded) keeps its vision-only embedding; `with_audio` says which.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BindspaceError
from .arithmetic import as_embedder, combine_vectors


@dataclass
class VideoEmbeddings:
    """Fused video vectors (n_ok, D) in input order, like an EmbeddingResult plus audio bookkeeping."""

    vectors: np.ndarray
    indices: list[int]  # input index of each row
    names: list[str]
    errors: list[Any] = field(default_factory=list)  # videos that could not be embedded at all
    with_audio: list[bool] = field(default_factory=list)  # per row: audio was fused in
    audio_errors: list[Any] = field(default_factory=list)  # why audio was left out (e.g. no audio track)


def _read_once(item: Any) -> Any:
    """File objects become bytes, so the vision and the audio pass can both read them."""
    if hasattr(item, "read") and not isinstance(item, (str, bytes, bytearray, os.PathLike)):
        try:
            return item.read()
        except OSError:  # the vision pass reports the unreadable item by name
            return item
    return item


def _reindex(error: Any, row_indices: list[int]) -> Any:
    if dataclasses.is_dataclass(error) and not isinstance(error, type) and hasattr(error, "index"):
        return dataclasses.replace(error, index=row_indices[error.index])
    return error


def embed_video(
    model_or_embedder: Any,
    items: Sequence[Any],
    *,
    audio: bool = True,
    vision_weight: float = 1.0,
    audio_weight: float = 1.0,
    on_error: str = "raise",
    names: Sequence[str] | None = None,
) -> VideoEmbeddings:
    """Embed videos (paths, bytes, file objects) by frames, plus their audio track when `audio` is set.

    Per video: unit(vision_weight * v_vision + audio_weight * v_audio), or v_vision alone when
    the video has no usable audio. `on_error` applies to the vision pass ("raise" or "skip").
    """
    if vision_weight <= 0 or audio_weight < 0:
        raise BindspaceError("vision_weight must be > 0 and audio_weight >= 0")
    embedder = as_embedder(model_or_embedder)
    if isinstance(items, (str, bytes, bytearray, os.PathLike)):
        items = [items]  # one video, not a sequence of characters
    if names is None:
        from ..preprocess.sources import source_name

        names = [source_name(item, i) for i, item in enumerate(items)]
    data = [_read_once(item) for item in items]
    vision = embedder.embed("video", data, on_error=on_error, names=names)
    vectors = np.asarray(vision.vectors, dtype=np.float32).copy()
    row_names, row_indices = list(vision.names), list(vision.indices)
    with_audio = [False] * len(row_indices)
    audio_errors: list[Any] = []
    if audio and audio_weight > 0 and row_indices:
        readable = [data[i] for i in row_indices]
        sound = embedder.embed("audio", readable, on_error="skip", names=row_names)
        for row, vector in zip(sound.indices, np.asarray(sound.vectors)):
            vectors[row] = combine_vectors(np.stack([vectors[row], vector]), [vision_weight, audio_weight])
            with_audio[row] = True
        # the audio pass saw only the readable videos: map its error indices back to the input's
        audio_errors = [_reindex(err, row_indices) for err in sound.errors]
    return VideoEmbeddings(vectors, row_indices, row_names, list(vision.errors), with_audio, audio_errors)
