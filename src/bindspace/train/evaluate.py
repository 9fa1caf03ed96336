"""Validation for a binding run: full-set InfoNCE and retrieval recall between the two towers."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from ..tasks.metrics import recall_at_k
from .build import BindModel
from .data import PairBatch


def embed_pairs(bind: BindModel, batches: Iterable[PairBatch]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit target and anchor embeddings (N, D) of every pair, on CPU."""
    device = next(bind.parameters()).device
    targets, anchors = [], []
    with torch.no_grad():
        for batch in batches:
            batch = batch.to(device)
            t, a, _ = bind(batch.anchor, batch.target)
            targets.append(t.float().cpu())
            anchors.append(a.float().cpu())
    if not targets:
        return torch.empty(0), torch.empty(0)
    return torch.cat(targets), torch.cat(anchors)


def retrieval_metrics(target: torch.Tensor, anchor: torch.Tensor, scale: float,
                      ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """val_loss (InfoNCE with every pair as a negative) and recall@k target->anchor and anchor->target.

    Recall is `bindspace.tasks.metrics.recall_at_k`: ties with the true match count against it.
    """
    n = target.shape[0]
    if n == 0:
        return {}
    sims = target @ anchor.T  # (N, N), row i's match is column i
    labels = torch.arange(n)
    loss = (F.cross_entropy(scale * sims, labels) + F.cross_entropy(scale * sims.T, labels)) / 2
    out = {"val_loss": float(loss), "val_pairs": float(n)}
    for direction, matrix in (("t2a", sims), ("a2t", sims.T)):
        # tasks.metrics' rule: a candidate tied with the true match ranks ahead of it
        for k in ks:
            if k <= n:
                out[f"{direction}_r@{k}"] = recall_at_k(matrix, labels.numpy(), k)
    return out


class PairEvaluator:
    """Evaluate callback for the trainer over a fixed list of validation batches."""

    def __init__(self, batches_fn: Callable[[], Iterable[PairBatch]]) -> None:
        self.batches_fn = batches_fn

    def __call__(self, bind: BindModel) -> dict[str, float]:
        target, anchor = embed_pairs(bind, self.batches_fn())
        return retrieval_metrics(target, anchor, float(bind.logit_scale()))
