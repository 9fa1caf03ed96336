"""Exact (brute-force) cosine top-k over an in-memory copy of a table's vectors.

LanceDB's own flat search reads and decodes every vector per query (~0.6 s at 100k x 1024 on
two cores); a resident matrix answers in milliseconds. Large matrices are scanned in int8 (one
scale per row) with a bfloat16 query, then the best `candidates` rows are re-scored in float32,
so results and scores are exact unless more than `candidates - k` rows tie with the k-th within
the int8 rounding error (|error| <= ~2e-3 at 1024-d). Small matrices are scanned in float32.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

log = logging.getLogger(__name__)

# Below this many rows a float32 scan is already fast and exact.
INT8_MIN_ROWS = 4096
# The int8 kernel needs rows padded to a multiple of 16 and width to a multiple of 32.
ROW_ALIGN = 64
COL_ALIGN = 64
ENV_KERNEL = "BINDSPACE_EXACT_KERNEL"  # "float32" forces the float32 scan


def _int8_kernel_available() -> bool:
    if os.environ.get(ENV_KERNEL, "").lower() == "float32":
        return False
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


def _round_up(n: int, align: int) -> int:
    return -(-n // align) * align


class ExactIndex:
    """Exact cosine search over unit vectors held in memory (one table version)."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D)
        self.n, self.dim = self.vectors.shape
        self._q8: torch.Tensor | None = None
        self._scales: torch.Tensor | None = None
        if self.n >= INT8_MIN_ROWS and _int8_kernel_available():
            self._build_int8()

    @property
    def nbytes(self) -> int:
        """Memory held by this index."""
        extra = 0 if self._q8 is None else self._q8.numel() + 2 * self._scales.numel()  # type: ignore[union-attr]
        return int(self.vectors.nbytes + extra)

    def _build_int8(self) -> None:
        rows, cols = _round_up(self.n, ROW_ALIGN), _round_up(self.dim, COL_ALIGN)
        q8 = torch.zeros((rows, cols), dtype=torch.int8)
        scales = torch.ones(rows, dtype=torch.float32)
        src = torch.from_numpy(self.vectors)
        step = 65536  # quantise in chunks to bound the float temporaries
        for start in range(0, self.n, step):
            block = src[start : start + step]
            scale = block.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (b,)
            q8[start : start + block.shape[0], : self.dim] = torch.round(block / scale[:, None]).to(torch.int8)
            scales[start : start + block.shape[0]] = scale
        self._q8, self._scales = q8, scales.to(torch.bfloat16)
        if not self._self_check():
            log.warning("int8 scan kernel gave wrong results on this machine; using float32")
            self._q8 = self._scales = None

    def _self_check(self) -> bool:
        """Compare the int8 scan with float32 on one query before trusting it."""
        probe = self.vectors[0]
        approx = self._scan_int8(probe).to(torch.float32).numpy()
        exact = self.vectors @ probe
        return bool(np.max(np.abs(approx - exact)) < 0.05)

    def _scan_int8(self, query: np.ndarray) -> torch.Tensor:
        """Approximate scores (n,) in bfloat16. Few, large torch ops: on a busy machine every
        parallel region costs a scheduling delay, so the query is padded in numpy."""
        padded = np.zeros((1, self._q8.shape[1]), dtype=np.float32)  # type: ignore[union-attr]
        padded[0, : self.dim] = query
        q = torch.from_numpy(padded).to(torch.bfloat16)
        return torch.ops.aten._weight_int8pack_mm(q, self._q8, self._scales)[0, : self.n]  # (1, rows) -> (n,)

    def search(self, query: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) of the k best rows (restricted to `mask` when given), best first."""
        allowed = self.n if mask is None else int(mask.sum())
        k = min(int(k), allowed)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = np.asarray(query, dtype=np.float32)
        if self._q8 is None:
            scores = self.vectors @ query  # (N,)
            return _top(scores, k, mask)
        approx = self._scan_int8(query)
        wanted = min(allowed, max(8 * k, k + 128))
        if mask is None:
            candidates = torch.topk(approx, wanted, sorted=False).indices.numpy()
        else:
            # gather the allowed rows (one cheap op) rather than masking all n scores
            rows = np.flatnonzero(mask)
            pick = torch.topk(approx.index_select(0, torch.from_numpy(rows)), wanted, sorted=False).indices.numpy()
            candidates = rows[pick]
        exact = self.vectors[candidates] @ query  # re-score the candidates in float32
        order = np.argsort(-exact, kind="stable")[:k]
        return candidates[order].astype(np.int64), exact[order].astype(np.float32)


def _top(scores: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest scores (masked-out rows never chosen), best first."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    k = min(k, scores.shape[0])
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    order = part[np.argsort(-scores[part], kind="stable")]
    return order.astype(np.int64), scores[order].astype(np.float32)
