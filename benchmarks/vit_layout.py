"""fp32 ViT-H blocks: do layouts cost us anything? CPU time of our blocks against torch's own layer and variants.

Issue 19 measured our fp32 vision tower at 0.88-0.92x the original on a loaded 2-core AVX2
VM, from torch.profiler tables (wall-clock per op). This script checks, on ViT-H-sized blocks
(width 1280, 16 heads, MLP 5120, 257 tokens):

1. what reaches the linears, GELU and attention: every `aten::copy_` in a forward with its
   shape (the only copies should be addmm's bias initialisation, one per linear);
2. CPU time (`time.process_time`, so other jobs' load inflates it far less than wall time)
   of our blocks, of torch's `nn.TransformerEncoderLayer` (same geometry, its fused inference
   path) and of two variants of ours: q/k/v made contiguous before SDPA, GELU in place.
   Rounds alternate between them; min and median per forward are printed.

    python benchmarks/vit_layout.py                    # 2 blocks, batch 2, 1 thread: about a minute
    python benchmarks/vit_layout.py --layers 4 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bindspace.layers import attention, mlp  # noqa: E402
from bindspace.layers.transformer import Transformer  # noqa: E402
from serve_padding import load, machine  # noqa: E402

WIDTH, HEADS, TOKENS = 1280, 16, 257


def contiguous_qkv_forward(self: attention.SelfAttention, x: torch.Tensor, *, causal: bool = False) -> torch.Tensor:
    """Variant: one permute of the fused projection, q/k/v copied to contiguous (B, H, N, hd)."""
    B, N, D = x.shape
    qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(B, N, 3, self.heads, D // self.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)  # 3 x (B, H, N, hd)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, N, hd)
    return self.out_proj(out.transpose(1, 2).reshape(B, N, D))


def inplace_gelu_forward(self: mlp.Mlp, x: torch.Tensor) -> torch.Tensor:
    """Variant: exact GELU written over fc1's output (inference only)."""
    return self.fc2(torch.ops.aten.gelu_(self.fc1(x)))


def torch_layers(ours: Transformer) -> nn.Module:
    """torch's nn.TransformerEncoder with our weights (pre-norm, exact GELU, eps 1e-6, batch first)."""
    layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, dropout=0.0, activation="gelu", layer_norm_eps=1e-6,
                                       batch_first=True, norm_first=True)
    ref = nn.TransformerEncoder(layer, len(ours.blocks), enable_nested_tensor=False).eval()
    pairs: list[tuple[Any, Any]] = list(zip(ours.blocks, ref.layers))
    for block, twin in pairs:
        twin.self_attn.in_proj_weight.data.copy_(block.attn.in_proj_weight)
        twin.self_attn.in_proj_bias.data.copy_(block.attn.in_proj_bias)
        twin.self_attn.out_proj.load_state_dict(block.attn.out_proj.state_dict())
        twin.linear1.load_state_dict(block.mlp.fc1.state_dict())
        twin.linear2.load_state_dict(block.mlp.fc2.state_dict())
        twin.norm1.load_state_dict(block.norm_1.state_dict())
        twin.norm2.load_state_dict(block.norm_2.state_dict())
    return ref


def copies(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Every aten::copy_ of one forward, as 'shape x count'."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(x)
    return [f"{e.input_shapes[0]} x{e.count}" for e in prof.key_averages(group_by_input_shape=True)
            if e.key == "aten::copy_"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine(), flush=True)
    torch.manual_seed(0)
    ours = Transformer(WIDTH, args.layers, HEADS, mlp_ratio=4.0, pre_norm=True).eval()
    ref = torch_layers(ours)
    x = torch.randn(args.batch, TOKENS, WIDTH)
    plain_attn, plain_mlp = attention.SelfAttention.forward, mlp.Mlp.forward

    def variant(attn_fwd: Callable, mlp_fwd: Callable, model: nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            attention.SelfAttention.forward, mlp.Mlp.forward = attn_fwd, mlp_fwd  # type: ignore[method-assign]
            return model(x)
        return run

    variants = {
        "ours (layers/)": variant(plain_attn, plain_mlp, ours),
        "torch nn.TransformerEncoderLayer": variant(plain_attn, plain_mlp, ref),
        "ours, contiguous q/k/v": variant(contiguous_qkv_forward, plain_mlp, ours),
        "ours, in-place GELU": variant(plain_attn, inplace_gelu_forward, ours),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        print("copies in one forward of ours:", "; ".join(copies(ours, x)))
        want = variants["ours (layers/)"]()
        for name in ("ours, contiguous q/k/v", "ours, in-place GELU"):
            assert torch.equal(variants[name](), want), f"{name} changes the bits"
        for _ in range(args.rounds):
            for name, run in variants.items():
                started = time.process_time()
                run()
                times[name].append(time.process_time() - started)
    attention.SelfAttention.forward, mlp.Mlp.forward = plain_attn, plain_mlp  # type: ignore[method-assign]
    base = min(times["ours (layers/)"])
    print(f"\n{args.layers} ViT-H blocks, batch {args.batch} x {TOKENS} tokens, fp32, {args.threads} thread(s)\n")
    print("| path | CPU ms per forward, min | median | min vs ours |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values) * 1000:.0f} | {statistics.median(values) * 1000:.0f} | "
              f"{min(values) / base:.2f}x |")
    print(f"\nload average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
