"""The batch embedding API (implemented in `bindspace.embedding`): `Embedder`, `EmbeddingResult`, `ItemError`."""
from __future__ import annotations

from .embedding import KINDS, Embedder, EmbeddingResult, ItemError

__all__ = ["Embedder", "EmbeddingResult", "ItemError", "KINDS"]
