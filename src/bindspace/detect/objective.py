"""Training targets and losses: CenterNet's focal loss on object centres, L1 + GIoU on boxes, Detic's
sigmoid classification against frozen class embeddings, and optional ViLD-style distillation."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .boxes import generalized_iou
from .network import RegionNetwork, Regions


@dataclass
class SceneTargets:
    """Ground truth of one image: boxes (K, 4) as fractions of the side, class indices (K,), optional
    per-object target embeddings (K, D) to distil (e.g. the frozen image tower's view of each crop)."""

    boxes: torch.Tensor
    labels: torch.Tensor
    distill: torch.Tensor | None = None


@dataclass(frozen=True)
class LossWeights:
    """How much each term counts."""

    heat: float = 1.0
    box_l1: float = 5.0
    giou: float = 2.0
    classes: float = 1.0
    distill: float = 1.0


def centre_heatmap(boxes: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid*grid,) Gaussian centre heat (1 exactly at each object's centre cell) and the (K,) centre cell indices."""
    ys, xs = torch.meshgrid(torch.arange(grid, device=boxes.device), torch.arange(grid, device=boxes.device),
                            indexing="ij")
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 * grid  # (K, 2) in cells
    cells = centres.floor().clamp(0, grid - 1).long()  # (K, 2) x, y
    index = cells[:, 1] * grid + cells[:, 0]  # (K,)
    sigma = ((boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * grid / 6).clamp(min=0.5)  # (K,)
    dx = xs.reshape(1, -1) - cells[:, :1]  # (K, G*G)
    dy = ys.reshape(1, -1) - cells[:, 1:]
    heat = torch.exp(-(dx**2 + dy**2) / (2 * sigma[:, None] ** 2))  # (K, G*G)
    peak = heat.amax(dim=0) if len(boxes) else torch.zeros(grid * grid, device=boxes.device)
    return peak, index


def focal_heat_loss(logits: torch.Tensor, heat: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss summed over cells (N,); `positive` marks centre cells."""
    p = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    pos = -((1 - p) ** 2) * torch.log(p) * positive
    neg = -((1 - heat) ** 4) * p**2 * torch.log(1 - p) * (~positive)
    return (pos + neg).sum()


def detection_loss(network: RegionNetwork, regions: Regions, targets: Sequence[SceneTargets],
                   classes: torch.Tensor, weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """The loss terms, each averaged over the batch's objects, their weighted `total`, and `accuracy`: the share
    of objects whose centre cell's best class is their own (not part of the total)."""
    grid = network.config.grid
    terms = {name: regions.objectness.new_zeros(()) for name in ("heat", "box_l1", "giou", "classes", "distill")}
    objects = 0
    correct = regions.objectness.new_zeros(())
    for b, target in enumerate(targets):
        heat, index = centre_heatmap(target.boxes, grid)
        positive = torch.zeros(grid * grid, dtype=torch.bool, device=heat.device)
        positive[index] = True
        terms["heat"] = terms["heat"] + focal_heat_loss(regions.objectness[b], heat, positive)
        if len(index) == 0:
            continue
        objects += len(index)
        boxes = regions.boxes[b, index]  # (K, 4)
        terms["box_l1"] = terms["box_l1"] + F.l1_loss(boxes, target.boxes, reduction="sum") / 4
        terms["giou"] = terms["giou"] + (1 - generalized_iou(boxes, target.boxes)).sum()
        embeddings = regions.embeddings[b, index]  # (K, D)
        logits = network.class_logits(embeddings, classes)  # (K, C)
        correct = correct + (logits.detach().argmax(dim=-1) == target.labels).sum()
        one_hot = F.one_hot(target.labels, classes.shape[0]).float()
        terms["classes"] = terms["classes"] + F.binary_cross_entropy_with_logits(logits, one_hot, reduction="sum")
        if target.distill is not None:
            terms["distill"] = terms["distill"] + (1 - (embeddings * target.distill).sum(dim=-1)).sum()
    scale = 1.0 / max(objects, 1)
    out = {name: value * scale for name, value in terms.items()}
    out["total"] = sum((getattr(weights, name) * out[name] for name in terms), regions.objectness.new_zeros(()))
    out["accuracy"] = correct * scale
    return out
