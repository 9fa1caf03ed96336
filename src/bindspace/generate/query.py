"""A generation query: parts (text or media, each with a weight) -> one unit embedding, as in search."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import BindspaceError
from ..kinds import parse_kind, tower_of

Part = tuple[str, Any]  # (kind, value): ("text", "a dog"), ("audio", "bark.wav"), ("image", b"...")


def query_towers(parts: Sequence[Part]) -> list[str]:
    """The model towers a query needs (e.g. ["audio", "text"])."""
    return sorted({tower_of(_kind(kind)).value for kind, _ in parts})


def _kind(name: str) -> str:
    try:
        return parse_kind(name)
    except ValueError as exc:
        raise BindspaceError(str(exc)) from None


def embed_query(embedder: Any, parts: Sequence[Part], weights: Sequence[float] | None = None) -> np.ndarray:
    """One unit vector (D,): each part embedded (several rows averaged) and combined by weight.

    Exactly the arithmetic of `bindspace search`: the weighted sum of the parts' unit vectors,
    renormalised (`bindspace.tasks.arithmetic`). `embedder` is an Embedder or an ImageBindModel.
    """
    from ..tasks.arithmetic import as_embedder, combine_vectors, embed_part

    if not parts:
        raise BindspaceError("nothing to generate from: give at least one query part (a text or a media file)")
    if weights is not None and len(weights) != len(parts):
        raise BindspaceError(f"got {len(weights)} weights for {len(parts)} query parts")
    embedder = as_embedder(embedder, batch_size=1)
    vectors = np.stack([embed_part(embedder, _kind(kind), value) for kind, value in parts])  # (P, D)
    return combine_vectors(vectors, weights)
