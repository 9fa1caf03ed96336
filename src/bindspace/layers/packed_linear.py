"""Linear layers on weights packed once for MKL's GEMM: inference on CPU without repacking per call.

A plain fp32 `F.linear` on an x86 CPU packs the whole weight matrix into the GEMM kernel's layout on
every call. For one ViT-H image (257 token rows) that packing is a fifth of the block's time, which
batching several images hides and a lone request pays in full. `PackedLinear` packs the weight once
(`torch.ops.mkl._mkl_reorder_linear_weight`, the op torch's own CPU weight prepacking uses) for
calls of a fixed row count, and runs every input in chunks of exactly that many rows (the last one
padded with zero rows), so a row's result depends only on the row, never on its batchmates.
The original weight is dropped: the packed copy (7 % larger) replaces it.
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
    """y = x W^T + b for inference, W packed once for GEMM calls of `rows` rows (a tower's sequence length)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> None:
        super().__init__()
        if weight.dtype != torch.float32 or weight.device.type != "cpu":
            raise ValueError(f"packed weights are fp32 on the CPU; got {weight.dtype} on {weight.device}")
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        self.out_features, self.in_features = weight.shape
        self.rows = int(rows)
        self.packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach().contiguous(), self.rows)
        # A copy: a view would keep the checkpoint file's memory map (hence its pages) alive.
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)
        # `_mkl_linear` takes the original weight only for its shape when the row count matches,
        # which every call here guarantees: a zero-stride stand-in costs no memory.
        self._shape_only = torch.zeros(()).expand(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (..., out_features), in GEMM calls of exactly `rows` rows (the last one padded)."""
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("PackedLinear is for inference only (run under torch.inference_mode())")
        flat = x.reshape(-1, self.in_features).contiguous()  # (M, K)
        rows = self.rows
        outputs = []
        for start in range(0, flat.shape[0], rows):
            chunk = flat[start:start + rows]  # (<= rows, K)
            count = chunk.shape[0]
            if count < rows:
                chunk = torch.cat([chunk, chunk.new_zeros(rows - count, self.in_features)])  # (rows, K)
            out = torch.ops.mkl._mkl_linear(chunk, self.packed, self._shape_only, self.bias, rows)  # (rows, out)
            outputs.append(out[:count])
        y = outputs[0] if len(outputs) == 1 else torch.cat(outputs)  # (M, out)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rows={self.rows}"


def pack_linears(module: nn.Module, rows: int) -> int:
    """Replace every fp32 `nn.Linear` and attention in-projection under `module` by a `PackedLinear`; how many."""
    from .attention import SelfAttention

    packed = 0
    # Parents only: a list holding the linears themselves would keep every original weight alive to the end.
    for parent in [m for m in module.modules() if type(m) is not nn.Linear]:
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == torch.float32 and child.weight.device.type == "cpu":
                setattr(parent, name, PackedLinear(child.weight, child.bias, rows))
                packed += 1
        if isinstance(parent, SelfAttention) and parent.in_proj is None and parent.in_proj_weight is not None \
                and parent.in_proj_weight.dtype == torch.float32 and parent.in_proj_weight.device.type == "cpu":
            parent.in_proj = PackedLinear(parent.in_proj_weight, parent.in_proj_bias, rows)
            # The packed copy replaces them (the state dict loses their keys: inference only).
            parent.register_parameter("in_proj_weight", None)
            parent.register_parameter("in_proj_bias", None)
            packed += 1
    return packed

