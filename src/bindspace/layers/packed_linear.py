"""Linear layers on weights packed once for MKL's GEMM: inference on CPU without repacking per call.

A plain fp32 `F.linear` on an x86 CPU packs the whole weight matrix into the GEMM kernel's layout on
every call. For one ViT-H image (257 token rows) that packing is a fifth of the block's time, which
batching several images hides and a lone request pays in full. `PackedLinear` packs the weight once
(`torch.ops.mkl._mkl_reorder_linear_weight`, the op torch's own CPU weight prepacking uses) for
calls of a fixed row count, and runs every input in chunks of exactly that many rows (the last one
padded with zero rows), so a row's result depends only on the row, never on its batchmates.
The original weight is released: the packed copy is about the same size.
"""
from __future__ import annotations

import torch
from torch import nn


def mkl_packing_available() -> bool:
    """Whether this torch build has MKL's packed fp32 GEMM (x86 builds; not ARM or macOS)."""
    mkl_ops = getattr(torch.ops, "mkl", None)
    return (torch.backends.mkl.is_available() and hasattr(mkl_ops, "_mkl_reorder_linear_weight")
            and hasattr(mkl_ops, "_mkl_linear"))


class PackedLinear(nn.Module):
    """y = x W^T + b for inference, with W packed on the first call for chunks of that call's sequence length."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if weight.dtype != torch.float32 or weight.device.type != "cpu":
            raise ValueError(f"packed weights are fp32 on the CPU; got {weight.dtype} on {weight.device}")
        self.out_features, self.in_features = weight.shape
        self._weight: torch.Tensor | None = weight.detach()  # until packed
        self._packed: torch.Tensor | None = None
        self.rows = 0  # rows per GEMM call, fixed by the first input
        self.register_buffer("bias", None if bias is None else bias.detach(), persistent=False)
        # `_mkl_linear` takes the original weight only for its shape when the row count matches,
        # which every call here guarantees: a zero-stride stand-in costs no memory.
        self._shape_only = torch.zeros(()).expand(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, K) -> (..., N, out_features), in GEMM calls of exactly `rows` rows."""
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("PackedLinear is for inference only (run under torch.inference_mode())")
        if self._packed is None:
            self._pack(x.shape[-2] if x.dim() > 1 else 1)
        flat = x.reshape(-1, self.in_features).contiguous()  # (M, K)
        rows = self.rows
        outputs = []
        for start in range(0, flat.shape[0], rows):
            chunk = flat[start:start + rows]  # (<= rows, K)
            count = chunk.shape[0]
            if count < rows:
                chunk = torch.cat([chunk, chunk.new_zeros(rows - count, self.in_features)])  # (rows, K)
            out = torch.ops.mkl._mkl_linear(chunk, self._packed, self._shape_only, self.bias, rows)  # (rows, out)
            outputs.append(out[:count])
        y = outputs[0] if len(outputs) == 1 else torch.cat(outputs)  # (M, out)
        return y.view(*x.shape[:-1], self.out_features)

    def _pack(self, rows: int) -> None:
        assert self._weight is not None
        self.rows = max(1, int(rows))
        self._packed = torch.ops.mkl._mkl_reorder_linear_weight(self._weight.contiguous(), self.rows)
        self._weight = None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rows={self.rows or 'on first call'}"


def pack_linears(module: nn.Module) -> int:
    """Replace every fp32 `nn.Linear` and attention in-projection under `module` by a `PackedLinear`; how many."""
    from .attention import SelfAttention

    packed = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == torch.float32 and child.weight.device.type == "cpu":
                setattr(parent, name, PackedLinear(child.weight, child.bias))
                packed += 1
        if isinstance(parent, SelfAttention) and parent.in_proj is None and parent.in_proj_weight is not None \
                and parent.in_proj_weight.dtype == torch.float32 and parent.in_proj_weight.device.type == "cpu":
            parent.in_proj = PackedLinear(parent.in_proj_weight, parent.in_proj_bias)
            # The packed copy replaces them (the state dict loses their keys: inference only).
            parent.register_parameter("in_proj_weight", None)
            parent.register_parameter("in_proj_bias", None)
            packed += 1
    return packed

