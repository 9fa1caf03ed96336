"""LanceStore: model binding, writes, reads, exact and ANN search, filters, dedupe."""
from __future__ import annotations

import numpy as np
import pytest

from bindspace.errors import BindspaceError
from bindspace.index import open_store
from bindspace.index.store import Item, ModelInfo, item_id

INFO = ModelInfo("tiny", "w1-aaa", 24, "/models/tiny.pth")


def unit_rows(n: int, dim: int = 24, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_items(vectors: np.ndarray, modality: str = "image", prefix: str = "/m/f", checksum: str = "w1-aaa",
               start: int = 0) -> list[Item]:
    out = []
    for i, v in enumerate(vectors, start):
        uri = f"{prefix}{i}.x"
        out.append(Item(item_id(uri, f"h{i}"), uri, modality, f"h{i}", 100 + i, 1.0 + i, None, None, "tiny",
                        checksum, v))
    return out


@pytest.fixture()
def bound(store):
    store.bind_model(INFO)
    return store


def test_model_is_recorded_and_another_is_refused(tmp_path, bound):
    bound.bind_model(INFO)  # the same model again is fine
    with pytest.raises(BindspaceError, match="refusing to mix models.*w1-aaa.*w1-bbb"):
        bound.bind_model(ModelInfo("tiny", "w1-bbb", 24))
    with pytest.raises(BindspaceError, match="refusing to mix"):
        bound.bind_model(ModelInfo("tiny", "w1-aaa", 32))
    reopened = open_store(tmp_path / "db")
    assert reopened.model_info() == INFO
    with pytest.raises(BindspaceError, match="refusing to mix models"):
        bound.add(make_items(unit_rows(1), checksum="w1-other"))
    assert bound.count() == 0


def test_open_missing_index_is_an_error(tmp_path):
    with pytest.raises(BindspaceError, match="no index here"):
        open_store(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BindspaceError, match="not a directory"):
        open_store(tmp_path / "file", create=True)
    empty = open_store(tmp_path / "new", create=True)
    assert empty.model_info() is None and empty.count() == 0 and empty.search(np.ones(24), 5) == []


def test_add_get_count_delete(bound):
    vectors = unit_rows(6)
    items = make_items(vectors[:4]) + make_items(vectors[4:], modality="audio", prefix="/m/a")
    bound.add(items)
    assert bound.count() == 6 and bound.count("image") == 4 and bound.count("audio") == 2
    got = bound.get(items[2].id)
    assert got.uri == items[2].uri and got.size == items[2].size and got.segment is None
    np.testing.assert_array_equal(got.vector, vectors[2])
    assert bound.get("no-such-id") is None
    assert bound.delete([items[0].id, items[1].id, "missing"]) == 2
    assert bound.delete_uri(items[4].uri) == 1
    assert sorted(bound.items_by_uri()) == sorted(i.uri for i in (items[2], items[3], items[5]))
    with pytest.raises(BindspaceError, match="24"):
        bound.add([Item("x", "/x", "image", "h", 1, 1.0, None, None, "tiny", "w1-aaa", np.ones(8, np.float32))])


def test_quotes_in_uris_are_safe(bound):
    items = make_items(unit_rows(2), prefix="/m/it's a 'quote' ")
    bound.add(items)
    assert bound.delete_uri(items[0].uri) == 1
    assert bound.count() == 1


def test_exact_search_ranks_and_filters(bound):
    vectors = unit_rows(40)
    images, audio = make_items(vectors[:30]), make_items(vectors[30:], modality="audio", prefix="/m/a", start=30)
    bound.add(images + audio)
    hits = bound.search(vectors[7], k=5)
    assert hits[0].item.id == images[7].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    expected = np.argsort(-(vectors @ vectors[7]))[:5]
    assert [h.item.id for h in hits] == [(images + audio)[i].id for i in expected]
    np.testing.assert_allclose([h.score for h in hits], (vectors @ vectors[7])[expected], atol=1e-5)
    assert hits[0].item.vector is None
    # an unnormalised query gives the same ranking and cosine scores
    assert [h.item.id for h in bound.search(3.0 * vectors[7], k=5)] == [h.item.id for h in hits]
    only_audio = bound.search(vectors[7], k=50, modality="audio")
    assert len(only_audio) == 10 and {h.item.modality for h in only_audio} == {"audio"}
    assert len(bound.search(vectors[7], k=50, modality="vision")) == 30
    small = bound.search(vectors[7], k=50, where="size < 105")
    assert sorted(h.item.size for h in small) == [100, 101, 102, 103, 104]
    combined = bound.search(vectors[7], k=50, modality="audio", where="size < 135")
    assert sorted(h.item.size for h in combined) == [130, 131, 132, 133, 134]
    with pytest.raises(BindspaceError, match="filter"):
        bound.search(vectors[7], where="no_such_column = 1")
    with pytest.raises(BindspaceError, match="unknown modality"):
        bound.search(vectors[7], modality="smell")
    with pytest.raises(BindspaceError, match="dimensions"):
        bound.search(np.ones(7), k=3)


def test_search_sees_writes_from_another_handle(tmp_path, bound):
    vectors = unit_rows(3)
    reader = open_store(tmp_path / "db")
    assert reader.search(vectors[0], k=3) == []
    bound.add(make_items(vectors))
    assert reader.search(vectors[0], k=1)[0].score == pytest.approx(1.0, abs=1e-5)
    bound.delete_uri("/m/f0.x")
    assert all(h.item.uri != "/m/f0.x" for h in reader.search(vectors[0], k=3))


def test_large_exact_search_matches_brute_force(bound):
    # enough rows for the int8 scan + float32 re-rank path; 24-d exercises the padding
    vectors = unit_rows(6000, seed=1)
    bound.add(make_items(vectors))
    queries = unit_rows(5, seed=2)
    for q in queries:
        hits = bound.search(q, k=10)
        scores = vectors @ q
        expected = np.argsort(-scores)[:10]
        assert [h.item.uri for h in hits] == [f"/m/f{i}.x" for i in expected]
        np.testing.assert_allclose([h.score for h in hits], scores[expected], atol=1e-5)


def test_dedupe_keeps_one_row_per_id(bound):
    items = make_items(unit_rows(3))
    bound.add(items)
    bound.add(items[:2])  # what two concurrent writers could produce
    assert bound.count() == 5
    assert bound.dedupe() == 2
    assert bound.count() == 3 and sorted(bound.items_by_uri()) == sorted(i.uri for i in items)
    assert bound.dedupe() == 0


def test_update_stat_changes_only_size_and_mtime(bound):
    items = make_items(unit_rows(2))
    bound.add(items)
    assert bound.update_stat(items[0].uri, items[0].content_hash, 999, 123.5) == 1
    got = bound.get(items[0].id)
    assert (got.size, got.mtime) == (999, 123.5)
    np.testing.assert_array_equal(got.vector, items[0].vector)
    assert bound.update_stat(items[0].uri, "other-hash", 1, 1.0) == 0


def test_exact_index_int8_scan_with_mask_matches_float32():
    from bindspace.index.exact import ExactIndex

    vectors = unit_rows(5000, dim=40, seed=4)
    index = ExactIndex(vectors)
    assert index.nbytes > vectors.nbytes  # the int8 copy was built (and passed its self-check)
    mask = np.arange(5000) % 3 == 0
    for q in unit_rows(4, dim=40, seed=5):
        positions, scores = index.search(q, 7, mask)
        masked = np.where(mask, vectors @ q, -np.inf)
        expected = np.argsort(-masked)[:7]
        assert positions.tolist() == expected.tolist()
        np.testing.assert_allclose(scores, masked[expected], atol=1e-5)
    assert index.search(vectors[0], 3, np.zeros(5000, bool))[0].size == 0


def test_ann_index_search(bound):
    vectors = unit_rows(2000, seed=3)
    bound.add(make_items(vectors))
    bound.create_ann_index(num_partitions=8)
    assert bound.has_ann_index()
    for i in (5, 500, 1999):
        hits = bound.search(vectors[i], k=5)
        assert hits[0].item.uri == f"/m/f{i}.x" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    exact = bound.search(vectors[5], k=5, exact=True)
    assert exact[0].item.uri == "/m/f5.x"
    filtered = bound.search(vectors[5], k=5, where="size >= 200")
    assert filtered and all(h.item.size >= 200 for h in filtered)


def test_store_errors_keep_their_cause(tmp_path, bound):
    with pytest.raises(BindspaceError, match="cannot open the index") as info:
        open_store("unknownscheme://bucket/index", create=True)
    assert isinstance(info.value.__cause__, ValueError)
    bound.add(make_items(unit_rows(3)))
    with pytest.raises(BindspaceError, match="check the filter") as info:
        bound.search(unit_rows(1)[0], k=2, where="no_such_column = 1")
    assert isinstance(info.value.__cause__, ValueError)
    assert not hasattr(bound, "delete_where")  # removed: deletes go through delete()/delete_uri()
