"""A tower's trunk: optional input LayerNorm, then a stack of blocks."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .block import LAYER_NORM_EPS, Block


class Transformer(nn.Module):
    """Stack of pre-norm blocks; drop-path grows linearly from 0 to `drop_path` over depth."""

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        add_bias_kv: bool = False,
        pre_norm: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        # A Sequential so the key is `pre_transformer_layer.0.*` as in the checkpoint.
        self.pre_transformer_layer: nn.Sequential | None = (
            nn.Sequential(nn.LayerNorm(dim, eps=LAYER_NORM_EPS)) if pre_norm else None
        )
        rates = [drop_path * i / (layers - 1) for i in range(layers)] if layers > 1 else [drop_path] * layers
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio=mlp_ratio, add_bias_kv=add_bias_kv, drop_path=rate) for rate in rates
        )
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        if self.pre_transformer_layer is not None:
            x = self.pre_transformer_layer(x)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, causal=causal, use_reentrant=False)
            else:
                x = block(x, causal=causal)
        return x
