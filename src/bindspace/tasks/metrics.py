"""Ranking and classification metrics over score matrices.

All functions take `scores` (Q, G): one row per query (or per classified item), one
column per gallery item (or class), higher is better. Relevance is given as one index
per query (Q,), a collection of indices per query, or a boolean mask (Q, G).

Ties count against the query: an item whose score equals a relevant item's score is
ranked ahead of it. A scorer that gives every item the same score therefore gets the
worst rank, never a perfect one, and the numbers do not depend on sort stability.
Values are fractions in [0, 1] (ranks are 1-based counts).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

Relevant = np.ndarray | Sequence[int] | Sequence[Iterable[int]]

# Rows sorted at once by the sort-based metrics: bounds memory to ROW_CHUNK x G x 8 bytes.
ROW_CHUNK = 1024


def _scores(scores: object) -> np.ndarray:
    array = _to_numpy(scores)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if array.ndim != 2:
        raise ValueError(f"scores must be a 2-D (queries, items) matrix, got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError("scores has no columns (empty gallery or no classes)")
    if not np.isfinite(array).all():
        raise ValueError("scores contain NaN or infinite values")
    return array


def _to_numpy(value: object) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def relevance_mask(relevant: Relevant, shape: tuple[int, int]) -> np.ndarray:
    """A boolean (Q, G) mask from any accepted relevance form; every query needs >= 1 relevant item."""
    n_queries, n_items = shape
    if isinstance(relevant, np.ndarray) and relevant.dtype == bool:
        mask = relevant
        if mask.shape != (n_queries, n_items):
            raise ValueError(f"relevance mask has shape {mask.shape}, expected {(n_queries, n_items)}")
    else:
        rows = _index_rows(relevant, n_queries)
        mask = np.zeros((n_queries, n_items), dtype=bool)
        for q, row in enumerate(rows):
            for index in row:
                if not 0 <= index < n_items:
                    raise ValueError(f"relevant index {index} of query {q} is outside 0..{n_items - 1}")
                mask[q, index] = True
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"query {int(empty[0])} has no relevant item ({empty.size} queries in all)")
    return mask


def _index_rows(relevant: Relevant, n_queries: int) -> list[list[int]]:
    if isinstance(relevant, np.ndarray) or hasattr(relevant, "detach"):
        array = _to_numpy(relevant)
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise ValueError("relevance as an array must be integer indices (Q,) or a boolean mask (Q, G)")
        rows = [[int(i)] for i in array]
    else:
        rows = []
        for row in relevant:
            if isinstance(row, (int, np.integer)):
                rows.append([int(row)])
            else:
                rows.append([int(i) for i in row])
    if len(rows) != n_queries:
        raise ValueError(f"got relevance for {len(rows)} queries, but scores has {n_queries} rows")
    return rows


def single_targets(relevant: Relevant, shape: tuple[int, int]) -> np.ndarray | None:
    """The relevance as one index per query (Q,) when it has that form, else None."""
    if isinstance(relevant, np.ndarray) and relevant.dtype == bool:
        return None
    if isinstance(relevant, np.ndarray) or hasattr(relevant, "detach"):
        array = _to_numpy(relevant)
    elif all(isinstance(row, (int, np.integer)) for row in relevant):
        array = np.asarray(list(relevant), dtype=np.int64)
    else:
        return None
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError("relevance as an array must be integer indices (Q,) or a boolean mask (Q, G)")
    if array.shape[0] != shape[0]:
        raise ValueError(f"got relevance for {array.shape[0]} queries, but scores has {shape[0]} rows")
    bad = np.flatnonzero((array < 0) | (array >= shape[1]))
    if bad.size:
        raise ValueError(f"relevant index {int(array[bad[0]])} of query {int(bad[0])} is outside 0..{shape[1] - 1}")
    return array.astype(np.int64)


def ranks(scores: object, relevant: Relevant) -> np.ndarray:
    """1-based rank of each query's best-ranked relevant item, shape (Q,) int64."""
    array = _scores(scores)
    targets = single_targets(relevant, array.shape)
    mask = None if targets is not None else relevance_mask(relevant, array.shape)
    out = np.empty(array.shape[0], dtype=np.int64)
    for start in range(0, array.shape[0], ROW_CHUNK):  # bounded temporaries for large (Q, G)
        rows = array[start : start + ROW_CHUNK]
        if targets is not None:
            picked = targets[start : start + ROW_CHUNK]
            best = np.take_along_axis(rows, picked[:, None], axis=1)  # (rows, 1)
            ahead = (rows >= best).sum(axis=1) - 1  # everything at or above it, except itself
        else:
            rel = mask[start : start + ROW_CHUNK]  # type: ignore[index]
            best = np.where(rel, rows, -np.inf).max(axis=1, keepdims=True)  # (rows, 1)
            ahead = ((rows >= best) & ~rel).sum(axis=1)  # non-relevant items at or above it
        out[start : start + len(rows)] = ahead + 1
    return out


def _sorted_relevance(array: np.ndarray, mask: np.ndarray) -> Iterator[np.ndarray]:
    """Per chunk of rows: relevance flags in ranked order (score descending, ties: non-relevant first)."""
    for start in range(0, array.shape[0], ROW_CHUNK):
        scores, rel = array[start : start + ROW_CHUNK], mask[start : start + ROW_CHUNK]
        by_relevance = np.argsort(rel, axis=1, kind="stable")  # non-relevant first
        by_score = np.argsort(-np.take_along_axis(scores, by_relevance, axis=1), axis=1, kind="stable")
        order = np.take_along_axis(by_relevance, by_score, axis=1)  # stable: ties keep non-relevant first
        yield np.take_along_axis(rel, order, axis=1)


def recall_at_k(scores: object, relevant: Relevant, k: int, *, mode: str = "any") -> float:
    """Recall@k averaged over queries.

    mode "any" (the retrieval-benchmark convention, e.g. text->audio R@k): a query counts as 1
    when at least one relevant item is in its top k. mode "fraction": the share of a query's
    relevant items found in its top k. Both agree when each query has one relevant item.
    """
    _check_k(k)
    if mode == "any":
        return float((ranks(scores, relevant) <= k).mean())
    if mode != "fraction":
        raise ValueError(f"unknown recall mode {mode!r} (use 'any' or 'fraction')")
    array = _scores(scores)
    mask = relevance_mask(relevant, array.shape)
    per_query = [
        rel[:, :k].sum(axis=1) / rel.sum(axis=1) for rel in _sorted_relevance(array, mask)
    ]
    return float(np.concatenate(per_query).mean())


def average_precisions(scores: object, relevant: Relevant, *, k: int | None = None) -> np.ndarray:
    """Average precision per query (Q,); with k, AP@k normalised by min(#relevant, k)."""
    if k is not None:
        _check_k(k)
    array = _scores(scores)
    mask = relevance_mask(relevant, array.shape)
    out = []
    for rel in _sorted_relevance(array, mask):
        total = rel.sum(axis=1)  # (rows,)
        if k is not None:
            rel, total = rel[:, :k], np.minimum(total, k)
        hits = np.cumsum(rel, axis=1)  # (rows, G') relevant items up to each position
        precision = hits / np.arange(1, rel.shape[1] + 1)  # precision at every position
        out.append((precision * rel).sum(axis=1) / total)
    return np.concatenate(out)


def mean_average_precision(scores: object, relevant: Relevant, *, k: int | None = None) -> float:
    """Mean over queries of average precision (mAP; mAP@k with k)."""
    return float(average_precisions(scores, relevant, k=k).mean())


def top_k_accuracy(scores: object, targets: Sequence[int] | np.ndarray, k: int = 1) -> float:
    """Share of items whose target class is among their k highest-scoring classes."""
    _check_k(k)
    return recall_at_k(scores, np.asarray(targets, dtype=np.int64), k)


def accuracy(scores: object, targets: Sequence[int] | np.ndarray) -> float:
    """Top-1 accuracy."""
    return top_k_accuracy(scores, targets, 1)


def top5_accuracy(scores: object, targets: Sequence[int] | np.ndarray) -> float:
    """Top-5 accuracy (every item counts as correct when there are at most 5 classes)."""
    return top_k_accuracy(scores, targets, 5)


def median_rank(scores: object, relevant: Relevant) -> float:
    """Median over queries of the rank of the best-ranked relevant item (1 = first)."""
    return float(np.median(ranks(scores, relevant)))


def mean_reciprocal_rank(scores: object, relevant: Relevant) -> float:
    """Mean over queries of 1 / rank of the best-ranked relevant item."""
    return float((1.0 / ranks(scores, relevant)).mean())


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
