"""Media items for the bridge: (kind, file or bytes) -> encoder input -> unit embedding in the shared space."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..embedding.loading import DECODE_ERRORS, as_failure, geometry, make_loader, vision_kind_of
from ..embedding.loading import Unit as _Unit
from ..errors import BindspaceError, InputError
from ..kinds import MEDIA_KINDS, parse_kind, tower_of
from ..modality import Modality


@dataclass(frozen=True)
class Media:
    """One media item: its kind (image, video, audio, depth, thermal, imu; "vision" = by file) and source."""

    kind: str
    source: str | os.PathLike[str] | bytes
    name: str = ""

    @property
    def label(self) -> str:
        """How messages name the item."""
        return self.name or (str(self.source) if not isinstance(self.source, bytes) else f"{self.kind} input")


def media(kind: str, source: str | os.PathLike[str] | bytes, name: str = "") -> Media:
    """A checked Media item (ValueError for a kind that is not media)."""
    checked = parse_kind(kind)
    if checked == "text":
        raise ValueError("text is the prompt, not a media item (choose from " + ", ".join(MEDIA_KINDS) + ")")
    return Media(checked, source, name)


def towers_for(items: Sequence[Media]) -> list[Modality]:
    """The encoder towers a list of media items needs, in first-use order."""
    return list(dict.fromkeys(tower_of(item.kind) for item in items))


def load_input(model: Any, item: Media) -> tuple[Modality, torch.Tensor]:
    """Decode one item for `model`'s tower geometry -> (tower, input with a batch axis of 1)."""
    source: Any = item.source
    kind = item.kind
    if kind == "vision":
        kind = vision_kind_of(source)
    tower = tower_of(kind)
    if tower not in model.modalities:
        have = ", ".join(str(m) for m in model.modalities) or "none"
        raise BindspaceError(f"{item.label}: the encoder has no {tower} tower for this {kind} input "
                             f"(it has: {have}); load a checkpoint with one")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(item.label, "file not found")
        source = str(path)
    load = make_loader(kind, geometry(kind, model.tower_config(tower)), None)
    try:
        rows, _ = load(source, _Unit(0, item.label))
    except DECODE_ERRORS as exc:  # bad input; a bug in a loader keeps its traceback
        failure = as_failure(exc, item.label)
        raise InputError(failure.source, failure.problem) from None
    return tower, rows


def embed_media(model: Any, items: Sequence[Media]) -> torch.Tensor:
    """Unit embeddings (M, D) of the items, in order; every item is decoded before any is embedded."""
    loaded = [load_input(model, item) for item in items]
    if not loaded:
        return torch.zeros(0, model.embed_dim)
    with torch.no_grad():
        return torch.cat([model.encode(tower, rows) for tower, rows in loaded]).float()
