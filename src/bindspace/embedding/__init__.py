"""Batch embedding: `Embedder` turns lists of inputs into unit vectors, decoding in parallel."""
from __future__ import annotations

from ..kinds import KINDS
from .embedder import Embedder
from .result import EmbeddingResult, ItemError

__all__ = ["Embedder", "EmbeddingResult", "ItemError", "KINDS"]
