"""Chunked exact search equals a brute-force sort of the full score matrix."""
import numpy as np
import pytest
import torch

from bindspace.errors import BindspaceError
from bindspace.tasks import search


def brute_force(queries, gallery, k):
    scores = queries @ gallery.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties: lower index first
    return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(103, 16)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.normal(size=(17, 16)).astype(np.float32)
    return queries, gallery


@pytest.mark.parametrize("chunk", [1, 7, 10, 50, 102, 103, 1000])
@pytest.mark.parametrize("query_batch", [1, 5, 1024])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_chunked_equals_brute_force(data, chunk, query_batch, k):
    queries, gallery = data
    scores, indices = search(queries, gallery, k, query_batch=query_batch, gallery_chunk=chunk)
    want_scores, want_indices = brute_force(queries, gallery, k)
    assert indices.shape == (17, k) and scores.shape == (17, k)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_ties_go_to_the_lower_index_across_chunks():
    base = np.eye(4, dtype=np.float32)
    gallery = np.concatenate([base, base, base])  # rows i, i+4, i+8 are identical
    query = base[[2]]
    for chunk in (1, 3, 5, 12):
        _, indices = search(query, gallery, 3, gallery_chunk=chunk)
        assert indices.tolist() == [[2, 6, 10]], chunk


def test_k_larger_than_gallery_and_single_query(data):
    queries, gallery = data
    scores, indices = search(queries[0], gallery[:6], 50, gallery_chunk=4)
    assert scores.shape == (6,) and indices.shape == (6,)
    assert sorted(indices.tolist()) == list(range(6))


def test_torch_inputs(data):
    queries, gallery = data
    a = search(torch.from_numpy(queries), torch.from_numpy(gallery), 3)
    b = search(queries, gallery, 3)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_errors(data):
    queries, gallery = data
    with pytest.raises(BindspaceError, match="dimensions"):
        search(queries[:, :8], gallery, 3)
    with pytest.raises(BindspaceError, match="k must"):
        search(queries, gallery, 0)
    with pytest.raises(BindspaceError, match="NaN"):
        search(np.full((1, 16), np.nan), gallery, 3)
