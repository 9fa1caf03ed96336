"""Symmetric InfoNCE between a trained tower's embeddings and an anchor's, with negatives from every process."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..layers.heads import LogitScale
from .distributed import all_gather_with_grad, rank


@dataclass
class StepLoss:
    """What the Trainer reads from a model with its own objective (`computes_loss`): its loss and accuracy."""

    loss: torch.Tensor
    accuracy: torch.Tensor  # the objective's own top-1 measure (next tokens, object centres...)


@dataclass
class LossOutput:
    """The loss and, for logging, the two directions and the in-batch top-1 accuracy."""

    loss: torch.Tensor
    target_to_anchor: torch.Tensor
    anchor_to_target: torch.Tensor
    accuracy: torch.Tensor


def info_nce(target: torch.Tensor, anchor: torch.Tensor, logit_scale: torch.Tensor | float) -> LossOutput:
    """Symmetric InfoNCE for unit embeddings target (B, D) and anchor (B, D), row i paired with row i.

    Under torch.distributed both sides are gathered from every process (with gradients that
    flow back to each process's own rows), and each process scores its local rows against
    all N = world·B candidates, so the negatives grow with the number of processes:

        L = ½ · [CE(s · t_local @ a_allᵀ, own) + CE(s · a_local @ t_allᵀ, own)]

    Averaged over processes (as DDP averages gradients) this equals the single-process loss
    of the combined batch, exactly.
    """
    if target.shape != anchor.shape or target.ndim != 2:
        raise ValueError(f"expected two (B, D) tensors of equal shape, got {tuple(target.shape)} "
                         f"and {tuple(anchor.shape)}")
    all_target = all_gather_with_grad(target)  # (N, D)
    all_anchor = all_gather_with_grad(anchor)  # (N, D)
    batch = target.shape[0]
    labels = torch.arange(batch, device=target.device) + rank() * batch  # own rows within the gathered set
    t2a = logit_scale * target @ all_anchor.T  # (B, N)
    a2t = logit_scale * anchor @ all_target.T  # (B, N)
    loss_t2a = F.cross_entropy(_upcast(t2a), labels)
    loss_a2t = F.cross_entropy(_upcast(a2t), labels)
    with torch.no_grad():
        accuracy = (t2a.argmax(dim=1) == labels).float().mean()
    return LossOutput((loss_t2a + loss_a2t) / 2, loss_t2a.detach(), loss_a2t.detach(), accuracy)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision logits (softmax over many negatives needs it); others as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class Temperature(LogitScale):
    """The logit scale 1/τ, fixed or learnable (stored as a log, capped at `max_scale` like the model's)."""

    def __init__(self, temperature: float, *, learnable: bool = False, max_scale: float = 100.0) -> None:
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if 1.0 / temperature > max_scale:
            raise ConfigError(f"temperature {temperature} gives a logit scale above max_logit_scale {max_scale}")
        super().__init__(1.0 / temperature, learnable=learnable, max_scale=max_scale)

    def forward(self) -> torch.Tensor:  # type: ignore[override]
        """The current multiplier (the cap also stops its gradient, as in CLIP)."""
        return self.scale()
