"""Pre-norm transformer block."""
from __future__ import annotations

import torch
from torch import nn

from .attention import SelfAttention
from .drop_path import DropPath
from .mlp import Mlp

LAYER_NORM_EPS = 1e-6


class Block(nn.Module):
    """x + attn(norm_1(x)), then x + mlp(norm_2(x))."""

    def __init__(
        self, dim: int, heads: int, *, mlp_ratio: float = 4.0, add_bias_kv: bool = False, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        # Registration order = state-dict order: the released checkpoint's (attn, norm_1, mlp, norm_2).
        self.attn = SelfAttention(dim, heads, add_bias_kv=add_bias_kv)
        self.drop_path = DropPath(drop_path)
        self.norm_1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        x = x + self.drop_path(self.attn(self.norm_1(x), causal=causal))
        return x + self.drop_path(self.mlp(self.norm_2(x)))
