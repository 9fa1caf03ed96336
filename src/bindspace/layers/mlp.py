"""The transformer's feed-forward layer."""
from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """fc1 (D -> hidden), exact GELU, fc2 (hidden -> D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return self.fc2(self.act(self.fc1(x)))
