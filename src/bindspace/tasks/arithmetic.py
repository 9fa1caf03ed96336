"""Embedding arithmetic: one query vector from several modalities ("a beach" + the sound of rain).

In the shared space, the sum of two unit embeddings points between them, so a composed
query retrieves items close to both (the ImageBind paper's "embedding space arithmetic").
Every part is first made a unit vector, so a part's weight, not its modality's native
scale, decides its pull.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import BindspaceError
from ..modality import as_modality

Weights = Mapping[str, float] | Sequence[float] | None

# Below this norm a vector has no direction: normalising it would amplify rounding noise.
MIN_NORM = 1e-6


def as_embedder(model_or_embedder: Any, *, batch_size: int = 32) -> Any:
    """An Embedder: returned as is when given one, else built around an ImageBindModel."""
    if hasattr(model_or_embedder, "embed") and callable(model_or_embedder.embed):
        return model_or_embedder
    from ..embedding import Embedder

    return Embedder(model_or_embedder, batch_size=batch_size)


def embedder_model(embedder: Any) -> Any:
    """The ImageBindModel behind an Embedder (or the model itself)."""
    model = getattr(embedder, "model", None)
    return model if model is not None else embedder


def unit(vector: np.ndarray, what: str = "vector") -> np.ndarray:
    """The vector scaled to norm 1 (float32); a (near-)zero vector is an error."""
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < MIN_NORM:
        raise BindspaceError(f"{what} has (near-)zero length and no direction to normalise")
    return (np.asarray(vector, dtype=np.float64) / norm).astype(np.float32)


def combine_vectors(vectors: object, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Weighted sum of the rows made unit length, renormalised: (N, D) or N x (D,) -> (D,)."""
    if hasattr(vectors, "detach"):  # torch tensor
        vectors = vectors.detach().float().cpu().numpy()
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[None, :]  # (D,) -> (1, D)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise BindspaceError(f"expected one or more vectors as (N, D), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise BindspaceError("vectors contain NaN or infinite values")
    w = np.ones(matrix.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != matrix.shape[0]:
        raise BindspaceError(f"got {w.shape[0]} weights for {matrix.shape[0]} vectors")
    if not np.isfinite(w).all():
        raise BindspaceError("weights contain NaN or infinite values")
    if not np.any(w):
        raise BindspaceError("all weights are zero: the combination has no direction")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (N, 1)
    if (norms < MIN_NORM).any():
        raise BindspaceError(f"vector {int(np.argmin(norms))} has zero length")
    total = (w[:, None] * (matrix / norms)).sum(axis=0)  # (D,)
    if np.linalg.norm(total) < MIN_NORM:
        raise BindspaceError("the weighted parts cancel out (their sum is a zero vector)")
    return unit(total, "combination")


def _is_vectors(value: object, embed_dim: int | None) -> bool:
    """Precomputed embeddings: a float array/tensor (D,) or (N, D) with the space's width."""
    if isinstance(value, (list, tuple, str, bytes, os.PathLike)):
        return False
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None or len(shape) not in (1, 2):
        return False
    if not (getattr(dtype, "is_floating_point", False) or getattr(dtype, "kind", "") == "f"):
        return False
    return embed_dim is None or int(shape[-1]) == embed_dim


def embed_part(embedder: Any, modality: str, items: object) -> np.ndarray:
    """One unit vector for a part: its items embedded, averaged and renormalised."""
    if isinstance(items, (str, bytes, os.PathLike)) or not isinstance(items, Sequence):
        items = [items]  # a single path, text, file object or array
    if len(items) == 0:
        raise BindspaceError(f"the {modality} part has no items")
    result = embedder.embed(modality, list(items), on_error="raise")
    return combine_vectors(result.vectors)


def combine(
    parts: Mapping[str, object],
    weights: Weights = None,
    *,
    embedder: Any = None,
) -> np.ndarray:
    """One unit query vector (D,) from {modality: items or vectors}: weighted sum of unit part vectors.

    Keys are modality names ("text", "image", "video", "audio", "depth", "thermal", "imu").
    A value is taken as precomputed embeddings when it is a float array or tensor of shape
    (D,) or (N, D) with the space's width; otherwise it holds items (a path, a text, bytes, a
    file object, or a list of them) that `embedder` (an Embedder or an ImageBindModel) embeds.
    A part with several items or rows counts once: their unit vectors are averaged first.
    `weights` is {key: weight} for every key, or a list in the parts' order; default all 1.
    Negative weights subtract a concept.
    """
    if not parts:
        raise BindspaceError("nothing to combine: give at least one {modality: items} part")
    keys = list(parts)
    for key in keys:
        try:
            as_modality(key)
        except ValueError as exc:
            raise BindspaceError(str(exc)) from None
    w = _weights(keys, weights)
    if embedder is not None:
        embedder = as_embedder(embedder)
        embed_dim = getattr(embedder_model(embedder), "embed_dim", None)
    else:
        embed_dim = None
    vectors = []
    for key in keys:
        value = parts[key]
        if _is_vectors(value, embed_dim):
            vectors.append(combine_vectors(value))
        elif embedder is None:
            raise BindspaceError(f"the {key} part holds items, not vectors: pass embedder= (an Embedder or a model)")
        else:
            vectors.append(embed_part(embedder, key, value))
    widths = {v.shape[0] for v in vectors}
    if len(widths) > 1:
        raise BindspaceError(f"parts have different widths {sorted(widths)}: they come from different models")
    return combine_vectors(np.stack(vectors), w)


def _weights(keys: list[str], weights: Weights) -> np.ndarray:
    if weights is None:
        return np.ones(len(keys))
    if isinstance(weights, Mapping):
        unknown = [k for k in weights if k not in keys]
        missing = [k for k in keys if k not in weights]
        if unknown or missing:
            raise BindspaceError(
                f"weights must name exactly the parts {keys}"
                + (f"; unknown: {unknown}" if unknown else "")
                + (f"; missing: {missing}" if missing else "")
            )
        return np.asarray([float(weights[k]) for k in keys])
    values = [float(x) for x in weights]
    if len(values) != len(keys):
        raise BindspaceError(f"got {len(values)} weights for {len(keys)} parts")
    return np.asarray(values)
