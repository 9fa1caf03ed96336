"""Stochastic depth: drop a whole residual branch per sample during training."""
from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Zero the residual branch for a random subset of samples, rescaling the rest."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"drop path rate must be in [0, 1], got {rate}")
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity in eval mode or at rate 0; zeros (the whole branch dropped) at rate 1."""
        if not self.training or self.rate == 0.0:
            return x
        if self.rate == 1.0:  # keep probability 0: no sample survives, and rescaling would divide by 0
            return x * 0.0  # not zeros_like: keeps the graph, so gradients are zeros rather than missing
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
