"""Heads (pool one token, project to the shared width) and output postprocessors."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .block import LAYER_NORM_EPS


class SelectToken(nn.Module):
    """Pick one sequence position: (B, N, D) -> (B, D)."""

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


def cls_head(width: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """LayerNorm -> cls token -> [dropout] -> Linear (no bias); indices match the checkpoint."""
    layers: list[nn.Module] = [nn.LayerNorm(width, eps=LAYER_NORM_EPS), SelectToken(0)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, out_dim, bias=False))
    return nn.Sequential(*layers)


class TextHead(nn.Module):
    """Pool the end-of-text position, then LayerNorm -> Linear (no bias)."""

    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(width, eps=LAYER_NORM_EPS), nn.Linear(width, out_dim, bias=False))

    def forward(self, x: torch.Tensor, eot_positions: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), eot_positions (B,) -> (B, out_dim)."""
        pooled = x[torch.arange(x.shape[0], device=x.device), eot_positions]  # (B, D)
        return self.proj(pooled)


class Normalize(nn.Module):
    """L2-normalise the last dimension, in float32 (unit vectors of a bf16 model are exact to float32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=-1)


class LogitScale(nn.Module):
    """Multiply by exp(log_logit_scale), capped; a parameter only when learnable."""

    def __init__(self, init: float, *, learnable: bool = False, max_scale: float = 100.0) -> None:
        super().__init__()
        self.max_scale = max_scale
        value = torch.tensor(math.log(init))
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def scale(self) -> torch.Tensor:
        """The current multiplier, a 0-d tensor."""
        return self.log_logit_scale.exp().clamp(max=self.max_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale().float()  # a bf16 scale or product would move norms by up to 0.6 %


def postprocessor(logit_scale: float | None, *, learnable: bool = False, max_scale: float = 100.0) -> nn.Sequential:
    """Normalize, then scale (index 1, as in the checkpoint) unless `logit_scale` is None."""
    if logit_scale is None:
        return nn.Sequential(Normalize())
    return nn.Sequential(Normalize(), LogitScale(logit_scale, learnable=learnable, max_scale=max_scale))
