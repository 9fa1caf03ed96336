"""What a batch embedding job returns: the vectors of the good inputs and a record of the bad ones."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemError:
    """An input that could not be embedded: its position, display name and a one-line problem."""

    index: int
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


@dataclass
class EmbeddingResult:
    """Unit-norm float32 vectors (n_ok, D) of the good inputs, in input order, with their provenance.

    Row `r` comes from input `indices[r]` (named `names[r]`); with segmenting, one input may
    give several consecutive rows and `segments[r]` is that row's (start, end) in seconds.
    """

    vectors: np.ndarray
    indices: list[int]
    errors: list[ItemError]
    names: list[str]
    segments: list[tuple[float, float]] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def embed_dim(self) -> int:
        """Width of the vectors."""
        return int(self.vectors.shape[1])
