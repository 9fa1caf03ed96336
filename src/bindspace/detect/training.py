"""Fit a region network to scenes with frozen class embeddings (only the detector's own weights learn)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..train.optim import lr_factor
from .network import RegionNetwork
from .objective import LossWeights, SceneTargets, detection_loss

# A batch: normalised pixels (B, 3, S, S) and one SceneTargets per image.
Batch = tuple[torch.Tensor, Sequence[SceneTargets]]


@dataclass(frozen=True)
class FitSettings:
    """Optimiser knobs (AdamW, linear warm-up then cosine decay to zero)."""

    steps: int = 500
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 25
    grad_clip: float = 5.0
    log_every: int = 50
    loss_weights: LossWeights = LossWeights()


def fit_detector(network: RegionNetwork, batches: Callable[[int], Batch], classes: torch.Tensor,
                 settings: FitSettings, log: Callable[[str], None] = print) -> list[dict[str, float]]:
    """Train `network` for `settings.steps` on `batches(step)`; returns the logged loss rows."""
    if settings.steps < 1:
        raise ValueError("steps must be at least 1")
    classes = torch.nn.functional.normalize(classes.detach().float(), dim=-1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, settings.steps, settings.warmup_steps))
    network.train()
    history: list[dict[str, float]] = []
    for step in range(settings.steps):
        pixels, targets = batches(step)
        losses = detection_loss(network, network(pixels), targets, classes, settings.loss_weights)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), settings.grad_clip)
        optimizer.step()
        schedule.step()
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            row = {"step": float(step + 1), **{k: float(v.detach()) for k, v in losses.items()}}
            history.append(row)
            log(f"detector step {step + 1}/{settings.steps}: loss {row['total']:.3f} (heat {row['heat']:.3f}, "
                f"boxes {row['box_l1']:.3f}/{row['giou']:.3f}, classes {row['classes']:.3f})")
    network.eval()
    return history
