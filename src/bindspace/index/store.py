"""The vector store behind `bindspace index`, `search` and `serve`: items, the model that made them, search.

`Store` is the small interface the rest of bindspace codes against; `bindspace.index.open_store`
returns the LanceDB implementation (`lance_store.LanceStore`), the only one today.
"""
from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BindspaceError
from ..kinds import MEDIA_KINDS
from .fingerprint import model_fingerprint

__all__ = [
    "Item", "Hit", "ModelInfo", "Store", "item_id", "model_fingerprint",
    "MEDIA_MODALITIES",
]

# What an item's `modality` may be: the kinds `detect_modality` returns ("image" and "video"
# both use the vision tower but are kept apart so results can be shown and filtered by kind).
MEDIA_MODALITIES = MEDIA_KINDS
# Filter aliases accepted by `Store.search(modality=...)` and `count(modality=...)`.
MODALITY_GROUPS = {"vision": ("image", "video")}



@dataclass
class ModelInfo:
    """The model whose vectors a table holds: preset name, weights fingerprint, width, and where it was loaded from."""

    name: str
    checksum: str
    embed_dim: int
    checkpoint: str | None = None
    # The dtype the towers computed in: bf16 and fp32 vectors of the same weights differ, so an index
    # records one and refuses the other (None: not recorded, as in indexes written before it was).
    precision: str | None = None


def precision_of(model: object) -> str | None:
    """What `ModelInfo.precision` records for a model (None for models that do not say, e.g. ONNX)."""
    method = getattr(model, "precision", None)
    return str(method()) if callable(method) else None


@dataclass
class Item:
    """One indexed vector: a file, or a time segment of a long audio/video file."""

    id: str
    uri: str
    modality: str
    content_hash: str
    size: int
    mtime: float
    segment_start: float | None
    segment_end: float | None
    model: str
    model_checksum: str
    vector: np.ndarray | None = field(default=None, repr=False)

    @property
    def segment(self) -> tuple[float, float] | None:
        """(start, end) in seconds, or None for a whole file."""
        if self.segment_start is None or self.segment_end is None:
            return None
        return (self.segment_start, self.segment_end)


@dataclass
class Hit:
    """A search result: the item (without its vector) and its cosine similarity to the query."""

    item: Item
    score: float


def item_id(uri: str, content_hash: str, segment: tuple[float, float] | None = None, modality: str = "") -> str:
    """Deterministic id of the row for (file, content, segment, modality): the same content gives the same id."""
    seg = "" if segment is None else f"{float(segment[0])!r}-{float(segment[1])!r}"
    return hashlib.sha256(f"{uri}\x00{content_hash}\x00{seg}\x00{modality}".encode()).hexdigest()[:32]


def modality_values(modality: str) -> tuple[str, ...]:
    """The stored modality names a filter means ("vision" -> image and video); unknown names are an error."""
    name = str(modality).strip().lower()
    if name in MODALITY_GROUPS:
        return MODALITY_GROUPS[name]
    if name not in MEDIA_MODALITIES:
        raise BindspaceError(f"unknown modality filter {modality!r} "
                             f"(choose from {', '.join(MEDIA_MODALITIES)}, vision)")
    return (name,)


def unit_query(vector: np.ndarray, embed_dim: int | None) -> np.ndarray:
    """A query vector as unit-norm float32 (D,), checked against the table's width."""
    if hasattr(vector, "detach"):  # torch tensor
        vector = vector.detach().float().cpu().numpy()
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if embed_dim is not None and q.shape[0] != embed_dim:
        raise BindspaceError(f"query vector has {q.shape[0]} dimensions; the index holds {embed_dim}-d vectors")
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0.0:
        raise BindspaceError("query vector is zero or not finite")
    return q / norm


class Store(abc.ABC):
    """Items with vectors of one model; exact or ANN cosine search with filters."""

    @abc.abstractmethod
    def model_info(self) -> ModelInfo | None:
        """The model recorded for this store, or None while it is empty and unbound."""

    @abc.abstractmethod
    def bind_model(self, info: ModelInfo) -> None:
        """Record the model on first use; a different model (checksum or width) raises BindspaceError."""

    @abc.abstractmethod
    def add(self, items: Sequence[Item]) -> None:
        """Append items (each with its vector) in one atomic commit."""

    @abc.abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Delete items by id; returns the number of rows removed."""

    @abc.abstractmethod
    def delete_uri(self, uri: str) -> int:
        """Delete every item of a file; returns the number of rows removed."""

    @abc.abstractmethod
    def get(self, id: str) -> Item | None:
        """The item with this id (with its vector), or None."""

    @abc.abstractmethod
    def search(self, vector: np.ndarray, k: int = 10, *, modality: str | None = None,
               where: str | None = None) -> list[Hit]:
        """The k items most similar (cosine) to `vector`, best first; `where` is an SQL filter on item columns."""

    @abc.abstractmethod
    def count(self, modality: str | None = None) -> int:
        """Number of items (rows), optionally of one modality."""

    @abc.abstractmethod
    def items_by_uri(self) -> dict[str, list[Item]]:
        """Every item without vectors, grouped by file: what change detection compares against."""

    @abc.abstractmethod
    def create_ann_index(self, **options: Any) -> None:
        """Build (or rebuild) an approximate-nearest-neighbour index over the vectors."""

    # Optional maintenance hooks used by the indexer; a store without them simply skips the step.
    def update_stat(self, uri: str, content_hash: str, size: int, mtime: float) -> int:
        """Record a new size/mtime for a file whose content did not change; returns rows touched."""
        return 0

    def dedupe(self) -> int:
        """Remove duplicate rows (same id), keeping one of each; returns rows removed."""
        return 0

    def optimize(self) -> None:  # noqa: B027 - optional hook: doing nothing is a valid implementation
        """Compact storage after many small commits."""

    def row_writer(self) -> Any:
        """A picklable writer workers use to write rows straight to storage (None: this store cannot)."""
        return None

    def commit_written(self, payloads: Sequence[str]) -> None:
        """Commit, in one atomic commit, the rows workers wrote with `row_writer()` (its `write` results)."""
        raise BindspaceError(f"{type(self).__name__} does not take rows written by workers")
