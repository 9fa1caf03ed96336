"""Stochastic depth: drop a whole residual branch per sample during training."""
from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Zero the residual branch for a random subset of samples, rescaling the rest."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity in eval mode or at rate 0."""
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
