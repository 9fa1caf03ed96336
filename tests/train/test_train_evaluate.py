"""Validation metrics of a binding run: recall uses tasks.metrics' rule (ties count against the query)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bindspace.tasks import metrics
from bindspace.train.evaluate import retrieval_metrics


def test_tied_candidates_count_against_the_true_match():
    # every target embeds to the same point: all candidates tie, so nothing is retrieved at rank 1
    target = F.normalize(torch.ones(4, 8), dim=-1)
    anchor = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    out = retrieval_metrics(target, anchor, scale=10.0, ks=(1, 4))
    assert out["a2t_r@1"] == 0.0  # each anchor scores all 4 targets equally: rank 4, not 1
    assert out["a2t_r@4"] == 1.0
    assert out["val_pairs"] == 4.0


def test_one_tie_by_hand():
    # sims: pair 0 ties with candidate 1; pair 1 is alone at the top; pair 2 is beaten by candidate 0
    sims = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.3], [0.1, 0.2, 0.4]])
    anchor = torch.eye(3)
    out = retrieval_metrics(sims, anchor, scale=1.0, ks=(1, 2))  # target @ eye = sims
    # t2a ranks: 2 (tie counts against), 1, 1
    assert out["t2a_r@1"] == pytest.approx(2 / 3)
    assert out["t2a_r@2"] == 1.0
    # a2t (columns): col 0: 0.5 vs 0.2, 0.1 -> 1; col 1: 0.9 vs 0.5, 0.2 -> 1; col 2: 0.4 vs 0.1, 0.3 -> 1
    assert out["a2t_r@1"] == 1.0


def test_agrees_with_tasks_metrics_on_quantised_scores():
    gen = torch.Generator().manual_seed(1)
    target = F.normalize(torch.randn(20, 4, generator=gen), dim=-1)
    anchor = F.normalize(torch.randn(20, 4, generator=gen), dim=-1)
    target = torch.round(target * 2) / 2  # coarse values: many exact ties
    sims = (target @ anchor.T).numpy()
    out = retrieval_metrics(target, anchor, scale=5.0, ks=(1, 5))
    labels = np.arange(20)
    assert out["t2a_r@1"] == metrics.recall_at_k(sims, labels, 1)
    assert out["a2t_r@5"] == metrics.recall_at_k(sims.T, labels, 5)
