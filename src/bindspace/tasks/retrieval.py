"""Exact nearest-neighbour search by dot product (cosine similarity for unit vectors).

Queries are processed in batches and the gallery in chunks, so the largest temporary is
(query_batch x gallery_chunk) scores however large the gallery is; each chunk's top k is
merged into a running top k. The result equals a brute-force sort of the full score matrix
(ties between equal scores go to the lower gallery index).
"""
from __future__ import annotations

from typing import Any, NamedTuple, cast

import numpy as np

from ..errors import BindspaceError

DEFAULT_QUERY_BATCH = 1024
DEFAULT_GALLERY_CHUNK = 65536


class SearchResult(NamedTuple):
    """Top-k scores (Q, k) float32, best first, and the gallery rows they belong to (Q, k) int64."""

    scores: np.ndarray
    indices: np.ndarray


def as_matrix(vectors: object, what: str) -> np.ndarray:
    """A float32 (N, D) matrix from a numpy array, a torch tensor or nested lists."""
    if hasattr(vectors, "detach"):  # torch tensor, without importing torch here
        vectors = vectors.detach().float().cpu().numpy()
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]  # (D,) -> (1, D)
    if array.ndim != 2:
        raise BindspaceError(f"{what} must be a (N, D) matrix of vectors, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise BindspaceError(f"{what} contain NaN or infinite values")
    return array


def search(
    query_vectors: object,
    gallery_vectors: object,
    k: int = 10,
    *,
    query_batch: int = DEFAULT_QUERY_BATCH,
    gallery_chunk: int = DEFAULT_GALLERY_CHUNK,
) -> SearchResult:
    """The k gallery rows with the highest dot product for each query: (scores, indices), each (Q, k).

    A single query vector (D,) gives (k,) arrays. k larger than the gallery is cut to its size.
    Vectors are compared as given: pass unit vectors for cosine similarity.
    """
    single = _ndim(query_vectors) == 1
    queries = as_matrix(query_vectors, "query vectors")
    gallery = as_matrix(gallery_vectors, "gallery vectors")
    if queries.shape[1] != gallery.shape[1]:
        raise BindspaceError(
            f"query vectors have {queries.shape[1]} dimensions but gallery vectors have {gallery.shape[1]}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise BindspaceError(f"k must be a positive integer, got {k!r}")
    if query_batch < 1 or gallery_chunk < 1:
        raise BindspaceError("query_batch and gallery_chunk must be positive")
    k = min(int(k), gallery.shape[0])
    n_queries = queries.shape[0]
    scores = np.empty((n_queries, k), dtype=np.float32)
    indices = np.empty((n_queries, k), dtype=np.int64)
    for start in range(0, n_queries, query_batch):
        batch = queries[start : start + query_batch]
        s, i = _search_batch(batch, gallery, k, gallery_chunk)
        scores[start : start + len(batch)], indices[start : start + len(batch)] = s, i
    if single:
        return SearchResult(scores[0], indices[0])
    return SearchResult(scores, indices)


def _ndim(value: object) -> int:
    shape = getattr(value, "shape", None)
    return len(shape) if shape is not None else np.ndim(cast(Any, value))


def _search_batch(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Running top k over gallery chunks for one batch of queries."""
    n = queries.shape[0]
    best_scores = np.empty((n, 0), dtype=np.float32)
    best_indices = np.empty((n, 0), dtype=np.int64)
    for offset in range(0, gallery.shape[0], chunk):
        block = queries @ gallery[offset : offset + chunk].T  # (n, chunk)
        s, i = _top_k(block, min(k, block.shape[1]))
        best_scores = np.concatenate([best_scores, s], axis=1)
        best_indices = np.concatenate([best_indices, i + offset], axis=1)
        if best_scores.shape[1] > k:
            order = _rank_rows(best_scores, best_indices)[:, :k]
            best_scores = np.take_along_axis(best_scores, order, axis=1)
            best_indices = np.take_along_axis(best_indices, order, axis=1)
    order = _rank_rows(best_scores, best_indices)
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_indices, order, axis=1)


def _top_k(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row (unordered), ties at the cut going to lower columns."""
    if k >= block.shape[1]:
        columns = np.broadcast_to(np.arange(block.shape[1]), block.shape)
        return block, np.ascontiguousarray(columns)
    # argpartition picks an arbitrary subset of scores equal to the k-th; to keep the
    # lowest indices (what a stable full sort gives), take everything strictly above the
    # k-th value, then fill with the first columns equal to it.
    kth = -np.partition(-block, k - 1, axis=1)[:, k - 1 : k]  # (n, 1) k-th largest score
    above = block > kth
    tied = block == kth
    need = k - above.sum(axis=1, keepdims=True)  # (n, 1) ties to keep
    keep = above | (tied & (np.cumsum(tied, axis=1) <= need))
    columns = np.nonzero(keep)[1].reshape(block.shape[0], k)  # row-major: k per row
    return np.take_along_axis(block, columns, axis=1), columns


def _rank_rows(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Column order per row: score descending, then gallery index ascending."""
    by_index = np.argsort(indices, axis=1, kind="stable")
    by_score = np.argsort(-np.take_along_axis(scores, by_index, axis=1), axis=1, kind="stable")
    return np.take_along_axis(by_index, by_score, axis=1)
