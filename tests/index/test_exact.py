"""The exact-search int8 path: torch's private int8 kernel really runs, and results equal float32 brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bindspace.index import exact
from bindspace.index.exact import INT8_MIN_ROWS, ExactIndex


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_private_kernel_computes_what_the_index_assumes():
    # out[i, j] = sum_k x[i, k] * w[j, k] * scale[j]: checked on small integers, exactly representable
    assert hasattr(torch.ops.aten, "_weight_int8pack_mm"), "this torch lacks the int8 kernel the index relies on"
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (64, 64)).astype(np.int8)
    scales = np.array([0.5, 1.0, 2.0, 0.25] * 16, dtype=np.float32)
    x = rng.integers(-3, 4, (1, 64)).astype(np.float32)
    got = torch.ops.aten._weight_int8pack_mm(torch.from_numpy(x).to(torch.bfloat16), torch.from_numpy(weights),
                                             torch.from_numpy(scales).to(torch.bfloat16))
    expected = (x @ weights.astype(np.float32).T) * scales
    np.testing.assert_allclose(got.float().numpy(), expected, rtol=1e-2, atol=1.0)


def test_int8_scan_runs_and_matches_float32_brute_force(monkeypatch):
    vectors = unit_rows(INT8_MIN_ROWS + 100, 72, seed=1)  # 72-d: the padding of rows and columns is used
    index = ExactIndex(vectors)
    assert index._q8 is not None and index._q8.dtype == torch.int8  # built and passed its self-check
    scans = []
    real_scan = ExactIndex._scan_int8

    def counting_scan(self, query):
        scores = real_scan(self, query)
        scans.append(scores)
        return scores

    monkeypatch.setattr(ExactIndex, "_scan_int8", counting_scan)
    mask = np.arange(len(vectors)) % 5 != 0
    for q in unit_rows(6, 72, seed=2):
        for allowed in (None, mask):
            positions, scores = index.search(q, 10, allowed)
            brute = vectors @ q if allowed is None else np.where(allowed, vectors @ q, -np.inf)
            expected = np.argsort(-brute, kind="stable")[:10]
            assert positions.tolist() == expected.tolist()
            np.testing.assert_allclose(scores, brute[expected], atol=1e-6)  # re-scored in float32
    assert len(scans) == 12  # every search went through the int8 kernel
    # the scan is approximate (int8 weights, bfloat16 query): close to float32 but not identical
    approx = scans[0].float().numpy()
    error = np.abs(approx - vectors @ unit_rows(6, 72, seed=2)[0])
    assert 0 < error.max() < 0.03


def test_float32_scan_when_the_kernel_is_turned_off(monkeypatch):
    monkeypatch.setenv(exact.ENV_KERNEL, "float32")
    vectors = unit_rows(INT8_MIN_ROWS, 32, seed=3)
    index = ExactIndex(vectors)
    assert index._q8 is None and index.nbytes == vectors.nbytes
    q = vectors[17]
    positions, scores = index.search(q, 3)
    assert positions[0] == 17 and scores[0] == pytest.approx(1.0, abs=1e-6)
