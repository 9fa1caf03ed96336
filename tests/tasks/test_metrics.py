"""Ranking and accuracy metrics against cases worked out by hand."""
import numpy as np
import pytest

from bindspace.tasks import metrics

SCORES = np.array([
    [0.9, 0.1, 0.5, 0.3],
    [0.2, 0.8, 0.4, 0.6],
    [0.1, 0.2, 0.3, 0.4],
])
SINGLE = [2, 1, 0]  # ranks by hand: 2, 1, 4
MULTI = [[0, 2], [0, 3], [1]]  # positions by hand: {1, 2}, {2, 4}, {3}


def test_ranks_single_relevant():
    assert metrics.ranks(SCORES, SINGLE).tolist() == [2, 1, 4]


def test_recall_single_relevant():
    assert metrics.recall_at_k(SCORES, SINGLE, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(SCORES, SINGLE, 2) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(SCORES, SINGLE, 3) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(SCORES, SINGLE, 4) == 1.0
    assert metrics.recall_at_k(SCORES, SINGLE, 10) == 1.0


def test_median_rank_and_mrr():
    assert metrics.median_rank(SCORES, SINGLE) == 2.0
    assert metrics.mean_reciprocal_rank(SCORES, SINGLE) == pytest.approx((1 / 2 + 1 + 1 / 4) / 3)


def test_map_single_relevant_is_mean_reciprocal_rank():
    assert metrics.mean_average_precision(SCORES, SINGLE) == pytest.approx((1 / 2 + 1 + 1 / 4) / 3)


def test_multiple_relevant():
    assert metrics.ranks(SCORES, MULTI).tolist() == [1, 2, 3]
    assert metrics.recall_at_k(SCORES, MULTI, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(SCORES, MULTI, 2) == pytest.approx(2 / 3)
    # fraction of each query's relevant items in its top 2: 2/2, 1/2, 0/1
    assert metrics.recall_at_k(SCORES, MULTI, 2, mode="fraction") == pytest.approx(0.5)
    # AP: (1/1 + 2/2)/2 = 1; (1/2 + 2/4)/2 = 0.5; (1/3)/1
    ap = metrics.average_precisions(SCORES, MULTI)
    assert ap.tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert metrics.mean_average_precision(SCORES, MULTI) == pytest.approx((1 + 0.5 + 1 / 3) / 3)
    # AP@2 normalised by min(#relevant, 2): q1 finds one at position 2 -> (1/2) / 2
    assert metrics.average_precisions(SCORES, MULTI, k=2).tolist() == pytest.approx([1.0, 0.25, 0.0])


def test_mask_and_index_forms_agree():
    mask = np.zeros(SCORES.shape, dtype=bool)
    for q, row in enumerate(MULTI):
        mask[q, row] = True
    assert metrics.ranks(SCORES, mask).tolist() == metrics.ranks(SCORES, MULTI).tolist()
    assert metrics.mean_average_precision(SCORES, mask) == metrics.mean_average_precision(SCORES, MULTI)
    assert metrics.ranks(SCORES, np.array(SINGLE)).tolist() == [2, 1, 4]


def test_ties_count_against_the_query():
    flat = np.full((2, 3), 0.5)
    assert metrics.ranks(flat, [0, 2]).tolist() == [3, 3]
    assert metrics.top_k_accuracy(flat, [0, 2], 1) == 0.0
    assert metrics.top_k_accuracy(flat, [0, 2], 3) == 1.0
    # a relevant item tied only with another relevant one still ranks first
    assert metrics.ranks(np.array([[0.7, 0.7, 0.1]]), [[0, 1]]).tolist() == [1]


def test_top_k_accuracy():
    scores = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.3, 0.2, 0.5]])
    targets = [2, 0, 1]  # ranks 2, 1, 3
    assert metrics.accuracy(scores, targets) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(scores, targets, 2) == pytest.approx(2 / 3)
    assert metrics.top5_accuracy(scores, targets) == 1.0


def test_large_matrices_are_processed_in_row_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 9)).astype(np.float32)
    targets = rng.integers(0, 9, size=50)
    whole = metrics.ranks(scores, targets)
    monkeypatch.setattr(metrics, "ROW_CHUNK", 7)
    assert metrics.ranks(scores, targets).tolist() == whole.tolist()
    # brute force: 1 + number of other items scoring at least as high
    expected = [(scores[q] >= scores[q, t]).sum() for q, t in enumerate(targets)]
    assert whole.tolist() == expected


@pytest.mark.parametrize("bad, message", [
    ([[0], [], [1]], "no relevant"),
    ([0, 1, 7], "outside"),
    ([0, 1], "2 queries"),
])
def test_invalid_relevance(bad, message):
    with pytest.raises(ValueError, match=message):
        metrics.ranks(SCORES, bad)


def test_invalid_scores_and_k():
    with pytest.raises(ValueError, match="NaN"):
        metrics.ranks(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match="2-D"):
        metrics.ranks(np.zeros(3), [0])
    with pytest.raises(ValueError, match="k must"):
        metrics.recall_at_k(SCORES, SINGLE, 0)
    with pytest.raises(ValueError, match="mode"):
        metrics.recall_at_k(SCORES, SINGLE, 1, mode="all")
