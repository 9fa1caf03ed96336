"""Multi-head self-attention with `nn.MultiheadAttention`'s parameter names, batch-first, on SDPA."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class SelfAttention(nn.Module):
    """Self-attention whose state dict loads `nn.MultiheadAttention` weights as they are.

    With `add_bias_kv`, one learned key (`bias_k`) and value (`bias_v`) position is
    appended to every sequence, so each of the N queries attends over N + 1 keys.
    """

    def __init__(self, dim: int, heads: int, *, add_bias_kv: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ConfigError(f"attention width {dim} does not split into {heads} heads (width % heads must be 0)")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))  # rows: q, k, v
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)
        self.out_proj = nn.Linear(dim, dim)
        # Set by `packed_linear.pack_linears` for CPU inference: then it replaces in_proj_weight/bias.
        self.in_proj: nn.Module | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The initialisation `nn.MultiheadAttention` uses."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def forward(self, x: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
        """Attend within each sequence of x (B, N, D); `causal` hides later positions."""
        B, N, D = x.shape
        qkv = self.in_proj(x) if self.in_proj is not None else F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.chunk(3, dim=-1)  # 3 x (B, N, D)
        mask = None
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.to(k.dtype).expand(B, 1, D)], dim=1)  # (B, N+1, D)
            v = torch.cat([v, self.bias_v.to(v.dtype).expand(B, 1, D)], dim=1)  # (B, N+1, D)
            if causal:  # the appended key is visible to every query, as in nn.MultiheadAttention
                mask = torch.ones(N, N + 1, dtype=torch.bool, device=x.device).tril_()
                mask[:, -1] = True
        head_dim = D // self.heads
        q = q.view(B, N, self.heads, head_dim).transpose(1, 2)  # (B, H, N, hd)
        k = k.view(B, -1, self.heads, head_dim).transpose(1, 2)  # (B, H, Nk, hd)
        v = v.view(B, -1, self.heads, head_dim).transpose(1, 2)  # (B, H, Nk, hd)
        out = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )  # (B, H, N, hd)
        out = out.transpose(1, 2).reshape(B, N, D)  # (B, N, D)
        return self.out_proj(out)
